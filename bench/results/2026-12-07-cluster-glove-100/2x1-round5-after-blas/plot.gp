set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.608600 27631.030
0.709100 17406.990
0.797880 13437.500
0.868900 10147.410
0.926000 5836.170
0.965080 3235.680
EOD
$c2 << EOD
0.608600 29282.110
0.709100 19706.810
0.797880 14913.490
0.868900 8572.960
0.926000 4827.130
0.965080 2510.830
EOD
$c3 << EOD
0.622060 11325.370
0.725780 10129.390
0.815900 8991.290
0.888480 6863.010
0.945540 4161.450
0.980280 2817.740
EOD
$c4 << EOD
0.622060 5061.970
0.725780 3712.300
0.815900 3870.010
0.888480 3770.220
0.945540 2234.510
0.980280 2060.540
EOD
$c5 << EOD
0.701640 7241.460
0.805900 5656.390
0.889340 4225.230
0.945300 3916.550
0.979400 2662.480
0.995480 1419.980
EOD
$c6 << EOD
0.701640 1648.080
0.805900 1697.700
0.889340 1520.490
0.945300 1007.120
0.979400 893.760
0.995480 644.340
EOD
$c7 << EOD
0.815900 8529.900
0.892680 6234.930
0.972740 3185.310
EOD
$c8 << EOD
0.815900 3458.550
0.892680 2754.380
0.972740 1998.100
EOD
$c9 << EOD
0.859620 4831.330
0.925720 4180.840
0.984620 2243.760
EOD
$c10 << EOD
0.859620 1240.530
0.925720 1090.270
0.984620 734.070
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
