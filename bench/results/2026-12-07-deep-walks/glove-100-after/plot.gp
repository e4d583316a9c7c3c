set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.965150 3614.630
EOD
$c2 << EOD
0.965150 2896.180
EOD
$c3 << EOD
0.966500 2237.780
EOD
$c4 << EOD
0.966500 1462.810
EOD
$c5 << EOD
0.954450 2431.270
EOD
$c6 << EOD
0.954450 1592.720
EOD
set multiplot layout 1,2 title 'glove-100: 331479 vectors, dim 100, cosine, k=100, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.90:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c6 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.95'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c5 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.95'
unset multiplot
