set terminal pngcairo size 700,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
1.000000 931.730
EOD
$c2 << EOD
0.282100 79005.610
0.403450 60646.370
0.528400 38418.970
0.649000 27751.860
0.760850 26856.510
0.850400 16852.610
0.918050 9180.140
0.967150 6185.750
0.991550 3094.770
EOD
$c3 << EOD
0.363400 68196.610
0.497400 51133.050
0.634400 34834.310
0.755650 19292.350
0.859200 14233.690
0.935150 7082.080
0.978750 5146.980
0.996600 2126.450
1.000000 952.270
EOD
$c4 << EOD
0.363400 34630.650
0.497400 20431.370
0.634400 12174.380
0.755650 10685.660
0.859200 8622.880
0.935150 8240.860
0.978750 6488.350
0.996600 6109.480
1.000000 4580.140
EOD
$c5 << EOD
0.911400 7136.131
0.925500 6259.849
0.940200 4610.476
0.957900 3636.263
0.974050 2852.231
0.982750 1798.987
0.991200 1301.110
0.995100 1119.507
EOD
$c6 << EOD
1.000000 967.150
EOD
$c7 << EOD
0.284350 15396.820
0.402700 16317.620
0.530700 11282.610
0.650850 9673.280
0.762200 9232.950
0.852200 9227.850
0.919600 5820.900
0.965600 4816.990
0.990150 2254.930
EOD
$c8 << EOD
0.344750 13669.090
0.475850 12593.900
0.613850 10782.630
0.736400 11173.160
0.838700 7408.430
0.914900 5355.890
0.963100 3011.720
0.990250 1892.040
1.000000 706.890
EOD
$c9 << EOD
0.344750 9690.740
0.475850 7646.740
0.613850 5971.200
0.736400 5266.820
0.838700 4885.930
0.914900 4775.200
0.963100 4133.320
0.990250 3795.970
1.000000 3101.420
EOD
$c10 << EOD
0.794250 8250.350
0.877300 7721.110
0.965600 4175.440
EOD
$c11 << EOD
0.798900 8143.340
0.871650 6299.550
0.954350 3799.020
EOD
$c12 << EOD
0.798900 5129.480
0.871650 4864.610
0.954350 4495.290
EOD
set multiplot layout 1,1 title 'glove-100: 60000 vectors, dim 100, cosine, k=100, 2000 queries; AMD EPYC, 2 cores'
set logscale y
set grid xtics ytics mytics
set xlabel 'recall@10'
set ylabel 'queries per second (log)'
set key bottom left box opaque
set xrange [0.20:1.0]
set format y '%.0s%c'
set title 'batches of 50 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss flat', \
     $c2 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=1024', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#7570b3' title 'faiss ivf_flat nlist=256', \
     $c4 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#e7298a' title 'faiss ivf_pq_fs nlist=256 m=50 nbits=4 refine=10', \
     $c5 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#66a61e' title 'hnsw M=16 efc=200', \
     $c6 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver flat', \
     $c7 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=1024', \
     $c8 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#7570b3' title 'quiver ivf_flat nlist=256', \
     $c9 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#e7298a' title 'quiver ivf_pq_fs nlist=256 m=50 nbits=4 refine=10', \
     $c10 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=1024 min_recall 0.9/0.95/0.99', \
     $c11 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#7570b3' title 'quiver ivf_flat nlist=256 min_recall 0.9/0.95/0.99', \
     $c12 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#e7298a' title 'quiver ivf_pq_fs nlist=256 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
