# first build of glove-100 as ivf_pq_fs from a flat collection (as quiver-bench does): peak RssAnon
# first.sh QUIVERD LABEL; B (default ROOT/build), DATA, WORK as in ab.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
B=${B:-$ROOT/build}
DATA=${DATA:-$ROOT/../shared/data/glove-100}
WORK=${WORK:-$(mktemp -d)}
QD=$1; L=$2
D=$WORK/d-$L; rm -rf $D
($QD --data $D --listen 127.0.0.1:47097 --no-auto-rebuild --hnsw-coarse-min=0 > $WORK/$L.log 2>&1 &)
sleep 3
P=$(pgrep -f "listen 127.0.0.1:47097")
$B/quiver --addr 127.0.0.1:47097 collections create bench --dim 100 --metric cosine > /dev/null
$B/quiver-bench-load import --addr 127.0.0.1:47097 --collection bench --base $DATA/base.fvecs --words $DATA/base_words.txt --streams 2 > /dev/null 2>&1
echo 5 > /proc/$P/clear_refs
/usr/bin/python3 - $P <<'PY' &
import sys,time,os
pid=int(sys.argv[1]); peak=0
while os.path.exists('/proc/%d'%pid):
    try:
        for l in open('/proc/%d/status'%pid):
            if l.startswith('RssAnon'): peak=max(peak,int(l.split()[1]))
    except Exception: break
    time.sleep(0.02)
print('peak RssAnon during build MiB %.1f' % (peak/1024))
PY
SP=$!
$B/quiver --addr 127.0.0.1:47097 index rebuild bench --kind ivf_pq_fs > /dev/null 2>&1
pkill -f "listen 127.0.0.1:47097"; wait $SP
rm -rf $D
