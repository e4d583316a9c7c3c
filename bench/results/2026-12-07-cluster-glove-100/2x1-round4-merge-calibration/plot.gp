set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.608600 33476.690
0.709100 18814.230
0.797880 14677.840
0.868900 8788.860
0.926000 6510.020
0.965080 3683.380
EOD
$c2 << EOD
0.608600 32841.070
0.709100 23652.190
0.797880 13828.830
0.868900 11085.110
0.926000 6533.710
0.965080 3586.030
EOD
$c3 << EOD
0.622060 12037.840
0.725780 9466.420
0.815900 8050.550
0.888480 5448.590
0.945540 4132.520
0.980280 2981.410
EOD
$c4 << EOD
0.622060 4773.540
0.725780 5326.560
0.815900 4001.660
0.888480 3175.370
0.945540 2649.070
0.980280 1645.810
EOD
$c5 << EOD
0.701640 5513.400
0.805900 5116.110
0.889340 4632.880
0.945300 3172.350
0.979400 2612.990
0.995480 1586.700
EOD
$c6 << EOD
0.701640 1910.100
0.805900 1580.100
0.889340 1296.940
0.945300 1310.430
0.979400 937.510
0.995480 584.930
EOD
$c7 << EOD
0.815900 6987.390
0.892680 6072.270
0.972740 3250.330
EOD
$c8 << EOD
0.815900 3329.860
0.892680 2755.310
0.972740 1943.020
EOD
$c9 << EOD
0.859620 4185.760
0.925720 3969.000
0.984620 2265.480
EOD
$c10 << EOD
0.859620 1238.970
0.925720 1116.090
0.984620 780.540
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
