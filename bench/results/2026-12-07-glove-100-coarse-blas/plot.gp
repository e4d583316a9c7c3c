set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.311350 20591.720
0.436350 17706.330
0.563600 15092.920
0.683100 11789.510
0.784350 7784.290
0.869150 5287.410
0.930800 3265.300
0.965450 1909.640
0.985550 1053.740
EOD
$c2 << EOD
0.311350 18842.860
0.436350 16852.210
0.563600 13015.480
0.683100 11217.400
0.784350 8517.500
0.869150 5688.580
0.930800 2807.010
0.965450 1690.660
0.985550 902.970
EOD
$c3 << EOD
0.921700 3031.655
0.934250 2575.701
0.946200 1965.213
0.960150 1806.128
0.975600 1118.706
0.982700 908.384
0.989550 712.635
0.993150 552.863
EOD
$c4 << EOD
0.921700 2609.050
0.934250 2548.196
0.946200 2050.517
0.960150 1744.141
0.975600 1194.573
0.982700 1057.891
0.989550 668.387
0.993150 569.292
EOD
$c5 << EOD
0.303850 8248.930
0.434700 6151.870
0.560450 6886.380
0.683200 5448.600
0.783600 4598.280
0.868800 3470.640
0.929100 2342.460
0.967100 1595.290
0.986150 850.360
EOD
$c6 << EOD
0.303850 2994.220
0.434700 3150.910
0.560450 3117.850
0.683200 2677.250
0.783600 2299.170
0.868800 2187.480
0.929100 1481.570
0.967100 970.500
0.986150 682.880
EOD
$c7 << EOD
0.905850 3007.640
0.952150 1746.450
0.992350 549.430
EOD
$c8 << EOD
0.905850 1969.120
0.952150 1365.410
0.992350 481.940
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
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=4096', \
     $c4 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#d95f02' title 'hnsw M=16 efc=200', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096', \
     $c8 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=4096', \
     $c3 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#d95f02' title 'hnsw M=16 efc=200', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096', \
     $c7 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99'
unset multiplot
