set terminal pngcairo size 1400,650 font 'Sans,10'
set output 'plot.png'
set termoption noenhanced
$c1 << EOD
1.000000 7129.340
EOD
$c2 << EOD
1.000000 7441.320
EOD
$c3 << EOD
0.329650 202930.290
0.464100 191415.730
0.608100 111313.080
0.735200 85011.510
0.843050 58383.580
0.917650 35533.440
0.965150 17646.350
0.992200 10084.590
EOD
$c4 << EOD
0.329650 174562.510
0.464100 154486.020
0.608100 125541.140
0.735200 94426.270
0.843050 63021.370
0.917650 39712.790
0.965150 21849.800
0.992200 12510.210
EOD
$c5 << EOD
0.299250 170975.610
0.437500 140758.300
0.579400 148366.770
0.712050 101706.780
0.823400 78669.820
0.901350 49496.170
0.953400 30878.330
0.984400 18115.380
EOD
$c6 << EOD
0.299250 133027.890
0.437500 115477.330
0.579400 107814.890
0.712050 77390.040
0.823400 53696.290
0.901350 42531.310
0.953400 26191.530
0.984400 15467.400
EOD
$c7 << EOD
0.299250 107980.280
0.437500 94785.890
0.579400 62632.550
0.711900 62128.640
0.822200 38967.330
0.897000 34645.380
0.946400 24146.570
0.974400 18293.090
EOD
$c8 << EOD
0.299250 88770.820
0.437500 68241.320
0.579400 59995.000
0.711900 63035.240
0.822200 53208.410
0.897000 42254.650
0.946400 27591.310
0.974400 17462.370
EOD
$c9 << EOD
0.593700 45170.552
0.737300 36073.330
0.850950 29856.803
0.929550 13724.116
0.946700 13694.705
0.960100 10809.601
0.972450 9706.554
0.983550 7528.538
0.993100 5256.877
0.996350 3786.284
0.998400 2719.233
0.999100 2380.186
EOD
$c10 << EOD
0.593700 31503.578
0.737300 28072.649
0.850950 21558.359
0.929550 18285.659
0.946700 12909.381
0.960100 10284.728
0.972450 9301.061
0.983550 6361.365
0.993100 5687.624
0.996350 3475.032
0.998400 2401.840
0.999100 1815.926
EOD
$c11 << EOD
1.000000 6498.290
EOD
$c12 << EOD
1.000000 3181.730
EOD
$c13 << EOD
0.325250 71549.990
0.458500 56667.220
0.599000 43865.500
0.729450 31333.480
0.836950 29159.720
0.912500 16192.650
0.963300 12446.510
0.991950 7404.950
EOD
$c14 << EOD
0.325250 7772.590
0.458500 10201.890
0.599000 7817.960
0.729450 7819.920
0.836950 6619.570
0.912500 6385.180
0.963300 6229.370
0.991950 4842.350
EOD
$c15 << EOD
0.310250 71999.850
0.443550 52290.520
0.576600 64167.320
0.707150 52883.650
0.812100 33398.230
0.893500 20604.000
0.948650 16780.630
0.980500 12270.950
EOD
$c16 << EOD
0.310250 5935.680
0.443550 7101.630
0.576600 6813.790
0.707150 6491.580
0.812100 5347.620
0.893500 5618.950
0.948650 5863.600
0.980500 5136.600
EOD
$c17 << EOD
0.310250 40842.350
0.443550 23698.000
0.576600 16436.620
0.707150 15298.810
0.812100 10730.970
0.893500 9337.930
0.948650 8982.340
0.980500 7502.510
EOD
$c18 << EOD
0.310250 5982.950
0.443550 6800.110
0.576600 5467.060
0.707150 6461.590
0.812100 5926.890
0.893500 4432.030
0.948650 4731.380
0.980500 4157.890
EOD
$c19 << EOD
0.781650 21548.240
0.858600 20049.060
0.945500 13361.330
EOD
$c20 << EOD
0.781650 7558.480
0.858600 6379.800
0.945500 6252.570
EOD
$c21 << EOD
0.784250 35032.340
0.862600 29551.780
0.951350 15369.490
EOD
$c22 << EOD
0.784250 7896.130
0.862600 6800.710
0.951350 5867.090
EOD
$c23 << EOD
0.784250 13153.680
0.862600 11890.780
0.951350 8313.860
EOD
$c24 << EOD
0.784250 4976.500
0.862600 5431.760
0.951350 4215.360
EOD
set multiplot layout 1,2 title 'glove-100: 20000 vectors, dim 100, cosine, k=10, 2000 queries; AMD EPYC, 2 cores'
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
     $c6 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#7570b3' title 'faiss ivf_flat nlist=512', \
     $c8 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#e7298a' title 'faiss ivf_pq_fs nlist=512 m=50 nbits=4 refine=10', \
     $c10 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#66a61e' title 'hnsw M=16 efc=200', \
     $c12 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver flat', \
     $c14 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256', \
     $c16 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#7570b3' title 'quiver ivf_flat nlist=512', \
     $c18 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#e7298a' title 'quiver ivf_pq_fs nlist=512 m=50 nbits=4 refine=10', \
     $c20 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256 min_recall 0.9/0.95/0.99', \
     $c22 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#7570b3' title 'quiver ivf_flat nlist=512 min_recall 0.9/0.95/0.99', \
     $c24 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#e7298a' title 'quiver ivf_pq_fs nlist=512 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
set title 'batches of 50 queries per call, 2 threads'
plot $c1 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#1b9e77' title 'faiss flat', \
     $c3 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#d95f02' title 'faiss ivf_flat nlist=256', \
     $c5 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#7570b3' title 'faiss ivf_flat nlist=512', \
     $c7 using 1:2 with linespoints lw 2 dt 2 pt 4 ps 0.9 lc rgb '#e7298a' title 'faiss ivf_pq_fs nlist=512 m=50 nbits=4 refine=10', \
     $c9 using 1:2 with linespoints lw 2 dt 1 pt 9 ps 0.9 lc rgb '#66a61e' title 'hnsw M=16 efc=200', \
     $c11 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#1b9e77' title 'quiver flat', \
     $c13 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256', \
     $c15 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#7570b3' title 'quiver ivf_flat nlist=512', \
     $c17 using 1:2 with linespoints lw 2 dt 1 pt 7 ps 0.9 lc rgb '#e7298a' title 'quiver ivf_pq_fs nlist=512 m=50 nbits=4 refine=10', \
     $c19 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#d95f02' title 'quiver ivf_flat nlist=256 min_recall 0.9/0.95/0.99', \
     $c21 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#7570b3' title 'quiver ivf_flat nlist=512 min_recall 0.9/0.95/0.99', \
     $c23 using 1:2 with points pt 6 ps 2.2 lw 2 lc rgb '#e7298a' title 'quiver ivf_pq_fs nlist=512 m=50 nbits=4 refine=10 min_recall 0.9/0.95/0.99'
unset multiplot
