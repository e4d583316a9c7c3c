set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.608600 15219.030
0.709100 10475.110
0.797880 6543.300
0.868900 5204.250
0.926000 3064.140
0.965080 1282.140
EOD
$c2 << EOD
0.608600 10919.380
0.709100 12135.610
0.797880 10182.850
0.868900 2526.560
0.926000 2690.760
0.965080 1316.360
EOD
$c3 << EOD
0.622060 8118.220
0.725780 5365.840
0.815900 5238.370
0.888480 5403.690
0.945540 2710.660
0.980280 1280.660
EOD
$c4 << EOD
0.622060 2092.000
0.725780 1598.940
0.815900 1610.110
0.888480 1712.540
0.945540 1849.970
0.980280 992.580
EOD
$c5 << EOD
0.701640 1866.330
0.805900 1963.980
0.889340 2666.430
0.945300 1703.240
0.979400 1613.700
0.995480 525.720
EOD
$c6 << EOD
0.701640 680.890
0.805900 548.540
0.889340 576.780
0.945300 509.000
0.979400 502.710
0.995480 403.100
EOD
$c7 << EOD
0.815900 2721.040
0.892680 3511.060
0.972740 2214.550
EOD
$c8 << EOD
0.815900 2079.230
0.892680 2757.670
0.972740 1329.810
EOD
$c9 << EOD
0.877360 1712.440
0.935160 1359.340
0.986840 1032.100
EOD
$c10 << EOD
0.877360 749.170
0.935160 701.340
0.986840 587.670
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
