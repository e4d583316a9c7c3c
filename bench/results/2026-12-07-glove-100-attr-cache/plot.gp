set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 15512.980
0.436350 13111.340
0.563600 8229.060
0.683100 6035.190
0.784350 5719.280
0.869150 4350.570
0.930550 3990.830
0.965150 3862.830
0.984850 2679.150
EOD
$c2 << EOD
0.311350 19646.790
0.436350 13830.770
0.563600 8389.160
0.683100 6211.660
0.784350 5216.440
0.869150 4915.240
0.930550 3631.800
0.965150 2577.400
0.984850 2080.820
EOD
$c3 << EOD
0.921800 2956.800
0.934650 3394.746
0.946700 2142.949
0.960050 1960.367
0.975300 1251.397
0.982700 1038.871
0.989500 792.277
0.993150 537.177
EOD
$c4 << EOD
0.921800 3314.296
0.934650 2681.051
0.946700 2477.730
0.960050 1753.178
0.975300 1322.848
0.982700 1121.353
0.989500 668.307
0.993150 574.485
EOD
$c5 << EOD
0.303850 8250.510
0.434700 6899.640
0.560450 5964.010
0.683200 4399.400
0.783550 3938.340
0.868650 3444.890
0.928700 3109.880
0.966500 3113.710
0.985400 2356.430
EOD
$c6 << EOD
0.303850 3675.790
0.434700 4020.830
0.560450 3094.970
0.683200 2833.200
0.783550 2381.160
0.868650 2161.880
0.928700 2102.240
0.966500 1518.270
0.985400 1369.170
EOD
$c7 << EOD
0.905600 3138.230
0.954450 3009.030
0.997800 1738.760
EOD
$c8 << EOD
0.905600 2113.460
0.954450 1752.920
0.997800 676.250
EOD
set multiplot layout 1,2 title 'glove-100: 331479 vectors, dim 100, cosine, k=100, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.30:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#d95f02' title 'hnsw M=16 efc=200', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c8 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#d95f02' title 'hnsw M=16 efc=200', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c7 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
