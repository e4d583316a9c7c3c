set terminal pngcairo size 700,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 34892.640
0.436350 29689.070
0.563600 20789.140
0.683100 16002.700
0.784350 13103.820
0.869150 8288.970
0.930800 5208.440
0.965450 2730.510
0.985550 1506.060
EOD
$c2 << EOD
0.303850 10755.670
0.434700 8580.180
0.560450 7818.690
0.683200 6021.640
0.783600 7593.110
0.868800 4805.710
0.929100 3737.830
0.967100 2028.930
0.986150 1332.930
EOD
$c3 << EOD
0.905850 4402.590
0.952150 2541.910
0.992350 920.610
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
