set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 12029.120
0.436350 15002.390
0.563600 10384.230
0.683100 9486.150
0.784350 6189.900
0.869150 4156.370
0.930800 2283.250
0.965450 1297.870
0.985550 616.310
EOD
$c2 << EOD
0.311350 7820.850
0.436350 6276.180
0.563600 4275.800
0.683100 3603.780
0.784350 3936.540
0.869150 2091.000
0.930800 1128.600
0.965450 1121.280
0.985550 654.170
EOD
$c3 << EOD
0.311350 8844.730
0.436350 9728.850
0.563600 5748.450
0.683100 4311.050
0.784350 3261.320
0.869150 3379.350
0.930550 2823.750
0.965150 2542.010
0.984850 1897.120
EOD
$c4 << EOD
0.311350 14433.360
0.436350 6147.770
0.563600 3824.450
0.683100 2692.610
0.784350 2517.470
0.869150 3190.030
0.930550 2446.360
0.965150 2167.170
0.984850 2628.370
EOD
$c5 << EOD
0.303850 6650.220
0.434700 5202.120
0.560450 5766.620
0.683200 4264.650
0.783600 3504.090
0.868800 2490.140
0.929100 1609.100
0.967100 1117.750
0.986150 532.920
EOD
$c6 << EOD
0.303850 2556.590
0.434700 2373.830
0.560450 2436.010
0.683200 2353.360
0.783600 1879.470
0.868800 1686.770
0.929100 1065.520
0.967100 814.890
0.986150 426.640
EOD
$c7 << EOD
0.303850 3819.830
0.434700 4103.910
0.560450 3723.250
0.683200 2780.490
0.783550 2227.370
0.868650 2235.330
0.928700 1830.500
0.966500 1722.470
0.985400 1456.370
EOD
$c8 << EOD
0.303850 3009.880
0.434700 1694.040
0.560450 1389.500
0.683200 1201.620
0.783550 1251.590
0.868650 1221.070
0.928700 1473.880
0.966500 956.410
0.985400 1368.220
EOD
$c9 << EOD
0.905850 2179.410
0.952150 1141.970
0.992350 348.910
EOD
$c10 << EOD
0.905850 1242.910
0.952150 982.200
0.992350 327.020
EOD
$c11 << EOD
0.905600 1984.030
0.954450 1787.040
0.997800 958.020
EOD
$c12 << EOD
0.905600 2186.740
0.954450 1140.990
0.997800 536.630
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
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=4096', \
     $c4 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096', \
     $c8 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c10 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99', \
     $c12 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=4096', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096', \
     $c7 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c9 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99', \
     $c11 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
