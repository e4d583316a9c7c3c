set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 24110.220
0.436350 23845.910
0.563600 19195.510
0.683100 15741.210
0.784350 9532.030
0.869150 7938.890
0.930800 4640.410
0.965450 2621.540
0.985550 1393.240
EOD
$c2 << EOD
0.311350 17955.680
0.436350 13157.100
0.563600 10278.670
0.683100 7908.090
0.784350 5706.150
0.869150 3763.750
0.930800 2190.700
0.965450 2434.690
0.985550 1182.210
EOD
$c3 << EOD
0.311350 14660.080
0.436350 12180.640
0.563600 9403.490
0.683100 6423.400
0.784350 6000.690
0.869150 4565.630
0.930550 4122.560
0.965150 3690.580
0.984850 3147.580
EOD
$c4 << EOD
0.311350 13308.680
0.436350 10494.250
0.563600 7422.110
0.683100 5615.130
0.784350 5794.820
0.869150 4678.810
0.930550 4171.900
0.965150 2829.540
0.984850 1987.200
EOD
$c5 << EOD
0.303850 11191.280
0.434700 7872.060
0.560450 8223.250
0.683200 6897.060
0.783600 5169.900
0.868800 4290.210
0.929100 3020.710
0.967100 1893.260
0.986150 1108.840
EOD
$c6 << EOD
0.303850 3861.150
0.434700 2266.200
0.560450 1703.250
0.683200 1725.720
0.783600 1617.260
0.868800 1451.710
0.929100 1113.330
0.967100 1101.080
0.986150 849.080
EOD
$c7 << EOD
0.303850 5203.540
0.434700 5210.100
0.560450 4019.420
0.683200 3532.030
0.783550 3124.600
0.868650 2932.510
0.928700 2575.480
0.966500 2427.780
0.985400 2219.470
EOD
$c8 << EOD
0.303850 2322.000
0.434700 2847.310
0.560450 2265.650
0.683200 2050.380
0.783550 1954.840
0.868650 2047.250
0.928700 1797.950
0.966500 1436.110
0.985400 1228.670
EOD
$c9 << EOD
0.905850 3301.190
0.952150 2500.130
0.992350 829.030
EOD
$c10 << EOD
0.905850 2145.510
0.952150 1881.480
0.992350 731.300
EOD
$c11 << EOD
0.905600 3024.680
0.954450 2743.210
0.997800 1496.250
EOD
$c12 << EOD
0.905600 1690.950
0.954450 1664.830
0.997800 746.310
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
