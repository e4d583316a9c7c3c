#!/bin/bash
# profile quiverd under quiver-bench-load: $1 = single|batch, $2 = nprobe, $3 = k, $4 = attrs|noattrs
OUT=${OUT:-qvprof}; mkdir -p $OUT
${QUIVERD:-build/quiverd} --listen 127.0.0.1:50999 --data ${DATA_DIR:?a data dir holding collection g} --no-auto-rebuild > $OUT/qd.log 2>&1 &
QP=$!
sleep 3
A=""; [ "$4" = noattrs ] && A="--no-attrs"
build/quiver-bench-load query --addr 127.0.0.1:50999 --collection g --queries ../shared/data/glove-100/query.fvecs --order $OUT/order.u32 --k $3 --nprobe $2 --mode $1 --threads 2 --batch 100 --warmup 500 $A --out $OUT/ids.bin > $OUT/load-$1-$2-$3-$4.json 2>&1 &
LP=$!
sleep 1
perf stat -e task-clock -p $QP -- sleep 5 2> $OUT/stat-$1-$2-$3-$4.txt
perf record -g -o $OUT/perf-$1-$2-$3-$4.data -p $QP -- sleep 5 2>/dev/null
wait $LP
kill $QP; wait $QP 2>/dev/null
