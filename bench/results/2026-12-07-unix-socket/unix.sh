#!/bin/bash
# quiverd on TCP loopback vs a unix socket, same data, one at a time, alternating
B=/work/main/build-dev
for round in 1 2 3; do
 for addr in 127.0.0.1:47001 unix:/tmp/qvs.sock; do
  $B/quiverd --data /tmp/qvs --listen $addr --no-auto-rebuild > /tmp/qvs-$round.log 2>&1 &
  P=$!; sleep 2
  for pt in "1 10 --no-attrs" "67 100 "; do
   set -- $pt
   $B/quiver-bench-load query --addr $addr --collection g --queries /work/shared/data/glove-100/query.fvecs --order /tmp/prof/order20k.u32 --k $2 --nprobe $1 --mode single --threads 2 --warmup 1000 $3 --out /tmp/prof/u.bin > /tmp/prof/u.json 2>&1
   /usr/bin/python3 -c "import json; d=json.load(open('/tmp/prof/u.json')); print('round $round %-22s nprobe %3s k %3s  qps %6.0f p50 %.3f p99 %.3f client cpu/q %.3f ms' % ('$addr', '$1', '$2', d['qps'], d['p50_ms'], d['p99_ms'], 1000*(d['cpu_user_s']+d['cpu_sys_s'])/d['queries']))"
  done
  kill $P; wait $P 2>/dev/null
 done
done
