#!/bin/bash
# quiverd on TCP loopback vs a unix socket, same data, one at a time, alternating
# paths: run from anywhere; BUILD (default build/) and the data set are found from the repository
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
B=${BUILD:-$REPO/build}
DATA=${DATA:-$REPO/../shared/data/glove-100}
D=${WORK:-${TMPDIR:-/tmp}/qvs}  # a data dir holding collection g (glove-100 first 100k, ivf_flat)
for round in 1 2 3; do
 for addr in 127.0.0.1:47001 unix:$D.sock; do
  $B/quiverd --data $D --listen $addr --no-auto-rebuild > $D-$round.log 2>&1 &
  P=$!; sleep 2
  for pt in "1 10 --no-attrs" "67 100 "; do
   set -- $pt
   $B/quiver-bench-load query --addr $addr --collection g --queries $DATA/query.fvecs --order $D.order20k.u32 --k $2 --nprobe $1 --mode single --threads 2 --warmup 1000 $3 --out $D.u.bin > $D.u.json 2>&1
   /usr/bin/python3 -c "import json; d=json.load(open('$D.u.json')); print('round $round %-22s nprobe %3s k %3s  qps %6.0f p50 %.3f p99 %.3f client cpu/q %.3f ms' % ('$addr', '$1', '$2', d['qps'], d['p50_ms'], d['p99_ms'], 1000*(d['cpu_user_s']+d['cpu_sys_s'])/d['queries']))"
  done
  kill $P; wait $P 2>/dev/null
 done
done
