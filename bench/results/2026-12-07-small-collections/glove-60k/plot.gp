set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.408867 89051.660
0.556900 68340.190
0.695667 52618.050
0.803100 38687.190
0.883000 22515.180
0.940533 18860.330
0.974267 12652.530
0.990533 6425.900
0.997200 3132.480
EOD
$c2 << EOD
0.408867 72174.140
0.556900 64944.300
0.695667 53814.320
0.803100 40593.830
0.883000 26018.980
0.940533 18232.800
0.974267 12201.810
0.990533 5816.100
0.997200 3112.620
EOD
$c3 << EOD
0.475467 122905.380
0.631533 67703.710
0.766667 40561.390
0.867500 22742.500
0.933867 15540.640
0.972167 7130.980
0.990900 2702.870
0.997967 1346.600
1.000000 774.500
EOD
$c4 << EOD
0.475467 81057.840
0.631533 52077.130
0.766667 30893.180
0.867500 18124.060
0.933867 10673.770
0.972167 8045.580
0.990900 4293.430
0.997967 2033.110
1.000000 606.450
EOD
$c5 << EOD
0.434900 125961.820
0.591867 120451.300
0.725600 68675.210
0.832300 47743.220
0.908133 29652.610
0.956367 15805.420
0.983433 9439.840
0.995300 4832.760
0.999167 1422.390
EOD
$c6 << EOD
0.434900 85387.130
0.591867 66509.540
0.725600 53020.500
0.832300 41556.280
0.908133 24737.940
0.956367 11297.200
0.983433 6989.690
0.995300 4042.210
0.999167 2164.820
EOD
$c7 << EOD
0.434900 43618.660
0.591733 46858.220
0.725267 48449.380
0.831567 39759.050
0.906900 34254.860
0.954333 25348.100
0.980200 17964.570
0.991567 16131.890
0.995267 9050.660
EOD
$c8 << EOD
0.434900 65539.460
0.591733 61546.120
0.725267 43340.450
0.831567 38370.920
0.906900 32124.080
0.954333 30652.810
0.980200 21191.540
0.991567 16014.870
0.995267 6841.280
EOD
$c9 << EOD
0.820267 35760.238
0.909967 23079.513
0.960667 14042.979
0.986967 8582.042
0.991033 6915.698
0.993700 5991.707
0.995800 4914.462
0.997667 3703.442
0.998900 2594.389
0.999400 1969.666
0.999900 1401.115
1.000000 1079.228
EOD
$c10 << EOD
0.820267 25969.557
0.909967 20387.025
0.960667 15071.024
0.986967 8577.975
0.991033 7239.263
0.993700 6291.728
0.995800 5168.726
0.997667 3766.098
0.998900 2746.322
0.999400 2070.897
0.999900 1442.845
1.000000 1146.052
EOD
$c11 << EOD
0.398233 54452.530
0.554400 48150.640
0.694233 30963.350
0.805100 23063.480
0.886233 16415.110
0.941433 12318.490
0.974900 10714.610
0.990667 5534.990
0.998000 3178.160
EOD
$c12 << EOD
0.398233 5615.810
0.554400 6071.480
0.694233 6089.470
0.805100 5620.620
0.886233 5583.390
0.941433 5433.140
0.974900 3848.040
0.990667 3082.160
0.998000 2129.740
EOD
$c13 << EOD
0.466167 54535.430
0.623200 32697.360
0.755900 20446.980
0.858233 14382.520
0.929467 10362.640
0.971300 7124.850
0.991267 2734.700
0.998367 1203.090
1.000000 664.830
EOD
$c14 << EOD
0.466167 6341.840
0.623200 7100.240
0.755900 5073.960
0.858233 5241.290
0.929467 4016.810
0.971300 3109.550
0.991267 2540.820
0.998367 1290.860
1.000000 521.850
EOD
$c15 << EOD
0.438533 41643.650
0.586000 74862.620
0.722567 31635.990
0.831533 23791.930
0.908767 21596.120
0.955900 11922.560
0.982767 7806.160
0.995600 4020.440
0.999267 1202.150
EOD
$c16 << EOD
0.438533 6414.230
0.586000 6446.320
0.722567 5979.560
0.831533 6347.230
0.908767 5228.370
0.955900 5081.830
0.982767 3143.500
0.995600 2220.220
0.999267 1316.540
EOD
$c17 << EOD
0.438533 28495.590
0.586000 14607.140
0.722567 10824.500
0.831533 10407.060
0.908767 9796.940
0.955900 9438.980
0.982767 8186.900
0.995567 7436.430
0.999233 5792.160
EOD
$c18 << EOD
0.438533 6233.270
0.586000 6395.920
0.722567 5488.190
0.831533 4280.770
0.908767 4392.080
0.955900 3944.680
0.982767 4037.140
0.995567 3631.440
0.999233 2593.380
EOD
$c19 << EOD
0.907067 18053.350
0.955167 12526.400
0.990433 5939.320
EOD
$c20 << EOD
0.907067 4749.230
0.955167 3867.610
0.990433 3181.190
EOD
$c21 << EOD
0.903800 11740.590
0.954700 9572.890
0.993833 3285.190
EOD
$c22 << EOD
0.903800 4333.600
0.954700 3583.280
0.993833 1744.610
EOD
$c23 << EOD
0.908767 12987.230
0.954433 8624.680
0.991400 3642.830
EOD
$c24 << EOD
0.908767 6137.720
0.954433 5272.320
0.991400 3159.830
EOD
$c25 << EOD
0.908767 10189.540
0.954433 8464.420
0.991400 7816.360
EOD
$c26 << EOD
0.908767 4314.130
0.954433 3941.600
0.991400 3187.050
EOD
set multiplot layout 1,2 title 'glove-60k: 60000 vectors, dim 100, cosine, k=10, 3000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.30:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=1024', \
     $c4 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=256', \
     $c6 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#7570b3' title 'faiss ivf_flat nlist=512', \
     $c8 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#e7298a' title 'faiss ivf_pq_fs nlist=512 m=50 nbits=4 refine=10', \
     $c10 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#66a61e' title 'hnsw M=16 efc=200', \
     $c12 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024', \
     $c14 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256', \
     $c16 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#7570b3' title 'quiver ivf_flat nlist=512', \
     $c18 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#e7298a' title 'quiver ivf_pq_fs nlist=512 m=50 nbits=4 refine=10', \
     $c20 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024 min_recall 0.9/0.95/0.99', \
     $c22 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256 min_recall 0.9/0.95/0.99', \
     $c24 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#7570b3' title 'quiver ivf_flat nlist=512 min_recall 0.9/0.95/0.99', \
     $c26 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#e7298a' title 'quiver ivf_pq_fs nlist=512 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
set title 'batches of 50 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=1024', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=256', \
     $c5 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#7570b3' title 'faiss ivf_flat nlist=512', \
     $c7 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#e7298a' title 'faiss ivf_pq_fs nlist=512 m=50 nbits=4 refine=10', \
     $c9 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#66a61e' title 'hnsw M=16 efc=200', \
     $c11 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024', \
     $c13 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256', \
     $c15 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#7570b3' title 'quiver ivf_flat nlist=512', \
     $c17 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#e7298a' title 'quiver ivf_pq_fs nlist=512 m=50 nbits=4 refine=10', \
     $c19 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024 min_recall 0.9/0.95/0.99', \
     $c21 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256 min_recall 0.9/0.95/0.99', \
     $c23 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#7570b3' title 'quiver ivf_flat nlist=512 min_recall 0.9/0.95/0.99', \
     $c25 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#e7298a' title 'quiver ivf_pq_fs nlist=512 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
