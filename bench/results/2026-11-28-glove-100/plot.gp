set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.359900 40673.770
0.501350 26509.620
0.643750 12441.970
0.767000 8529.680
0.865500 4824.100
0.932650 2512.240
0.970800 1498.290
0.989000 824.920
0.996800 448.360
EOD
$c2 << EOD
0.359900 26019.610
0.501350 19413.040
0.643750 13136.740
0.767000 8370.970
0.865500 4892.470
0.932650 2753.420
0.970800 1520.340
0.989000 816.710
0.996800 447.090
EOD
$c3 << EOD
0.334900 53206.430
0.470950 34418.770
0.603550 18470.610
0.725300 14378.940
0.824300 7465.170
0.900150 4457.800
0.949700 2577.200
0.976750 1441.090
0.991600 786.550
EOD
$c4 << EOD
0.334900 20147.570
0.470950 17427.090
0.603550 14172.000
0.725300 10573.630
0.824300 7020.600
0.900150 4386.910
0.949700 2540.840
0.976750 1426.880
0.991600 779.200
EOD
$c5 << EOD
0.311250 52172.310
0.436250 42506.450
0.563600 26756.200
0.682900 18487.510
0.784450 11040.990
0.868950 6520.360
0.930750 3592.670
0.965250 2371.370
0.985550 1381.550
EOD
$c6 << EOD
0.311250 12200.350
0.436250 11532.440
0.563600 10539.080
0.682900 9187.480
0.784450 7419.520
0.868950 5431.820
0.930750 3616.370
0.965250 2183.820
0.985550 1297.250
EOD
$c7 << EOD
0.334900 15337.090
0.470950 9794.070
0.603550 7205.110
0.725300 7123.230
0.824300 5790.470
0.900150 4180.220
0.949700 3029.720
0.976750 2230.850
0.991600 1473.710
EOD
$c8 << EOD
0.334900 11213.740
0.470950 9009.720
0.603550 7698.350
0.725300 6801.670
0.824300 5701.570
0.900150 4644.810
0.949700 3400.990
0.976750 2324.400
0.991600 1474.620
EOD
$c9 << EOD
0.922650 11917.547
0.934200 10220.096
0.946400 8448.801
0.960200 6593.079
0.975500 4588.326
0.982650 3527.010
0.989400 2478.386
0.993050 1907.209
EOD
$c10 << EOD
0.922650 11657.504
0.934200 9953.017
0.946400 8330.596
0.960200 6522.485
0.975500 4545.309
0.982650 3548.236
0.989400 2468.462
0.993050 1884.216
EOD
$c11 << EOD
0.359900 12461.220
0.501350 10400.010
0.643750 8517.070
0.767000 6284.240
0.865500 4532.020
0.932650 2831.330
0.970800 1650.240
0.989000 912.250
0.996800 508.760
EOD
$c12 << EOD
0.359900 8245.450
0.501350 7147.490
0.643750 6150.570
0.767000 4888.290
0.865500 3626.810
0.932650 2451.520
0.970800 1489.710
0.989000 868.370
0.996800 499.460
EOD
$c13 << EOD
0.334900 17209.730
0.470950 12121.770
0.603550 11491.390
0.725300 8108.500
0.824300 6834.790
0.900150 4515.020
0.949700 2724.820
0.976750 1570.820
0.991600 872.710
EOD
$c14 << EOD
0.334900 8278.740
0.470950 7584.380
0.603550 6611.370
0.725300 5650.160
0.824300 4577.900
0.900150 3389.390
0.949700 2282.140
0.976750 1414.240
0.991600 812.560
EOD
$c15 << EOD
0.311250 19298.380
0.436250 13919.520
0.563600 15483.820
0.682900 10783.700
0.784450 8479.800
0.868950 5798.230
0.930750 4305.250
0.965250 2547.590
0.985550 1439.820
EOD
$c16 << EOD
0.311250 7375.420
0.436250 6413.180
0.563600 6202.370
0.682900 5652.930
0.784450 4883.680
0.868950 3955.380
0.930750 2994.430
0.965250 1966.980
0.985550 1262.430
EOD
$c17 << EOD
0.334900 6035.330
0.470950 4345.180
0.603550 4161.800
0.725300 3755.410
0.824300 3338.890
0.900150 2881.290
0.949700 2241.040
0.976750 1692.230
0.991600 1136.200
EOD
$c18 << EOD
0.334900 4021.560
0.470950 3349.990
0.603550 3071.300
0.725300 2898.080
0.824300 2701.520
0.900150 2326.950
0.949700 1911.330
0.976750 1467.060
0.991600 1032.880
EOD
$c19 << EOD
0.970800 1649.950
0.982650 1159.370
0.998600 365.720
EOD
$c20 << EOD
0.970800 1479.270
0.982650 1080.240
0.998600 354.560
EOD
$c21 << EOD
0.949700 2756.730
0.976750 1570.710
0.996050 607.120
EOD
$c22 << EOD
0.949700 2261.730
0.976750 1401.570
0.996050 570.310
EOD
$c23 << EOD
0.868950 6229.870
0.930750 4197.780
0.978600 1847.720
EOD
$c24 << EOD
0.868950 4021.820
0.930750 2959.690
0.978600 1554.720
EOD
$c25 << EOD
0.949700 2362.790
0.976750 1733.710
0.996050 865.620
EOD
$c26 << EOD
0.949700 1947.770
0.976750 1485.020
0.996050 822.080
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
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=1024', \
     $c4 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=2048', \
     $c6 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#7570b3' title 'faiss ivf_flat nlist=4096', \
     $c8 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#e7298a' title 'faiss ivf_pq nlist=2048 m=50 refine=4', \
     $c10 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#66a61e' title 'hnsw M=16 efc=200', \
     $c12 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024', \
     $c14 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=2048', \
     $c16 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#7570b3' title 'quiver ivf_flat nlist=4096', \
     $c18 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#e7298a' title 'quiver ivf_pq nlist=2048 m=50 refine=4', \
     $c20 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024 min_recall 0.9/0.95/0.99', \
     $c22 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c24 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#7570b3' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99', \
     $c26 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#e7298a' title 'quiver ivf_pq nlist=2048 m=50 refine=4 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=1024', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=2048', \
     $c5 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#7570b3' title 'faiss ivf_flat nlist=4096', \
     $c7 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#e7298a' title 'faiss ivf_pq nlist=2048 m=50 refine=4', \
     $c9 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#66a61e' title 'hnsw M=16 efc=200', \
     $c11 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024', \
     $c13 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=2048', \
     $c15 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#7570b3' title 'quiver ivf_flat nlist=4096', \
     $c17 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#e7298a' title 'quiver ivf_pq nlist=2048 m=50 refine=4', \
     $c19 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024 min_recall 0.9/0.95/0.99', \
     $c21 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c23 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#7570b3' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99', \
     $c25 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#e7298a' title 'quiver ivf_pq nlist=2048 m=50 refine=4 min_recall 0.9/0.95/0.99'
unset multiplot
