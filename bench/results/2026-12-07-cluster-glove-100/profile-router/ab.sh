#!/bin/bash
# A/B: restart the two cluster nodes with binary $1, then load single queries at min_recall 0.95
BIN=$1; TAG=$2
for pid in $(pgrep -f -- "--data /tmp/qvc/node"); do kill $pid; done
sleep 1.5
while read -r line; do
  args=${line#* }
  (setsid $BIN $args >> /tmp/prof/node-$TAG.log 2>&1 &)
done < /tmp/prof/cmds.txt
sleep 4
echo "$TAG running: $(for pid in $(pgrep -f -- "--data /tmp/qvc/node"); do readlink /proc/$pid/exe; done | sort | uniq -c | tr "\n" " ")"
L=/work/main/build-dev/quiver-bench-load
$L query --addr 127.0.0.1:46413 --collection g --queries /work/shared/data/glove-100/query.fvecs --order /tmp/prof/order20k.u32 --k 100 --min-recall 0.95 --mode single --threads 2 --warmup 1000 --out /tmp/prof/ids-c.bin 2>&1 | /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print('$TAG cluster qps %.0f p50 %.3f p99 %.3f' % (d['qps'], d['p50_ms'], d['p99_ms']))"
$L query --addr 127.0.0.1:47001 --collection g --queries /work/shared/data/glove-100/query.fvecs --order /tmp/prof/order20k.u32 --k 100 --min-recall 0.95 --mode single --threads 2 --warmup 1000 --out /tmp/prof/ids-s.bin 2>&1 | /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print('$TAG single  qps %.0f p50 %.3f p99 %.3f' % (d['qps'], d['p50_ms'], d['p99_ms']))"
