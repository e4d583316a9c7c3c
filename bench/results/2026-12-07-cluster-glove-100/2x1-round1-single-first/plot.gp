set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.608600 9712.490
0.709100 9136.190
0.797880 6898.200
0.868900 7435.650
0.926000 2162.490
0.965080 1696.940
EOD
$c2 << EOD
0.608600 6299.970
0.709100 15095.340
0.797880 9893.650
0.868900 3353.530
0.926000 2248.260
0.965080 2371.190
EOD
$c3 << EOD
0.622060 5261.190
0.725780 4145.110
0.815900 1975.080
0.888480 4513.420
0.945540 1693.740
0.980280 1082.810
EOD
$c4 << EOD
0.622060 1968.780
0.725780 2397.480
0.815900 1913.320
0.888480 1328.670
0.945540 1053.370
0.980280 861.780
EOD
$c5 << EOD
0.701640 1349.040
0.805900 685.830
0.889340 2358.080
0.945300 1068.950
0.979400 776.670
0.995480 980.040
EOD
$c6 << EOD
0.701640 761.230
0.805900 656.890
0.889340 672.050
0.945300 575.000
0.979400 566.080
0.995480 290.920
EOD
$c7 << EOD
0.815900 5746.900
0.892680 2756.950
0.972740 2259.270
EOD
$c8 << EOD
0.815900 2449.700
0.892680 1457.540
0.972740 774.150
EOD
$c9 << EOD
0.877360 1687.790
0.935160 1821.000
0.986840 1000.130
EOD
$c10 << EOD
0.877360 715.970
0.935160 603.100
0.986840 394.490
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
