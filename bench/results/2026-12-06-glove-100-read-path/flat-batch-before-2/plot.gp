set terminal pngcairo size 700,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 26733.180
0.436350 29512.680
0.563600 24441.310
0.683100 17353.050
0.784350 13641.110
0.869150 9035.160
0.930800 5417.040
0.965450 2909.880
0.985550 1571.660
EOD
$c2 << EOD
0.303850 8882.770
0.434700 7718.750
0.560450 8537.920
0.683200 6561.140
0.783600 6424.170
0.868800 5446.780
0.929100 3824.490
0.967100 2083.130
0.986150 1387.230
EOD
$c3 << EOD
0.905850 3532.710
0.952150 2816.980
0.992350 954.960
EOD
set multiplot layout 1,1 title 'glove-100: 331479 vectors, dim 100, cosine, k=100, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.30:1.0]
set format y '%.0s%c'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=4096', \
     $c2 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096', \
     $c3 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99'
unset multiplot
