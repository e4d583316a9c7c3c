set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.529950 38073.040
0.649850 24608.990
0.756150 16564.190
0.848250 12130.760
0.919000 7293.710
0.964800 3581.420
0.987650 2269.500
EOD
$c2 << EOD
0.529950 29639.330
0.649850 30794.530
0.756150 21536.880
0.848250 12134.840
0.919000 5869.230
0.964800 3937.000
0.987650 2145.580
EOD
$c3 << EOD
0.529700 25641.430
0.649400 24747.720
0.754400 21363.820
0.842900 20437.030
0.908550 14577.740
0.948600 11046.080
0.966650 8193.640
EOD
$c4 << EOD
0.529700 34867.340
0.649400 22345.640
0.754400 28023.190
0.842900 18818.570
0.908550 12513.870
0.948600 7068.250
0.966650 5306.940
EOD
$c5 << EOD
0.647200 23557.994
0.777300 15911.274
0.869300 9664.681
0.934500 4570.409
0.949150 4146.517
0.959000 3793.827
0.969500 3888.638
0.980350 3159.390
0.989950 2172.662
0.994200 1332.796
0.997700 1076.675
0.998650 822.195
EOD
$c6 << EOD
0.647200 20195.450
0.777300 14805.796
0.869300 9170.652
0.934500 4365.651
0.949150 3583.080
0.959000 3846.437
0.969500 4068.910
0.980350 2770.352
0.989950 2139.293
0.994200 1309.570
0.997700 1112.901
0.998650 854.585
EOD
$c7 << EOD
0.525200 32217.090
0.635400 17019.370
0.744150 12480.590
0.832250 8749.100
0.903650 6671.520
0.953750 3583.590
0.981350 2111.870
EOD
$c8 << EOD
0.525200 5582.240
0.635400 6059.360
0.744150 5414.040
0.832250 4297.000
0.903650 3418.720
0.953750 2192.790
0.981350 1568.080
EOD
$c9 << EOD
0.525200 10159.960
0.635400 8017.610
0.744150 7573.750
0.832250 7075.770
0.903600 7092.750
0.953600 5869.860
0.981050 4657.710
EOD
$c10 << EOD
0.525200 4686.940
0.635400 3672.910
0.744150 4382.550
0.832250 3633.000
0.903600 3486.150
0.953600 2418.760
0.981050 1883.990
EOD
$c11 << EOD
0.861800 9771.020
0.930450 5951.510
0.981750 2195.360
EOD
$c12 << EOD
0.861800 3639.760
0.930450 2613.880
0.981750 1310.270
EOD
$c13 << EOD
0.861750 6921.870
0.930300 5693.590
0.981450 4694.200
EOD
$c14 << EOD
0.861750 3168.290
0.930300 2950.730
0.981450 2460.050
EOD
set multiplot layout 1,2 title 'glove-100: 150000 vectors, dim 100, cosine, k=10, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.50:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=2048', \
     $c4 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_pq_fs nlist=2048 m=50 nbits=4 refine=10', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#7570b3' title 'hnsw M=16 efc=200', \
     $c8 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c10 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=2048 m=50 nbits=4 refine=10', \
     $c12 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c14 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=2048 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
set title 'batches of 50 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=2048', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_pq_fs nlist=2048 m=50 nbits=4 refine=10', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#7570b3' title 'hnsw M=16 efc=200', \
     $c7 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c9 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=2048 m=50 nbits=4 refine=10', \
     $c11 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c13 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=2048 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
