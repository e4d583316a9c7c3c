set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.675600 20336.300
0.766850 16503.830
0.836700 11603.820
0.883100 12256.060
0.905000 9050.600
0.918700 6870.700
EOD
$c2 << EOD
0.675600 22968.330
0.766850 17556.390
0.836700 15911.280
0.883100 11678.960
0.905000 7844.740
0.918700 4936.180
EOD
$c3 << EOD
0.683150 8194.570
0.783350 7567.870
0.868100 5890.300
0.927500 5248.750
0.963750 5642.020
0.981900 4428.960
EOD
$c4 << EOD
0.683150 4468.340
0.783350 3928.090
0.868100 3929.910
0.927500 3278.360
0.963750 2412.340
0.981900 2477.140
EOD
$c5 << EOD
0.904800 7194.500
0.952300 5834.000
0.993750 2844.450
EOD
$c6 << EOD
0.904800 3270.670
0.952300 2783.370
0.993750 1242.290
EOD
set multiplot layout 1,2 title 'glove-100: 331479 vectors, dim 100, cosine, k=10, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.60:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c6 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
set title 'batches of 50 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c5 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
