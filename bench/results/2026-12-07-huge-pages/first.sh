# first build of glove-100 as ivf_pq_fs from a flat collection (as quiver-bench does): peak RssAnon
QD=$1; L=$2
D=/tmp/s26/rss1/d-$L; rm -rf $D
($QD --data $D --listen 127.0.0.1:47097 --no-auto-rebuild --hnsw-coarse-min=0 > /tmp/s26/rss1/$L.log 2>&1 &)
sleep 3
P=$(pgrep -f "listen 127.0.0.1:47097")
B=/work/main/build
$B/quiver --addr 127.0.0.1:47097 collections create bench --dim 100 --metric cosine > /dev/null
$B/quiver-bench-load import --addr 127.0.0.1:47097 --collection bench --base /work/shared/data/glove-100/base.fvecs --words /work/shared/data/glove-100/base_words.txt --streams 2 > /dev/null 2>&1
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
