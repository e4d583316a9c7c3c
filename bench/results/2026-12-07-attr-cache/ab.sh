#!/bin/bash
# The attribute cache on and off (--attr-cache 0), same binary, alternating:
# quiverd CPU per query and QPS, k 100 with attributes at min_recall 0.95, one
# query per RPC and batches of 100, 2 client threads, 20,000 queries after
# 2,000 of warm-up. DATA_DIR: a data directory holding glove-100 (331,479
# items with the "word" attribute) as collection bench_glove-100, built by
# tools/quiver-bench (ivf_pq_fs, what "auto" builds there).
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
B=${BUILD:-$REPO/build}
DATA=${DATA:-$REPO/../shared/data/glove-100}
DD=${DATA_DIR:?a data directory holding bench_glove-100}
W=${WORK:-${TMPDIR:-/tmp}/attr-cache-ab}; mkdir -p $W
ADDR=127.0.0.1:47041
/usr/bin/python3 -c "import numpy as np; np.tile(np.arange(10000,dtype=np.uint32),2).tofile('$W/order.u32')"
one() { # label mode quiverd-args...
  local L=$1 M=$2; shift 2
  $B/quiverd --data $DD --listen $ADDR --no-auto-rebuild "$@" > $W/qd-$L.log 2>&1 &
  local QP=$!; sleep 4
  $B/quiver-bench-load query --addr $ADDR --collection bench_glove-100 --queries $DATA/query.fvecs \
    --order $W/order.u32 --k 100 --min-recall 0.95 --mode $M --batch 100 --threads 2 --warmup 2000 \
    --out $W/ids.bin > $W/load-$L.json 2> $W/err-$L.txt &
  local LP=$!
  local t0=$(awk '{print $14+$15}' /proc/$QP/stat)
  wait $LP
  local t1=$(awk '{print $14+$15}' /proc/$QP/stat)
  kill $QP; wait $QP
  /usr/bin/python3 -c "
import json; d=json.load(open('$W/load-$L.json'))
print('$L', '$M', 'qps %.0f' % d['qps'], 'p50_ms %.3f' % d['p50_ms'], 'p99_ms %.3f' % d['p99_ms'],
      'quiverd_cpu_ms_per_query %.4f' % (($t1 - $t0) * 10.0 / 22000))"
}
for r in ${ROUNDS:-1 2 3}; do
  for m in single batch; do
    one off-$r-$m $m --attr-cache 0
    one on-$r-$m $m
  done
done
