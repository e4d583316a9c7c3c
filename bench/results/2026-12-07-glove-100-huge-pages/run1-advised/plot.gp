set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 16570.380
0.436350 13324.900
0.563600 9449.020
0.683100 6956.970
0.784350 5410.480
0.869150 5078.080
0.930550 3740.540
0.965150 3653.310
0.984850 2781.410
EOD
$c2 << EOD
0.311350 13890.830
0.436350 12053.640
0.563600 8719.030
0.683100 7381.950
0.784350 6532.480
0.869150 5906.150
0.930550 5001.310
0.965150 3984.290
0.984850 2163.030
EOD
$c3 << EOD
0.921800 2795.433
0.934750 2481.681
0.946950 2715.692
0.960350 1510.832
0.975750 1087.369
0.982700 893.696
0.989450 644.268
0.993200 541.014
EOD
$c4 << EOD
0.921800 2357.341
0.934750 2262.953
0.946950 2368.531
0.960350 1603.502
0.975750 1108.044
0.982700 829.736
0.989450 597.512
0.993200 468.150
EOD
$c5 << EOD
0.303850 9687.870
0.434700 8662.250
0.560450 6676.360
0.683200 5416.370
0.783550 4393.710
0.868650 4430.140
0.928700 4184.930
0.966500 3096.980
0.985400 2974.010
EOD
$c6 << EOD
0.303850 2862.140
0.434700 3381.560
0.560450 3115.100
0.683200 3170.180
0.783550 3127.320
0.868650 2456.010
0.928700 2648.880
0.966500 2298.790
0.985400 1673.830
EOD
$c7 << EOD
0.905600 3443.070
0.954450 3347.540
0.997800 1889.920
EOD
$c8 << EOD
0.905600 2442.680
0.954450 1927.650
0.997800 822.150
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
