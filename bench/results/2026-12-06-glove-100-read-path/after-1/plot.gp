set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 7132.190
0.436350 9214.650
0.563600 5256.720
0.683100 4960.690
0.784350 2977.290
0.869150 1729.670
0.930800 1410.430
0.965450 1147.820
0.985550 669.160
EOD
$c2 << EOD
0.311350 8623.010
0.436350 8229.770
0.563600 10430.480
0.683100 6793.210
0.784350 4594.270
0.869150 2821.680
0.930800 882.260
0.965450 622.630
0.985550 448.600
EOD
$c3 << EOD
0.311350 16618.520
0.436350 11421.820
0.563600 4937.090
0.683100 4067.320
0.784350 3744.600
0.869150 3189.390
0.930550 2408.710
0.965150 2666.370
0.984850 1815.160
EOD
$c4 << EOD
0.311350 15199.300
0.436350 8884.200
0.563600 5838.620
0.683100 4219.490
0.784350 2267.110
0.869150 4821.210
0.930550 4637.010
0.965150 2240.960
0.984850 1353.020
EOD
$c5 << EOD
0.921900 2486.318
0.935000 1714.497
0.946500 1400.443
0.960650 995.915
0.975500 621.601
0.982700 507.046
0.989550 707.763
0.993200 234.500
EOD
$c6 << EOD
0.921900 3548.785
0.935000 1385.976
0.946500 1193.382
0.960650 858.031
0.975500 652.707
0.982700 476.902
0.989550 395.310
0.993200 387.731
EOD
$c7 << EOD
0.303850 3044.680
0.434700 3684.080
0.560450 1743.220
0.683200 1986.100
0.783600 1698.490
0.868800 1503.830
0.929100 715.320
0.967100 563.590
0.986150 541.710
EOD
$c8 << EOD
0.303850 2557.900
0.434700 2583.560
0.560450 1645.960
0.683200 1346.370
0.783600 1260.890
0.868800 1203.890
0.929100 788.500
0.967100 589.400
0.986150 379.040
EOD
$c9 << EOD
0.303850 5554.560
0.434700 5187.910
0.560450 3048.940
0.683200 2582.740
0.783550 2880.910
0.868650 2158.170
0.928700 1779.340
0.966500 1347.090
0.985400 1594.430
EOD
$c10 << EOD
0.303850 2065.960
0.434700 1924.870
0.560450 1790.150
0.683200 1427.280
0.783550 1294.590
0.868650 2206.170
0.928700 2160.700
0.966500 1019.020
0.985400 728.940
EOD
$c11 << EOD
0.905850 2217.010
0.952150 1367.060
0.992350 481.750
EOD
$c12 << EOD
0.905850 1027.690
0.952150 676.950
0.992350 238.700
EOD
$c13 << EOD
0.905600 1948.280
0.954450 1659.820
0.997800 1139.170
EOD
$c14 << EOD
0.905600 1226.250
0.954450 1098.170
0.997800 552.440
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
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#7570b3' title 'hnsw M=16 efc=200', \
     $c8 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096', \
     $c10 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c12 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99', \
     $c14 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=4096', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#7570b3' title 'hnsw M=16 efc=200', \
     $c7 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096', \
     $c9 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c11 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99', \
     $c13 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
