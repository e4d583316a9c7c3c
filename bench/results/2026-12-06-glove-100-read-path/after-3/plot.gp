set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 20215.530
0.436350 23089.290
0.563600 14344.640
0.683100 11701.220
0.784350 9571.050
0.869150 5269.100
0.930800 3429.450
0.965450 1759.360
0.985550 1043.240
EOD
$c2 << EOD
0.311350 24190.190
0.436350 18637.610
0.563600 14365.220
0.683100 11502.300
0.784350 8392.870
0.869150 4856.490
0.930800 3289.240
0.965450 1846.510
0.985550 1122.600
EOD
$c3 << EOD
0.311350 15023.810
0.436350 11991.200
0.563600 9333.960
0.683100 6078.970
0.784350 4666.370
0.869150 4567.650
0.930550 3913.820
0.965150 3789.860
0.984850 2668.060
EOD
$c4 << EOD
0.311350 14036.200
0.436350 12856.780
0.563600 8786.380
0.683100 7152.820
0.784350 5690.660
0.869150 4461.300
0.930550 3670.980
0.965150 2737.740
0.984850 2034.590
EOD
$c5 << EOD
0.303850 7322.400
0.434700 6466.710
0.560450 5441.440
0.683200 4955.060
0.783600 4629.150
0.868800 3112.090
0.929100 2223.330
0.967100 1419.630
0.986150 890.260
EOD
$c6 << EOD
0.303850 3548.670
0.434700 3632.700
0.560450 3219.520
0.683200 2810.270
0.783600 2699.560
0.868800 2210.440
0.929100 1708.390
0.967100 1251.790
0.986150 827.510
EOD
$c7 << EOD
0.303850 4997.010
0.434700 5244.880
0.560450 3989.000
0.683200 3315.850
0.783550 2658.230
0.868650 2668.440
0.928700 2580.070
0.966500 2371.420
0.985400 2149.760
EOD
$c8 << EOD
0.303850 3195.380
0.434700 2972.120
0.560450 2667.390
0.683200 2637.700
0.783550 2329.900
0.868650 2138.380
0.928700 1733.510
0.966500 1521.100
0.985400 1262.700
EOD
$c9 << EOD
0.905850 3291.500
0.952150 1898.290
0.992350 627.560
EOD
$c10 << EOD
0.905850 1933.920
0.952150 1365.620
0.992350 559.550
EOD
$c11 << EOD
0.905600 2517.780
0.954450 2213.010
0.997800 1524.000
EOD
$c12 << EOD
0.905600 1640.160
0.954450 1495.360
0.997800 721.980
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
