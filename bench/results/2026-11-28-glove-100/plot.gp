set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.359900 46019.750
0.501350 27694.330
0.643750 14109.920
0.767000 9861.950
0.865500 5858.210
0.932650 2953.720
0.970800 1644.540
0.989000 941.520
0.996800 528.460
EOD
$c2 << EOD
0.359900 28728.780
0.501350 21483.040
0.643750 14932.710
0.767000 9518.130
0.865500 5654.920
0.932650 3250.620
0.970800 1798.750
0.989000 964.490
0.996800 523.160
EOD
$c3 << EOD
0.334900 44044.470
0.470950 31044.050
0.603550 25679.630
0.725300 14297.080
0.824300 9032.260
0.900150 5079.820
0.949700 2999.860
0.976750 1564.340
0.991600 903.310
EOD
$c4 << EOD
0.334900 23196.420
0.470950 19806.760
0.603550 16017.900
0.725300 11941.770
0.824300 8090.860
0.900150 5035.140
0.949700 2954.170
0.976750 1637.430
0.991600 901.160
EOD
$c5 << EOD
0.311250 56634.120
0.436250 37687.790
0.563600 26993.370
0.682900 17735.800
0.784450 11186.400
0.868950 7081.430
0.930750 3954.830
0.965250 2270.510
0.985550 1397.740
EOD
$c6 << EOD
0.311250 14318.450
0.436250 13256.100
0.563600 11987.370
0.682900 10423.860
0.784450 8381.990
0.868950 6165.430
0.930750 4021.230
0.965250 2479.560
0.985550 1484.190
EOD
$c7 << EOD
0.311250 16341.710
0.436250 9901.680
0.563600 8717.870
0.682900 7038.750
0.784450 5338.160
0.868950 4602.550
0.930750 4018.920
0.965250 2689.070
0.985550 1835.480
EOD
$c8 << EOD
0.311250 10037.600
0.436250 8562.620
0.563600 7311.380
0.682900 6505.620
0.784450 5753.690
0.868950 5008.160
0.930750 4139.690
0.965250 2995.690
0.985550 2130.170
EOD
$c9 << EOD
0.921700 12360.978
0.934700 10602.496
0.946350 8599.142
0.960300 6616.893
0.975350 4652.068
0.982400 3626.766
0.989600 2501.507
0.993400 1903.847
EOD
$c10 << EOD
0.921700 12289.964
0.934700 10597.015
0.946350 8671.756
0.960300 6778.559
0.975350 4700.203
0.982400 3639.941
0.989600 2526.697
0.993400 1934.367
EOD
$c11 << EOD
0.359900 16844.550
0.501350 13872.580
0.643750 11283.360
0.767000 7475.900
0.865500 4899.740
0.932650 3007.000
0.970800 1686.770
0.989000 920.330
0.996800 510.550
EOD
$c12 << EOD
0.359900 9629.540
0.501350 8293.720
0.643750 6859.800
0.767000 5453.700
0.865500 3957.030
0.932650 2523.120
0.970800 1558.640
0.989000 888.710
0.996800 493.770
EOD
$c13 << EOD
0.334900 19648.600
0.470950 17617.060
0.603550 12259.020
0.725300 10516.470
0.824300 7581.340
0.900150 4874.280
0.949700 2928.730
0.976750 1622.130
0.991600 879.390
EOD
$c14 << EOD
0.334900 8921.650
0.470950 8240.530
0.603550 7416.940
0.725300 6148.590
0.824300 5163.090
0.900150 3617.860
0.949700 2340.040
0.976750 1417.690
0.991600 829.640
EOD
$c15 << EOD
0.311250 19743.230
0.436250 19941.980
0.563600 16681.070
0.682900 13844.930
0.784450 8810.690
0.868950 6789.690
0.930750 4457.890
0.965250 2566.120
0.985550 1459.150
EOD
$c16 << EOD
0.311250 8712.080
0.436250 7133.210
0.563600 6414.300
0.682900 5868.770
0.784450 5134.610
0.868950 4174.900
0.930750 3050.990
0.965250 1997.610
0.985550 1285.890
EOD
$c17 << EOD
0.311250 8581.080
0.436250 6056.040
0.563600 4648.240
0.682900 4028.050
0.784450 3566.540
0.868950 3261.270
0.930750 2822.600
0.965250 2321.960
0.985550 1645.480
EOD
$c18 << EOD
0.311250 4880.990
0.436250 3846.590
0.563600 3261.550
0.682900 3044.100
0.784450 2818.490
0.868950 2567.360
0.930750 2407.160
0.965250 1841.570
0.985550 1419.160
EOD
$c19 << EOD
0.970800 1704.490
0.982650 1205.920
0.998600 370.200
EOD
$c20 << EOD
0.970800 1569.660
0.982650 1120.260
0.998600 358.250
EOD
$c21 << EOD
0.949700 2854.210
0.976750 1600.530
0.996050 626.260
EOD
$c22 << EOD
0.949700 2302.240
0.976750 1397.810
0.996050 596.310
EOD
$c23 << EOD
0.868950 7242.920
0.930750 4592.510
0.978600 1867.190
EOD
$c24 << EOD
0.868950 4165.670
0.930750 3098.080
0.978600 1520.850
EOD
$c25 << EOD
0.868950 3389.910
0.930750 2814.690
0.978600 1865.340
EOD
$c26 << EOD
0.868950 2547.690
0.930750 2287.470
0.978600 1603.540
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
     $c8 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#e7298a' title 'faiss ivf_pq nlist=4096 m=50 refine=4', \
     $c10 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#66a61e' title 'hnsw M=16 efc=200', \
     $c12 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024', \
     $c14 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=2048', \
     $c16 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#7570b3' title 'quiver ivf_flat nlist=4096', \
     $c18 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#e7298a' title 'quiver ivf_pq nlist=4096 m=50 refine=4', \
     $c20 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024 min_recall 0.9/0.95/0.99', \
     $c22 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c24 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#7570b3' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99', \
     $c26 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#e7298a' title 'quiver ivf_pq nlist=4096 m=50 refine=4 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=1024', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=2048', \
     $c5 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#7570b3' title 'faiss ivf_flat nlist=4096', \
     $c7 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#e7298a' title 'faiss ivf_pq nlist=4096 m=50 refine=4', \
     $c9 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#66a61e' title 'hnsw M=16 efc=200', \
     $c11 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024', \
     $c13 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=2048', \
     $c15 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#7570b3' title 'quiver ivf_flat nlist=4096', \
     $c17 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#e7298a' title 'quiver ivf_pq nlist=4096 m=50 refine=4', \
     $c19 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024 min_recall 0.9/0.95/0.99', \
     $c21 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c23 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#7570b3' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99', \
     $c25 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#e7298a' title 'quiver ivf_pq nlist=4096 m=50 refine=4 min_recall 0.9/0.95/0.99'
unset multiplot
