# A/B: env configs; args: label env-for-server env-for-client
B=${B:-/work/main/build}
DATA=/work/shared/data/glove-100
ADDR=127.0.0.1:47071
/usr/bin/python3 -c "import numpy as np; np.tile(np.arange(10000,dtype=np.uint32),2).tofile('/tmp/s26/order.u32')"
NQ=20000
one() {
  local L=$1 SENV=$2 CENV=$3 PT=$4
  env $SENV ${QD:-$B/quiverd} --data /tmp/fw/data --listen $ADDR --no-auto-rebuild > /tmp/s26/qd-$L.log 2>&1 &
  local QP=$!; sleep 4
  if [ $PT = fixed ]; then PA="--k 10 --nprobe 1 --no-attrs"; else PA="--k 100 --min-recall 0.95"; fi
  env $CENV $B/quiver-bench-load query --addr $ADDR --collection bench_glove-100 --queries $DATA/query.fvecs \
    --order /tmp/s26/order.u32 $PA --mode ${MODE:-single} --batch 100 --threads 2 --warmup 2000 \
    --out /tmp/s26/ids.bin > /tmp/s26/load-$L.json 2> /tmp/s26/err-$L.txt &
  local LP=$!
  local t0=$(awk '{print $14+$15}' /proc/$QP/stat)
  wait $LP
  local t1=$(awk '{print $14+$15}' /proc/$QP/stat)
  kill $QP; wait $QP
  /usr/bin/python3 -c "
import json; d=json.load(open('/tmp/s26/load-$L.json'))
print('$L', '$PT', '${MODE:-single}', 'qps %.0f' % d['qps'], 'p50 %.3f' % d['p50_ms'], 'p99 %.3f' % d['p99_ms'],
      'srv_ms %.4f' % (($t1 - $t0) * 10.0 / ($NQ+2000)), 'cli_ms %.4f' % (1e3*(d['cpu_user_s']+d['cpu_sys_s'])/d['queries']))"
}
