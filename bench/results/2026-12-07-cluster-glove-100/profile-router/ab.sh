#!/bin/bash
# A/B: restart the two cluster nodes with binary $1, then load single queries at min_recall 0.95
# paths: run from anywhere; BUILD (default build/) and the data set are found from the repository
REPO=$(cd "$(dirname "$0")/../../../.." && pwd)
B=${BUILD:-$REPO/build}
DATA=${DATA:-$REPO/../shared/data/glove-100}
BIN=$1; TAG=$2
# W: a work dir holding cmds.txt (the nodes' command lines, from a `tools/cluster.sh up --dir $W/qvc`);
# CLUSTER_ADDR / SINGLE_ADDR: node 1 and a single quiverd holding the same collection g
W=${WORK:-${TMPDIR:-/tmp}/prof}
for pid in $(pgrep -f -- "--data $W/qvc/node"); do kill $pid; done
sleep 1.5
while read -r line; do
  args=${line#* }
  (setsid $BIN $args >> $W/node-$TAG.log 2>&1 &)
done < $W/cmds.txt
sleep 4
echo "$TAG running: $(for pid in $(pgrep -f -- "--data $W/qvc/node"); do readlink /proc/$pid/exe; done | sort | uniq -c | tr "\n" " ")"
L=$B/quiver-bench-load
$L query --addr ${CLUSTER_ADDR:?} --collection g --queries $DATA/query.fvecs --order $W/order20k.u32 --k 100 --min-recall 0.95 --mode single --threads 2 --warmup 1000 --out $W/ids-c.bin 2>&1 | /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print('$TAG cluster qps %.0f p50 %.3f p99 %.3f' % (d['qps'], d['p50_ms'], d['p99_ms']))"
$L query --addr ${SINGLE_ADDR:?} --collection g --queries $DATA/query.fvecs --order $W/order20k.u32 --k 100 --min-recall 0.95 --mode single --threads 2 --warmup 1000 --out $W/ids-s.bin 2>&1 | /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print('$TAG single  qps %.0f p50 %.3f p99 %.3f' % (d['qps'], d['p50_ms'], d['p99_ms']))"
