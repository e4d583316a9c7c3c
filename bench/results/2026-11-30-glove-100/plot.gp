set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
0.310900 61142.410
0.434150 51593.860
0.561900 41150.790
0.681400 29795.490
0.782950 21353.580
0.868000 13847.150
0.929450 8090.640
0.965450 4679.150
0.985850 2495.630
EOD
$c2 << EOD
0.310900 58799.610
0.434150 49798.310
0.561900 40049.900
0.681400 29988.230
0.782950 20672.410
0.868000 13684.630
0.929450 8094.190
0.965450 4615.260
0.985850 2536.410
EOD
$c3 << EOD
0.310900 44742.070
0.434150 34193.860
0.561900 23963.030
0.681400 16355.430
0.782950 13572.610
0.868000 12081.590
0.929250 10309.690
0.965150 8528.910
0.985150 6960.370
EOD
$c4 << EOD
0.310900 46280.390
0.434150 34205.900
0.561900 23681.380
0.681400 16327.290
0.782950 13364.100
0.868000 11446.920
0.929250 9475.370
0.965150 7438.740
0.985150 5590.610
EOD
$c5 << EOD
0.921600 9700.839
0.934850 8382.418
0.946650 6831.893
0.960050 5322.133
0.975300 3751.784
0.982400 2872.091
0.989600 1987.142
0.993200 1544.804
EOD
$c6 << EOD
0.921600 9765.568
0.934850 8305.417
0.946650 6963.788
0.960050 5447.757
0.975300 3762.017
0.982400 2925.464
0.989600 2027.413
0.993200 1567.634
EOD
$c7 << EOD
0.303100 14679.270
0.434250 13559.620
0.560900 12942.580
0.683350 11824.120
0.783550 10471.660
0.869100 7497.160
0.929100 5773.600
0.966600 3692.490
0.986150 2175.420
EOD
$c8 << EOD
0.303100 8422.990
0.434250 8304.470
0.560900 6866.130
0.683350 6607.540
0.783550 6156.830
0.869100 5153.980
0.929100 4021.690
0.966600 2843.400
0.986150 1759.120
EOD
$c9 << EOD
0.303100 15820.600
0.434250 10932.510
0.560900 9155.590
0.683350 7746.960
0.783550 7714.940
0.868950 6439.760
0.928700 6219.340
0.966000 5709.190
0.985400 4872.400
EOD
$c10 << EOD
0.303100 8747.100
0.434250 8186.540
0.560900 6371.750
0.683350 5706.450
0.783550 5126.600
0.868950 4621.700
0.928700 3989.010
0.966000 3733.860
0.985400 3218.360
EOD
$c11 << EOD
0.905950 6646.670
0.952200 4554.860
0.992250 1612.470
EOD
$c12 << EOD
0.905950 4531.520
0.952200 3381.780
0.992250 1328.030
EOD
$c13 << EOD
0.907250 6126.790
0.954900 5763.770
0.997800 3419.890
EOD
$c14 << EOD
0.907250 4612.570
0.954900 3966.610
0.997800 1939.680
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
     $c4 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#7570b3' title 'hnsw M=16 efc=200', \
     $c8 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096', \
     $c10 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c12 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99', \
     $c14 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
set title 'batches of 100 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss ivf_flat nlist=4096', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#7570b3' title 'hnsw M=16 efc=200', \
     $c7 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096', \
     $c9 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10', \
     $c11 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#1b9e77' title 'quiver ivf_flat nlist=4096 min_recall 0.9/0.95/0.99', \
     $c13 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_pq_fs nlist=4096 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
