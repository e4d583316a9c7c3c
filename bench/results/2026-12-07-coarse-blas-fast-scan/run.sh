#!/bin/bash
# A/B of two quiverd binaries (OLD, NEW) on one data dir holding all of glove-100 as
# ivf_pq_fs (nlist 4096, built by `quiver index rebuild g --kind ivf_pq_fs`), at
# min_recall 0.95: batches of 50 (k 10 without attributes, k 100 with) and one query per
# RPC (k 10), 20,000 queries a point, 2 client threads; quiverd's CPU per query from
# /proc. Paths: BUILD (build/), DATA (../shared/data/glove-100), WORK (the data dir's parent).
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
B=${BUILD:-$REPO/build}; DATA=${DATA:-$REPO/../shared/data/glove-100}; D=${WORK:-${TMPDIR:-/tmp}/pqprof}
OLD=${OLD:?quiverd before}; NEW=${NEW:?quiverd after}; ADDR=127.0.0.1:47021
/usr/bin/python3 -c "import numpy as np; np.random.default_rng(1).permutation(np.tile(np.arange(10000,dtype=np.uint32),2)).astype(np.uint32).tofile('$D/order20k.u32')"
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for round in ${ROUNDS:-1 2}; do
for bin in OLD NEW; do
  ${!bin} --data $D/data --listen $ADDR --no-auto-rebuild > $D/qd-$bin.log 2>&1 &
  QP=$!; sleep 3
  for pt in ${POINTS:-batch_10_noattrs batch_100_attrs single_10_noattrs}; do
    set -- ${pt//_/ }; A=""; [ $3 = noattrs ] && A="--no-attrs"
    c0=$(cpu $QP)
    $B/quiver-bench-load query --addr $ADDR --collection g --queries $DATA/query.fvecs --order $D/order20k.u32 \
      --k $2 --min-recall 0.95 --mode $1 --threads 2 --batch 50 $A --out $D/ids.bin > $D/r.json 2>&1
    c1=$(cpu $QP)
    echo "r$round $bin $1 k$2 $(grep -o '"qps": *[0-9.]*' $D/r.json) server_ms_per_q $(echo "($c1-$c0)*10/20000" | bc -l | cut -c1-6)"
  done
  kill $QP; wait $QP 2>/dev/null
done
done
