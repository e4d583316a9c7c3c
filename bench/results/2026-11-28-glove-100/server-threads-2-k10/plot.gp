set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.334900 61816.980
0.470950 43947.200
0.603550 27290.260
0.725300 13999.860
0.824300 9228.760
0.900150 4501.760
0.949700 2807.560
0.976750 1436.550
0.991600 786.400
EOD
$c2 << EOD
0.334900 22194.820
0.470950 19498.310
0.603550 15902.870
0.725300 11418.960
0.824300 7698.850
0.900150 4631.500
0.949700 2652.510
0.976750 1458.440
0.991600 783.510
EOD
$c3 << EOD
0.334900 38216.340
0.470950 24755.210
0.603550 17338.060
0.725300 11282.780
0.824300 7971.460
0.900150 4714.880
0.949700 3075.080
0.976750 1602.010
0.991600 912.670
EOD
$c4 << EOD
0.334900 11836.780
0.470950 10873.080
0.603550 9365.500
0.725300 7974.070
0.824300 6185.110
0.900150 4288.600
0.949700 2674.970
0.976750 1538.470
0.991600 874.950
EOD
$c5 << EOD
0.949700 3011.420
0.976750 1648.660
0.996050 637.260
EOD
$c6 << EOD
0.949700 2627.330
0.976750 1515.470
0.996050 616.510
EOD
set multiplot layout 1,2 title 'glove-100: 331479 vectors, dim 100, cosine, k=10, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.30:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=2048', \
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c6 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=2048', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c5 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99'
unset multiplot
