set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.310900 47153.690
0.434150 34511.960
0.561900 22916.170
0.681400 16449.330
0.782950 13278.630
0.868000 11809.550
0.929250 9964.560
0.965150 8602.130
0.985150 6916.260
EOD
$c2 << EOD
0.310900 43547.490
0.434150 33123.800
0.561900 22852.950
0.681400 16198.700
0.782950 12939.900
0.868000 11214.440
0.929250 9319.920
0.965150 7508.220
0.985150 5554.530
EOD
$c3 << EOD
0.303100 20373.520
0.434250 21563.460
0.560900 16723.860
0.683350 11412.460
0.783550 10712.120
0.868950 9723.410
0.928700 7724.790
0.966000 6979.520
0.985400 5886.110
EOD
$c4 << EOD
0.303100 10731.100
0.434250 10549.360
0.560900 8097.610
0.683350 6871.020
0.783550 6400.320
0.868950 5995.210
0.928700 5216.520
0.966000 4642.540
0.985400 3861.100
EOD
$c5 << EOD
0.907250 8952.530
0.954900 7664.720
0.997800 3853.930
EOD
$c6 << EOD
0.907250 5956.390
0.954900 5214.440
0.997800 2242.900
EOD
set multiplot layout 1,2 title 'glove-100: 331479 vectors, dim 100, cosine, k=100, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.30:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c6 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c5 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
