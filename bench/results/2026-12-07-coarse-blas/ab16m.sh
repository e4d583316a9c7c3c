#!/bin/bash
# search throughput, binary $1 ($2 = tag, $3 = single|batch): nprobe 1 / k 10 / no attributes and min_recall 0.95 / k 100 / attributes
# paths: run from anywhere; BUILD (default build/) and the data set are found from the repository
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
B=${BUILD:-$REPO/build}
DATA=${DATA:-$REPO/../shared/data/glove-100}
BIN=$1; TAG=$2; MODE=${3:-batch}; D=${WORK:-${TMPDIR:-/tmp}/p16}; ADDR=127.0.0.1:47021  # D/data: a data dir holding collection g (run.sh of ../2026-12-07-profile-calls makes it)
$BIN --data $D/data --listen $ADDR --no-auto-rebuild > $D/ab-$TAG.log 2>&1 &
QP=$!; sleep 2
for pt in "1 10 --no-attrs" "0 100 "; do
  set -- $pt
  if [ $1 = 0 ]; then P="--min-recall 0.95"; else P="--nprobe $1"; fi
  $B/quiver-bench-load query --addr $ADDR --collection g --queries $DATA/query.fvecs --order $D/order20k.u32 --k $2 $P --mode $MODE --threads 2 --batch 100 --warmup 1000 $3 --out $D/ab.bin > $D/ab.json 2>&1
  /usr/bin/python3 -c "import json; d=json.load(open('$D/ab.json')); print('$TAG $MODE nprobe $1 k $2: %6.0f q/s  p50 %.3f ms  p99 %.3f ms' % (d['qps'], d['p50_ms'], d['p99_ms']))"
done
kill $QP; wait $QP 2>/dev/null
