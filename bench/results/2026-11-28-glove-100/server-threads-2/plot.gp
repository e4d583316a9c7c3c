set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.334900 23927.760
0.470950 28123.150
0.603550 18883.430
0.725300 11070.720
0.824300 6913.250
0.900150 4220.220
0.949700 2094.140
0.976750 1392.560
0.991600 773.230
EOD
$c2 << EOD
0.334900 20226.870
0.470950 17021.520
0.603550 14199.740
0.725300 10517.190
0.824300 6971.640
0.900150 4359.170
0.949700 2527.790
0.976750 1414.890
0.991600 777.190
EOD
$c3 << EOD
0.334900 7454.890
0.470950 7100.870
0.603550 7187.120
0.725300 6062.380
0.824300 4805.760
0.900150 3228.800
0.949700 2294.960
0.976750 1360.050
0.991600 864.160
EOD
$c4 << EOD
0.334900 7061.700
0.470950 6589.250
0.603550 5963.460
0.725300 5280.830
0.824300 4180.800
0.900150 3199.150
0.949700 2168.070
0.976750 1353.270
0.991600 806.340
EOD
$c5 << EOD
0.949700 2210.100
0.976750 1457.610
0.996050 610.760
EOD
$c6 << EOD
0.949700 2181.010
0.976750 993.110
0.996050 392.160
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
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=2048', \
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c6 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=2048', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c5 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99'
unset multiplot
