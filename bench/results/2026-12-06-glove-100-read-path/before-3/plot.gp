set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 21268.270
0.436350 21194.030
0.563600 16624.480
0.683100 12210.740
0.784350 8608.110
0.869150 6138.250
0.930800 3374.560
0.965450 2168.250
0.985550 1145.730
EOD
$c2 << EOD
0.311350 23224.530
0.436350 17646.810
0.563600 15155.770
0.683100 13985.930
0.784350 10555.990
0.869150 5926.770
0.930800 3602.520
0.965450 2084.480
0.985550 1004.540
EOD
$c3 << EOD
0.311350 15273.950
0.436350 12016.300
0.563600 10800.380
0.683100 7229.370
0.784350 5357.520
0.869150 5012.390
0.930550 4452.220
0.965150 3656.660
0.984850 3203.920
EOD
$c4 << EOD
0.311350 16695.970
0.436350 12845.170
0.563600 8230.030
0.683100 8519.090
0.784350 5541.600
0.869150 5369.240
0.930550 4283.230
0.965150 3406.250
0.984850 2615.510
EOD
$c5 << EOD
0.303850 8495.190
0.434700 6462.850
0.560450 5654.710
0.683200 5171.690
0.783600 4230.380
0.868800 3364.700
0.929100 2705.990
0.967100 1747.430
0.986150 922.510
EOD
$c6 << EOD
0.303850 4081.530
0.434700 3674.260
0.560450 3073.740
0.683200 3221.510
0.783600 3123.140
0.868800 2429.460
0.929100 1813.680
0.967100 1165.530
0.986150 706.220
EOD
$c7 << EOD
0.303850 6288.670
0.434700 5638.850
0.560450 5064.100
0.683200 3738.090
0.783550 3183.630
0.868650 2985.410
0.928700 2670.230
0.966500 2322.560
0.985400 2362.040
EOD
$c8 << EOD
0.303850 3751.950
0.434700 3225.660
0.560450 2894.730
0.683200 2648.410
0.783550 2285.500
0.868650 2267.880
0.928700 1979.560
0.966500 1670.490
0.985400 1440.740
EOD
$c9 << EOD
0.905850 2956.870
0.952150 1958.940
0.992350 621.900
EOD
$c10 << EOD
0.905850 1804.170
0.952150 1323.770
0.992350 492.810
EOD
$c11 << EOD
0.905600 2849.300
0.954450 2460.950
0.997800 1288.270
EOD
$c12 << EOD
0.905600 2381.460
0.954450 1687.540
0.997800 765.780
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
