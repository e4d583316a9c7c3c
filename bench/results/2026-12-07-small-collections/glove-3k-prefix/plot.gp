set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
1.000000 27037.200
EOD
$c2 << EOD
1.000000 30876.130
EOD
$c3 << EOD
0.337200 443342.100
0.487600 301905.840
0.642650 206263.560
0.782400 174643.010
0.895850 124338.590
0.969300 75017.400
1.000000 39053.360
EOD
$c4 << EOD
0.337200 156089.810
0.487600 144377.280
0.642650 122705.090
0.782400 96168.150
0.895850 80996.640
0.969300 51762.190
1.000000 29075.280
EOD
$c5 << EOD
1.000000 19418.230
EOD
$c6 << EOD
1.000000 4987.300
EOD
$c7 << EOD
0.300100 117485.610
0.444800 105316.760
0.601850 63058.610
0.753000 61191.410
0.875100 52669.110
0.963450 42132.390
1.000000 18657.150
EOD
$c8 << EOD
0.300100 5922.030
0.444800 6024.160
0.601850 5849.580
0.753000 5994.160
0.875100 6091.780
0.963450 6027.140
1.000000 4915.370
EOD
$c9 << EOD
0.726550 79598.810
0.829150 56564.880
0.931450 25237.210
EOD
$c10 << EOD
0.726550 6473.040
0.829150 7402.110
0.931450 7056.350
EOD
set multiplot layout 1,2 title 'glove-100: 3000 vectors, dim 100, cosine, k=10, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.30:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss flat', \
     $c4 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=64', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver flat', \
     $c8 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=64', \
     $c10 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=64 min_recall 0.9/0.95/0.99'
set title 'batches of 50 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss flat', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=64', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver flat', \
     $c7 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=64', \
     $c9 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=64 min_recall 0.9/0.95/0.99'
unset multiplot
