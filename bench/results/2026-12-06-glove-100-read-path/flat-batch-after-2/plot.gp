set terminal pngcairo size 700,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 28151.690
0.436350 28526.790
0.563600 17517.440
0.683100 17909.740
0.784350 12523.810
0.869150 7405.950
0.930800 4004.000
0.965450 2341.520
0.985550 1326.100
EOD
$c2 << EOD
0.303850 11351.620
0.434700 10695.500
0.560450 6960.030
0.683200 6483.380
0.783600 6421.820
0.868800 5467.880
0.929100 2518.850
0.967100 2085.160
0.986150 1095.780
EOD
$c3 << EOD
0.905850 3437.760
0.952150 2490.000
0.992350 863.890
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
