set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
1.000000 26683.040
EOD
$c2 << EOD
1.000000 26490.970
EOD
$c3 << EOD
0.292100 433448.060
0.439550 280259.990
0.598100 218065.460
0.741300 148119.520
0.859050 83998.400
0.942350 49822.950
0.987150 31178.000
EOD
$c4 << EOD
0.292100 223218.750
0.439550 156479.140
0.598100 144151.670
0.741300 114276.190
0.859050 96017.540
0.942350 60173.970
0.987150 35121.310
EOD
$c5 << EOD
1.000000 16227.760
EOD
$c6 << EOD
1.000000 5598.370
EOD
$c7 << EOD
0.282600 64864.120
0.426550 72381.730
0.577350 59855.570
0.718050 45273.680
0.840850 37267.470
0.931200 23964.460
0.982100 15736.690
EOD
$c8 << EOD
0.282600 5931.810
0.426550 7557.390
0.577350 7604.350
0.718050 6996.310
0.840850 7426.560
0.931200 7824.870
0.982100 6162.170
EOD
$c9 << EOD
0.760100 53859.110
0.840850 40786.600
0.950800 25045.500
EOD
$c10 << EOD
0.760100 8517.110
0.840850 9314.200
0.950800 8115.520
EOD
set multiplot layout 1,2 title 'glove-100: 5000 vectors, dim 100, cosine, k=10, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.20:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss flat', \
     $c4 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=128', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver flat', \
     $c8 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=128', \
     $c10 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=128 min_recall 0.9/0.95/0.99'
set title 'batches of 50 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss flat', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=128', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver flat', \
     $c7 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=128', \
     $c9 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=128 min_recall 0.9/0.95/0.99'
unset multiplot
