set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.622060 16412.210
0.725780 13174.540
0.815900 8788.970
0.888480 6048.370
0.945540 3880.280
0.980280 2577.950
EOD
$c2 << EOD
0.622060 2416.650
0.725780 3652.860
0.815900 3313.180
0.888480 2787.000
0.945540 1966.700
0.980280 1462.330
EOD
$c3 << EOD
0.701640 6194.010
0.805900 5833.240
0.889340 4353.380
0.945300 3583.650
0.979400 2342.220
0.995480 1347.670
EOD
$c4 << EOD
0.701640 914.520
0.805900 1135.770
0.889340 1175.470
0.945300 891.840
0.979400 712.290
0.995480 538.800
EOD
$c5 << EOD
0.815900 8729.420
0.892680 6765.170
0.972740 2972.600
EOD
$c6 << EOD
0.815900 3724.440
0.892680 2903.680
0.972740 1883.610
EOD
$c7 << EOD
0.859620 4638.840
0.925720 4363.480
0.984620 1880.710
EOD
$c8 << EOD
0.859620 1309.250
0.925720 1041.830
0.984620 737.350
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
plot $c2 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver-cluster ivf_flat nlist=2048', \
     $c6 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c8 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver-cluster ivf_flat nlist=2048 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver-cluster ivf_flat nlist=2048', \
     $c5 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.9/0.95/0.99', \
     $c7 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver-cluster ivf_flat nlist=2048 min_recall 0.9/0.95/0.99'
unset multiplot
