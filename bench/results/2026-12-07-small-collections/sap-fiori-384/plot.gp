set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
1.000000 21583.360
EOD
$c2 << EOD
1.000000 23663.690
EOD
$c3 << EOD
0.964000 50516.251
0.995000 39342.880
1.000000 28099.565
1.000000 21734.746
1.000000 19072.824
1.000000 16172.819
1.000000 13928.620
1.000000 12443.383
1.000000 9909.170
1.000000 8574.816
1.000000 5573.405
1.000000 6930.191
EOD
$c4 << EOD
0.964000 38331.330
0.995000 32709.530
1.000000 25352.874
1.000000 18904.918
1.000000 19180.435
1.000000 15703.663
1.000000 8330.383
1.000000 12624.106
1.000000 9198.332
1.000000 6442.782
1.000000 6567.644
1.000000 6398.085
EOD
$c5 << EOD
1.000000 14697.810
EOD
$c6 << EOD
1.000000 6258.760
EOD
set multiplot layout 1,2 title 'sap-fiori-minilm-384: 678 vectors, dim 384, cosine, k=10, 100 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.90:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss flat', \
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#d95f02' title 'hnsw M=16 efc=200', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver flat'
set title 'batches of 50 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss flat', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#d95f02' title 'hnsw M=16 efc=200', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver flat'
unset multiplot
