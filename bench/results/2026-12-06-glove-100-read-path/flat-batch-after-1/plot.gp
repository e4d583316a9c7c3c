set terminal pngcairo size 700,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 30729.740
0.436350 28904.690
0.563600 16879.290
0.683100 16442.090
0.784350 11210.940
0.869150 7655.690
0.930800 5220.190
0.965450 2546.560
0.985550 1319.270
EOD
$c2 << EOD
0.303850 10007.410
0.434700 10793.020
0.560450 7438.730
0.683200 6417.760
0.783600 5329.640
0.868800 4384.330
0.929100 3677.440
0.967100 2306.510
0.986150 1048.200
EOD
$c3 << EOD
0.905850 3302.720
0.952150 2376.370
0.992350 711.530
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
