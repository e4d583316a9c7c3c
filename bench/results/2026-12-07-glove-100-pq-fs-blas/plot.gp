set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 19831.930
0.436350 14428.310
0.563600 8775.530
0.683100 7551.890
0.784350 5721.030
0.869150 5553.870
0.930550 5239.330
0.965150 3595.790
0.984850 3571.910
EOD
$c2 << EOD
0.311350 22428.810
0.436350 12485.280
0.563600 10244.430
0.683100 6125.550
0.784350 5373.050
0.869150 5317.490
0.930550 4417.290
0.965150 3992.780
0.984850 3115.250
EOD
$c3 << EOD
0.922950 3297.654
0.934800 2791.282
0.946500 2477.378
0.960350 2054.176
0.975750 1267.427
0.983100 1253.808
0.989600 836.403
0.993150 590.127
EOD
$c4 << EOD
0.922950 3445.801
0.934800 2097.290
0.946500 2276.889
0.960350 1737.431
0.975750 1435.835
0.983100 1119.516
0.989600 903.421
0.993150 662.672
EOD
$c5 << EOD
0.303850 7014.800
0.434700 6141.620
0.560450 4755.860
0.683200 3895.120
0.783550 3386.240
0.868650 3361.200
0.928700 3220.160
0.966500 2584.490
0.985400 2490.600
EOD
$c6 << EOD
0.303850 3120.720
0.434700 3204.210
0.560450 2719.750
0.683200 2350.560
0.783550 2056.120
0.868650 2120.880
0.928700 2147.160
0.966500 1901.180
0.985400 1414.570
EOD
$c7 << EOD
0.905600 2794.710
0.954450 2918.020
0.997800 1532.040
EOD
$c8 << EOD
0.905600 2458.740
0.954450 1804.420
0.997800 805.840
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
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#d95f02' title 'hnsw M=16 efc=200', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c8 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#d95f02' title 'hnsw M=16 efc=200', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c7 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
