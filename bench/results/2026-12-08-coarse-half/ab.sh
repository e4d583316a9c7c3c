#!/bin/bash
# ab.sh: quiverd CPU per query of two binaries, alternated, one query per RPC, on a data dir
# holding bench_glove-100 (ivf_pq_fs, built by tools/quiver-bench --workdir).
# QD_A, QD_B: the two quiverd binaries; DATA_DIR: the data dir; B: a build dir (quiver-bench-load).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
B=${B:-$ROOT/build}
DATA=${DATA:-$ROOT/../shared/data/glove-100}
DATA_DIR=${DATA_DIR:?set DATA_DIR}
W=${WORK:-$(mktemp -d)}
/usr/bin/python3 -c "import numpy as np; np.tile(np.arange(10000,dtype=np.uint32),2).tofile('$W/o20k.u32')"
run() {
  ADDR=127.0.0.1:47051
  $1 --data $DATA_DIR --listen $ADDR --no-auto-rebuild > $W/qd.log 2>&1 & sleep 2.5
  QP=$(pgrep -f "listen $ADDR")
  perf stat -e task-clock -p $QP -o $W/st.txt -- $B/quiver-bench-load query --addr $ADDR \
    --collection bench_glove-100 --queries $DATA/query.fvecs --order $W/o20k.u32 $2 --mode single \
    --threads 2 --warmup 2000 --out $W/ids-$(basename $1).bin > $W/r.json
  /usr/bin/python3 -c "
import json,re
d=json.load(open('$W/r.json')); t=open('$W/st.txt').read()
ms=float(re.search(r'([\d.,]+) msec task-clock',t).group(1).replace(',',''))
print('%s %-40s qps %5.0f server ms/q %.4f p50 %.3f p99 %.3f' % ('$(basename $1)', '$2', d['qps'], ms/22000, d['p50_ms'], d['p99_ms']))"
  kill $QP; wait $QP 2>/dev/null
}
for i in 1 2 3; do
  for P in "--k 100 --min-recall 0.95" "--k 100 --nprobe 1" "--k 10 --nprobe 1 --no-attrs"; do
    run $QD_A "$P"; run $QD_B "$P"
  done
done
