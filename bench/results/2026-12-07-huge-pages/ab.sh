# A/B: env configs; args: label env-for-server env-for-client
# Paths: ROOT is the project (three levels up); B the build dir (default ROOT/build);
# DATA the glove-100 files (default ROOT/../shared/data/glove-100); DATA_DIR a quiverd data
# dir holding collection bench_glove-100 (ivf_pq_fs, built by tools/quiver-bench); WORK a
# scratch dir (default: a new temporary one).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
B=${B:-$ROOT/build}
DATA=${DATA:-$ROOT/../shared/data/glove-100}
DATA_DIR=${DATA_DIR:?set DATA_DIR to a data dir holding bench_glove-100}
WORK=${WORK:-$(mktemp -d)}
ADDR=127.0.0.1:47071
/usr/bin/python3 -c "import numpy as np; np.tile(np.arange(10000,dtype=np.uint32),2).tofile('$WORK/order.u32')"
NQ=20000
one() {
  local L=$1 SENV=$2 CENV=$3 PT=$4
  env $SENV ${QD:-$B/quiverd} --data $DATA_DIR --listen $ADDR --no-auto-rebuild > $WORK/qd-$L.log 2>&1 &
  local QP=$!; sleep 4
  if [ $PT = fixed ]; then PA="--k 10 --nprobe 1 --no-attrs"; else PA="--k 100 --min-recall 0.95"; fi
  env $CENV $B/quiver-bench-load query --addr $ADDR --collection bench_glove-100 --queries $DATA/query.fvecs \
    --order $WORK/order.u32 $PA --mode ${MODE:-single} --batch 100 --threads 2 --warmup 2000 \
    --out $WORK/ids.bin > $WORK/load-$L.json 2> $WORK/err-$L.txt &
  local LP=$!
  local t0=$(awk '{print $14+$15}' /proc/$QP/stat)
  wait $LP
  local t1=$(awk '{print $14+$15}' /proc/$QP/stat)
  kill $QP; wait $QP
  /usr/bin/python3 -c "
import json; d=json.load(open('$WORK/load-$L.json'))
print('$L', '$PT', '${MODE:-single}', 'qps %.0f' % d['qps'], 'p50 %.3f' % d['p50_ms'], 'p99 %.3f' % d['p99_ms'],
      'srv_ms %.4f' % (($t1 - $t0) * 10.0 / ($NQ+2000)), 'cli_ms %.4f' % (1e3*(d['cpu_user_s']+d['cpu_sys_s'])/d['queries']))"
}
