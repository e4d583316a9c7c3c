#!/bin/bash
REPO=$(cd "$(dirname "$0")/../../.." && pwd); cd $REPO
B=${BUILD:-$REPO/build}; DATA=${DATA:-$REPO/../shared/data/glove-100}; D=${WORK:-${TMPDIR:-/tmp}/pqprof}; ADDR=127.0.0.1:47021
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for round in 1 2; do
for t in 1 2 4 8; do
  $B/quiverd --data $D/data --listen $ADDR --no-auto-rebuild --threads $t > $D/qd-t.log 2>&1 &
  QP=$!; sleep 3
  for pt in batch_10 single_10; do
    set -- ${pt//_/ }
    c0=$(cpu $QP)
    $B/quiver-bench-load query --addr $ADDR --collection g --queries $DATA/query.fvecs --order $D/order20k.u32 --k $2 --min-recall 0.95 --mode $1 --threads 2 --batch 50 --no-attrs --out $D/ids.bin > $D/t.json 2>&1
    c1=$(cpu $QP)
    echo "r$round threads=$t $1 k$2 $(grep -o '"qps": *[0-9.]*' $D/t.json) $(grep -o '"p99_ms": *[0-9.]*' $D/t.json) server_ms_per_q $(echo "($c1-$c0)*10/20000" | bc -l | cut -c1-6)"
  done
  kill $QP; wait $QP 2>/dev/null
done
done
