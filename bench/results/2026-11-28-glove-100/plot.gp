set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.334900 52683.720
0.470950 30525.910
0.603550 21801.690
0.725300 10340.140
0.824300 6764.010
0.900150 4691.860
0.949700 2522.240
0.976750 1393.170
0.991600 777.780
EOD
$c2 << EOD
0.334900 20301.380
0.470950 17707.520
0.603550 14373.950
0.725300 10705.470
0.824300 7180.860
0.900150 4448.000
0.949700 2599.100
0.976750 1414.040
0.991600 782.470
EOD
$c3 << EOD
0.334900 12938.220
0.470950 10226.710
0.603550 8156.650
0.725300 6588.150
0.824300 5154.030
0.900150 4296.980
0.949700 3066.810
0.976750 2189.050
0.991600 1471.640
EOD
$c4 << EOD
0.334900 11044.040
0.470950 9013.040
0.603550 7662.520
0.725300 6919.890
0.824300 5774.840
0.900150 4656.940
0.949700 3475.260
0.976750 2363.620
0.991600 1504.500
EOD
$c5 << EOD
0.921150 11805.920
0.934500 10094.970
0.946450 8341.430
0.959900 6453.985
0.975350 4531.174
0.982300 3460.235
0.989500 2415.746
0.993400 1849.130
EOD
$c6 << EOD
0.921150 11496.169
0.934500 9907.784
0.946450 8202.771
0.959900 6348.540
0.975350 4490.205
0.982300 3483.652
0.989500 2400.911
0.993400 1863.996
EOD
$c7 << EOD
0.334900 9031.560
0.470950 7455.960
0.603550 6472.590
0.725300 6032.540
0.824300 4505.370
0.900150 3163.450
0.949700 2106.450
0.976750 1296.570
0.991600 824.560
EOD
$c8 << EOD
0.334900 5687.830
0.470950 5645.640
0.603550 5068.510
0.725300 4299.300
0.824300 3403.330
0.900150 2508.310
0.949700 1687.780
0.976750 1056.150
0.991600 647.230
EOD
$c9 << EOD
0.334900 3505.390
0.470950 2853.260
0.603550 2568.570
0.725300 2637.820
0.824300 2175.470
0.900150 2113.550
0.949700 1765.710
0.976750 1392.040
0.991600 1041.480
EOD
$c10 << EOD
0.334900 3246.700
0.470950 2612.870
0.603550 2334.010
0.725300 2316.790
0.824300 2028.310
0.900150 1843.450
0.949700 1565.400
0.976750 1244.820
0.991600 913.920
EOD
$c11 << EOD
0.949700 2307.860
0.976750 1414.780
0.996050 601.890
EOD
$c12 << EOD
0.949700 1767.440
0.976750 1062.440
0.996050 460.330
EOD
$c13 << EOD
0.949700 1682.070
0.976750 1368.490
0.996050 883.720
EOD
$c14 << EOD
0.949700 1504.500
0.976750 1212.050
0.996050 659.510
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
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=2048', \
     $c4 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_pq nlist=2048 m=50 refine=4', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#7570b3' title 'hnsw M=16 efc=200', \
     $c8 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c10 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_pq nlist=2048 m=50 refine=4', \
     $c12 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c14 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_pq nlist=2048 m=50 refine=4 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=2048', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_pq nlist=2048 m=50 refine=4', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#7570b3' title 'hnsw M=16 efc=200', \
     $c7 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c9 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_pq nlist=2048 m=50 refine=4', \
     $c11 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c13 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_pq nlist=2048 m=50 refine=4 min_recall 0.9/0.95/0.99'
unset multiplot
