set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.608600 25961.950
0.709100 16907.780
0.797880 13344.090
0.868900 7123.370
0.926000 5303.570
0.965080 2332.130
EOD
$c2 << EOD
0.608600 25917.620
0.709100 16953.550
0.797880 12752.490
0.868900 7786.250
0.926000 5677.720
0.965080 3153.190
EOD
$c3 << EOD
0.622060 10124.480
0.725780 8296.590
0.815900 6904.650
0.888480 4826.140
0.945540 4242.060
0.980280 1982.240
EOD
$c4 << EOD
0.622060 3795.410
0.725780 3814.880
0.815900 3358.790
0.888480 2868.270
0.945540 2410.860
0.980280 1737.520
EOD
$c5 << EOD
0.701640 5230.460
0.805900 4310.760
0.889340 3675.770
0.945300 2789.100
0.979400 1864.980
0.995480 1174.620
EOD
$c6 << EOD
0.701640 1304.970
0.805900 1292.020
0.889340 1249.480
0.945300 1015.660
0.979400 853.580
0.995480 564.440
EOD
$c7 << EOD
0.815900 7282.130
0.892680 4781.130
0.972740 2520.120
EOD
$c8 << EOD
0.815900 3745.820
0.892680 2449.440
0.972740 1985.820
EOD
$c9 << EOD
0.877360 3812.580
0.935160 2788.900
0.986840 1571.220
EOD
$c10 << EOD
0.877360 1166.350
0.935160 1085.040
0.986840 649.090
EOD
set multiplot layout 1,2 title 'glove-100: 100000 vectors, dim 100, cosine, k=100, 5000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.60:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=2048', \
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver-cluster ivf_flat nlist=2048', \
     $c8 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c10 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver-cluster ivf_flat nlist=2048 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=2048', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver-cluster ivf_flat nlist=2048', \
     $c7 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c9 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver-cluster ivf_flat nlist=2048 min_recall 0.9/0.95/0.99'
unset multiplot
