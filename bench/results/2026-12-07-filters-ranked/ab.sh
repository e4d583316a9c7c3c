#!/bin/bash
# A/B of two quiverd binaries (OLD, NEW) on a data dir left by
#   tools/quiver-bench --spec auto --filter-selectivity 0.5 --filter-correlated --workdir WORK ...
# (all of glove-100 as ivf_pq_fs, with the "sel" and "cluster" attributes): load.py sends
# batches of 100 queries (k 100, attributes) from 2 threads for 5 s, unfiltered ("none"),
# with the correlated filter cluster any_of [0..5] ("corr", 55% of the items) and with
# sel < 5000 ("indep", 50%), 3 alternated rounds.
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
D=${WORK:?the quiver-bench workdir}; OLD=${OLD:?}; NEW=${NEW:?}
for round in 1 2 3; do
for bin in OLD NEW; do
  ${!bin} --data $D/data --listen 127.0.0.1:47031 --no-auto-rebuild > $D/ab-$bin.log 2>&1 &
  QP=$!; sleep 3
  for mode in none corr indep; do
    echo "r$round $bin $(/usr/bin/python3 $REPO/bench/results/2026-12-07-filters-ranked/load.py 127.0.0.1:47031 5 $mode)"
  done
  kill $QP; wait $QP 2>/dev/null
done
done
