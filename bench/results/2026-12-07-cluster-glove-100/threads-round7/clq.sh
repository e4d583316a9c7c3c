. /tmp/s26/cl/cluster-data/env
B=/work/main/build
D=/work/shared/data/glove-100
/usr/bin/python3 -c "import numpy as np; np.tile(np.arange(10000,dtype=np.uint32),1).tofile('/tmp/s26/order10k.u32')"
P1=$(pgrep -f "quiverd --data /tmp/s26/one")
PN=$(pgrep -f "quiverd.*cluster-data/node" | tr '\n' ' ')
cpu() { local s=0; for p in $*; do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
q() { # label addr pids threads
  local t0=$(cpu $3)
  $B/quiver-bench-load query --addr $2 --collection g --queries $D/query.fvecs --order /tmp/s26/order10k.u32 --k 100 --min-recall 0.95 --mode single --threads $4 --warmup 1000 --out /tmp/s26/ids.bin > /tmp/s26/q.json 2>/dev/null
  local t1=$(cpu $3)
  /usr/bin/python3 -c "
import json; d=json.load(open('/tmp/s26/q.json'))
print('%-8s thr %s qps %6.0f p50 %.3f p99 %.3f srv_ms %.4f' % ('$1', '$4', d['qps'], d['p50_ms'], d['p99_ms'], ($t1-$t0)*10.0/11000))"
}
for r in 1 2; do for t in 2 4 8; do
  q one 127.0.0.1:47081 "$P1" $t
  q cluster $QUIVER_ADDR "$PN" $t
done; done
