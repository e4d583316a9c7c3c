set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.449300 15643.770
0.642300 11135.230
0.823000 9312.860
0.928300 8350.290
0.972700 5131.780
0.993000 2896.170
EOD
$c2 << EOD
0.449300 14595.420
0.642300 13138.940
0.823000 10812.440
0.928300 7967.540
0.972700 5067.090
0.993000 3074.960
EOD
$c3 << EOD
0.510400 21769.300
0.705100 15130.890
0.865400 8505.660
0.945400 4583.440
0.983400 3100.500
0.996100 1723.630
EOD
$c4 << EOD
0.510400 17618.740
0.705100 14118.860
0.865400 9977.460
0.945400 6247.840
0.983400 3544.980
0.996100 1512.470
EOD
$c5 << EOD
0.449300 10262.900
0.642300 10395.630
0.823000 9710.080
0.928300 10370.610
0.972700 9919.020
0.993000 9023.690
EOD
$c6 << EOD
0.449300 11474.740
0.642300 8654.970
0.823000 8171.320
0.928300 8166.550
0.972700 9964.880
0.993000 7476.700
EOD
$c7 << EOD
0.922000 7333.119
0.978000 6782.899
0.996500 3860.661
0.998300 3031.168
0.999300 2575.419
0.999900 1798.964
0.999900 1369.938
EOD
$c8 << EOD
0.922000 8848.492
0.978000 6332.842
0.996500 3822.210
0.998300 2810.847
0.999300 2579.848
0.999900 1823.145
0.999900 1413.666
EOD
$c9 << EOD
0.456200 16644.670
0.652800 11849.480
0.830100 11943.110
0.932900 7116.390
0.978300 5591.880
0.994200 2706.200
EOD
$c10 << EOD
0.456200 4143.690
0.652800 4106.160
0.830100 3642.480
0.932900 3216.980
0.978300 2574.800
0.994200 1790.720
EOD
$c11 << EOD
0.508700 13605.280
0.707100 10498.230
0.861500 8864.660
0.945200 4436.400
0.983000 2366.940
0.996900 1397.690
EOD
$c12 << EOD
0.508700 4553.760
0.707100 3804.150
0.861500 3529.830
0.945200 2751.100
0.983000 2201.690
0.996900 1235.130
EOD
$c13 << EOD
0.456200 7439.340
0.652800 7040.470
0.830100 5152.270
0.932900 4293.010
0.978300 4533.350
0.994200 3719.660
EOD
$c14 << EOD
0.456200 3895.550
0.652800 3465.560
0.830100 3103.900
0.932900 2526.140
0.978300 2777.770
0.994200 3074.380
EOD
$c15 << EOD
0.917400 7618.070
0.958800 5873.510
0.991000 3460.810
EOD
$c16 << EOD
0.917400 3827.850
0.958800 2932.600
0.991000 2130.540
EOD
$c17 << EOD
0.916800 5759.980
0.961900 3771.330
0.991700 1845.310
EOD
$c18 << EOD
0.916800 3207.570
0.961900 2415.910
0.991700 1356.440
EOD
$c19 << EOD
0.917400 4741.530
0.958800 4505.480
0.991400 4462.430
EOD
$c20 << EOD
0.917400 2677.800
0.958800 2543.250
0.991400 2373.120
EOD
set multiplot layout 1,2 title 'mnist-60k: 60000 vectors, dim 784, l2, k=10, 1000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.40:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=1024', \
     $c4 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=512', \
     $c6 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#7570b3' title 'faiss ivf_pq_fs nlist=1024 m=196 nbits=4 refine=10', \
     $c8 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#e7298a' title 'hnsw M=16 efc=200', \
     $c10 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024', \
     $c12 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=512', \
     $c14 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#7570b3' title 'quiver ivf_pq_fs nlist=1024 m=196 nbits=4 refine=10', \
     $c16 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024 min_recall 0.9/0.95/0.99', \
     $c18 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=512 min_recall 0.9/0.95/0.99', \
     $c20 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#7570b3' title 'quiver ivf_pq_fs nlist=1024 m=196 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
set title 'batches of 50 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=1024', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=512', \
     $c5 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#7570b3' title 'faiss ivf_pq_fs nlist=1024 m=196 nbits=4 refine=10', \
     $c7 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#e7298a' title 'hnsw M=16 efc=200', \
     $c9 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024', \
     $c11 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=512', \
     $c13 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#7570b3' title 'quiver ivf_pq_fs nlist=1024 m=196 nbits=4 refine=10', \
     $c15 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=1024 min_recall 0.9/0.95/0.99', \
     $c17 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=512 min_recall 0.9/0.95/0.99', \
     $c19 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#7570b3' title 'quiver ivf_pq_fs nlist=1024 m=196 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
