#!/bin/bash
# Filtered batches before/after 7414701 (a batch's coarse keys in one BLAS product, empty
# lists skipped, nprobe widened by f^-0.33): MNIST-shaped 60k (ivf_flat, 784-d) alternated
# twice, then glove-100 (ivf_pq_fs) after. BEFORE/AFTER: cmake build dirs of cf5c8bb and
# 7414701 (RelWithDebInfo). SETS: where tools/quiver-bench --make-sets wrote its sets.
set -e
cd "$(dirname "$0")/../../.."
OUT=bench/results/2026-12-07-filters-batch-keys
SETS=${SETS:?tools/quiver-bench --make-sets SETS first}
M="--data $SETS/mnist-60k --spec auto --nprobes 16 --min-recalls 0.95 --queries 1000 --modes batch
   --skip-hnsw --skip-faiss --skip-restart --filter-selectivity 0.2,0.5,0.9 --filter-correlated"
for r in 1 2; do
  tools/quiver-bench --build "${BEFORE:?}" $M --out $OUT/mnist-before-r$r
  tools/quiver-bench --build "${AFTER:?}" $M --out $OUT/mnist-after-r$r
done
tools/quiver-bench --build "$AFTER" --spec auto --nprobes 128 --min-recalls 0.95 --queries 2000 --runs 2 \
  --skip-hnsw --skip-restart --filter-selectivity 0.2,0.5,0.9 --filter-correlated --out $OUT/glove-100-after
