set terminal pngcairo size 700,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.868800 3780.880
0.967100 2269.690
EOD
$c2 << EOD
0.878850 2386.990
0.970400 1528.410
EOD
$c3 << EOD
0.905850 4137.320
0.952150 2640.790
0.992350 853.280
EOD
$c4 << EOD
0.914450 2649.040
0.958400 1720.090
0.992450 809.070
EOD
set multiplot layout 1,1 title 'glove-100: 331479 vectors, dim 100, cosine, k=100, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.80:1.0]
set format y '%.0s%c'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096', \
     $c2 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver-cluster ivf_flat nlist=4096', \
     $c3 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99', \
     $c4 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver-cluster ivf_flat nlist=4096 min_recall 0.9/0.95/0.99'
unset multiplot
