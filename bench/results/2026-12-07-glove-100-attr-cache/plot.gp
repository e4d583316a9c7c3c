set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 17991.930
0.436350 12125.800
0.563600 8842.810
0.683100 8115.850
0.784350 5990.790
0.869150 5231.010
0.930550 4796.560
0.965150 3836.770
0.984850 3306.950
EOD
$c2 << EOD
0.311350 13461.260
0.436350 11961.390
0.563600 8598.790
0.683100 5797.930
0.784350 5002.850
0.869150 4371.580
0.930550 4581.130
0.965150 3304.140
0.984850 2670.980
EOD
$c3 << EOD
0.921850 3878.711
0.934900 2458.125
0.947100 2602.459
0.960750 1908.775
0.975900 1409.450
0.983050 942.016
0.989700 644.174
0.993400 547.129
EOD
$c4 << EOD
0.921850 3552.602
0.934900 3067.256
0.947100 2178.141
0.960750 1853.426
0.975900 1506.490
0.983050 865.421
0.989700 635.971
0.993400 500.241
EOD
$c5 << EOD
0.303850 10040.700
0.434700 8160.170
0.560450 6318.500
0.683200 5036.050
0.783550 4761.800
0.868650 4458.330
0.928700 3969.280
0.966500 3113.490
0.985400 2824.820
EOD
$c6 << EOD
0.303850 3098.050
0.434700 3410.850
0.560450 3050.480
0.683200 2663.510
0.783550 2221.870
0.868650 2232.300
0.928700 2376.850
0.966500 1760.000
0.985400 1491.520
EOD
$c7 << EOD
0.905600 3708.170
0.954450 3722.260
0.997800 2167.740
EOD
$c8 << EOD
0.905600 2277.080
0.954450 2000.870
0.997800 994.640
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
