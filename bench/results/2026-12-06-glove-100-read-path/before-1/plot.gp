set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 11959.850
0.436350 13980.510
0.563600 7559.100
0.683100 5086.230
0.784350 3067.040
0.869150 2256.370
0.930800 1352.740
0.965450 733.560
0.985550 626.550
EOD
$c2 << EOD
0.311350 5745.450
0.436350 6200.840
0.563600 4591.010
0.683100 3539.590
0.784350 2578.410
0.869150 1529.090
0.930800 879.770
0.965450 602.570
0.985550 352.940
EOD
$c3 << EOD
0.311350 12667.140
0.436350 7455.440
0.563600 5852.250
0.683100 5541.490
0.784350 5085.580
0.869150 4907.470
0.930550 3354.340
0.965150 2329.610
0.984850 1898.750
EOD
$c4 << EOD
0.311350 14437.630
0.436350 15174.180
0.563600 9756.830
0.683100 3802.430
0.784350 3472.890
0.869150 3269.700
0.930550 2115.530
0.965150 3160.320
0.984850 2117.960
EOD
$c5 << EOD
0.921650 1813.169
0.934800 1110.278
0.946800 1072.094
0.960250 617.994
0.975500 722.904
0.982600 1226.058
0.989500 862.977
0.993100 472.349
EOD
$c6 << EOD
0.921650 2670.521
0.934800 1373.429
0.946800 821.748
0.960250 882.519
0.975500 490.931
0.982600 959.457
0.989500 1011.890
0.993100 404.781
EOD
$c7 << EOD
0.303850 3746.620
0.434700 4242.980
0.560450 2305.000
0.683200 1857.290
0.783600 1747.880
0.868800 1725.080
0.929100 1083.730
0.967100 666.020
0.986150 427.280
EOD
$c8 << EOD
0.303850 2685.620
0.434700 2934.820
0.560450 3047.120
0.683200 2714.700
0.783600 2310.010
0.868800 1842.270
0.929100 939.620
0.967100 515.420
0.986150 359.820
EOD
$c9 << EOD
0.303850 4088.390
0.434700 3418.740
0.560450 3365.030
0.683200 3132.330
0.783550 2910.630
0.868650 2788.570
0.928700 2430.000
0.966500 1929.580
0.985400 2492.190
EOD
$c10 << EOD
0.303850 3315.040
0.434700 3539.270
0.560450 2582.370
0.683200 1552.470
0.783550 1587.790
0.868650 1312.230
0.928700 1189.820
0.966500 1647.780
0.985400 1335.940
EOD
$c11 << EOD
0.905850 3298.250
0.952150 2360.870
0.992350 379.300
EOD
$c12 << EOD
0.905850 1035.730
0.952150 852.500
0.992350 298.970
EOD
$c13 << EOD
0.905600 2000.440
0.954450 1969.840
0.997800 1327.840
EOD
$c14 << EOD
0.905600 1467.700
0.954450 1941.950
0.997800 701.790
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
