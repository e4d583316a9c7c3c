set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.728233 3521.380
0.890700 2133.060
0.946767 1604.530
0.980467 1893.740
EOD
$c2 << EOD
0.728233 2632.720
0.890700 1505.880
0.946767 1742.280
0.980467 689.430
EOD
$c3 << EOD
0.808300 1606.920
0.947167 1251.440
0.980467 977.790
0.995767 892.390
EOD
$c4 << EOD
0.808300 619.450
0.947167 466.390
0.980467 383.760
0.995767 303.440
EOD
$c5 << EOD
0.894833 2288.550
0.936667 1147.110
0.973200 2111.990
0.987133 1182.550
EOD
$c6 << EOD
0.894833 2074.790
0.936667 393.510
0.973200 863.700
0.987133 325.800
EOD
set multiplot layout 1,2 title 'glove-100: 100000 vectors, dim 100, cosine, k=100, 3000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.70:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver-cluster ivf_flat nlist=2048', \
     $c6 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.95/0.95/0.99/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver-cluster ivf_flat nlist=2048', \
     $c5 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=2048 min_recall 0.95/0.95/0.99/0.99'
unset multiplot
