# clq.sh: one quiverd (ONE_ADDR, its data dir ONE_DATA) and a cluster from tools/cluster.sh
# (CLUSTER_DIR, default ./cluster-data), both holding collection g (glove-100's first 100,000).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../.." && pwd)
. "${CLUSTER_DIR:-./cluster-data}/env"
B=${B:-$ROOT/build}
D=${DATA:-$ROOT/../shared/data/glove-100}
WORK=${WORK:-$(mktemp -d)}
ONE_ADDR=${ONE_ADDR:-127.0.0.1:47081}
/usr/bin/python3 -c "import numpy as np; np.tile(np.arange(10000,dtype=np.uint32),1).tofile('$WORK/order10k.u32')"
P1=$(pgrep -f "quiverd --data ${ONE_DATA:?}")
PN=$(pgrep -f "quiverd.*cluster-data/node" | tr '\n' ' ')
cpu() { local s=0; for p in $*; do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
q() { # label addr pids threads
  local t0=$(cpu $3)
  $B/quiver-bench-load query --addr $2 --collection g --queries $D/query.fvecs --order $WORK/order10k.u32 --k 100 --min-recall 0.95 --mode single --threads $4 --warmup 1000 --out $WORK/ids.bin > $WORK/q.json 2>/dev/null
  local t1=$(cpu $3)
  /usr/bin/python3 -c "
import json; d=json.load(open('$WORK/q.json'))
print('%-8s thr %s qps %6.0f p50 %.3f p99 %.3f srv_ms %.4f' % ('$1', '$4', d['qps'], d['p50_ms'], d['p99_ms'], ($t1-$t0)*10.0/11000))"
}
for r in 1 2; do for t in 2 4 8; do
  q one $ONE_ADDR "$P1" $t
  q cluster $QUIVER_ADDR "$PN" $t
done; done
