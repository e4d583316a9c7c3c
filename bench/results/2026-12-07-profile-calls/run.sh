#!/bin/bash
# issue 16 part 1: where a call's time goes, quiverd and the benchmark client, 4 points
# paths: run from anywhere; BUILD (default build/) and the data set are found from the repository
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
B=${BUILD:-$REPO/build}
DATA=${DATA:-$REPO/../shared/data/glove-100}
set -u
D=${WORK:-${TMPDIR:-/tmp}/p16}; mkdir -p $D
ADDR=127.0.0.1:47011
$B/quiverd --data $D/data --listen $ADDR --no-auto-rebuild --metrics-listen 127.0.0.1:47012 > $D/qd.log 2>&1 &
QP=$!; sleep 2
if ! $B/quiver --addr $ADDR collections describe g > /dev/null 2>&1; then
  $B/quiver --addr $ADDR collections create g --dim 100 --metric cosine > /dev/null
  $B/quiver-bench-load import --addr $ADDR --collection g --base $DATA/base.fvecs --words $DATA/base_words.txt --streams 2 > $D/import.json
  $B/quiver --addr $ADDR index rebuild g --kind ivf_flat --nlist 4096 > $D/build.txt 2>&1
fi
$B/quiver --addr $ADDR collections describe g | grep -E "count|nlist|default_nprobe" > $D/describe.txt
/usr/bin/python3 -c "import numpy as np; np.tile(np.arange(10000,dtype=np.uint32),60).tofile('$D/order.u32')"
calls() { curl -s http://127.0.0.1:47012/metrics | grep '^quiver_rpc_requests_total' | grep 'service="quiver.v1.Search",method="Search"' | awk '{s+=$NF} END {print s+0}'; }
for pt in "single 1 10 noattrs" "single 0 100 attrs" "batch 1 10 noattrs" "batch 0 100 attrs"; do
  set -- $pt; MODE=$1; NP=$2; K=$3; AT=$4; TAG=$MODE-np$NP-k$K-$AT
  A=""; [ $AT = noattrs ] && A="--no-attrs"
  if [ $NP = 0 ]; then P="--min-recall 0.95"; else P="--nprobe $NP"; fi
  $B/quiver-bench-load query --addr $ADDR --collection g --queries $DATA/query.fvecs --order $D/order.u32 --k $K $P --mode $MODE --threads 2 --batch 100 --warmup 500 $A --out $D/ids.bin > $D/load-$TAG.json 2>&1 &
  LP=$!; sleep 2
  C0=$(calls)
  perf stat -e task-clock -p $QP -- sleep 5 2> $D/stat-server-$TAG.txt &
  SP=$!
  perf stat -e task-clock -p $LP -- sleep 5 2> $D/stat-client-$TAG.txt
  wait $SP
  C1=$(calls)
  echo "$TAG calls_in_window $((C1 - C0))" >> $D/calls.txt
  perf record --call-graph dwarf,16384 -F 299 -o $D/srv-$TAG.data -p $QP -- sleep 5 > /dev/null 2>&1
  perf record --call-graph dwarf,16384 -F 299 -o $D/cli-$TAG.data -p $LP -- sleep 4 > /dev/null 2>&1
  kill $LP 2>/dev/null; wait $LP 2>/dev/null
done
kill $QP; wait $QP 2>/dev/null
