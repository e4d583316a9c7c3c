set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
1.000000 10612.060
EOD
$c2 << EOD
1.000000 11556.420
EOD
$c3 << EOD
0.297950 351958.630
0.443200 289481.850
0.587950 229218.450
0.718450 166414.330
0.825500 99540.890
0.902000 56439.960
0.952000 29553.670
0.982700 22288.730
EOD
$c4 << EOD
0.297950 171717.740
0.443200 147015.810
0.587950 130226.750
0.718450 105273.160
0.825500 89170.040
0.902000 45830.410
0.952000 35102.350
0.982700 21875.700
EOD
$c5 << EOD
0.565650 130900.418
0.718350 86073.890
0.830300 47378.111
0.912150 30783.430
0.931450 26326.406
0.945750 21748.317
0.960150 18298.176
0.972100 12625.572
0.984800 9946.344
0.989350 7606.008
0.994850 5272.648
0.997150 3161.604
EOD
$c6 << EOD
0.565650 95893.785
0.718350 57011.761
0.830300 38827.776
0.912150 27502.966
0.931450 25254.909
0.945750 21727.482
0.960150 18403.787
0.972100 14515.201
0.984800 9344.137
0.989350 7639.334
0.994850 5166.474
0.997150 2990.007
EOD
$c7 << EOD
1.000000 8523.020
EOD
$c8 << EOD
1.000000 3620.310
EOD
$c9 << EOD
0.304050 73055.740
0.434750 73462.130
0.576250 84704.510
0.709000 63634.880
0.812500 40081.050
0.891350 25207.540
0.946800 19648.940
0.981150 17692.150
EOD
$c10 << EOD
0.304050 7056.470
0.434750 6669.230
0.576250 7026.570
0.709000 7518.990
0.812500 7200.570
0.891350 8268.370
0.946800 7098.130
0.981150 5915.150
EOD
$c11 << EOD
0.759050 47468.590
0.839900 39122.270
0.927150 21182.090
EOD
$c12 << EOD
0.759050 6765.040
0.839900 7691.410
0.927150 6358.070
EOD
set multiplot layout 1,2 title 'glove-100: 10000 vectors, dim 100, cosine, k=10, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.20:1.0]
set format y '%.0s%c'
set title 'one query per call, 2 threads'
plot $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss flat', \
     $c4 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=256', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#7570b3' title 'hnsw M=16 efc=200', \
     $c8 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver flat', \
     $c10 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256', \
     $c12 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256 min_recall 0.9/0.95/0.99'
set title 'batches of 50 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss flat', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=256', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#7570b3' title 'hnsw M=16 efc=200', \
     $c7 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver flat', \
     $c9 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256', \
     $c11 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256 min_recall 0.9/0.95/0.99'
unset multiplot
