# rss.sh LABEL [VAR=VALUE...]: peak RssAnon of quiverd rebuilding bench_glove-100
# Paths: ROOT is the project (three levels up); B the build dir (default ROOT/build);
# DATA the glove-100 files (default ROOT/../shared/data/glove-100); DATA_DIR a quiverd data
# dir holding collection bench_glove-100 (ivf_pq_fs, built by tools/quiver-bench); WORK a
# scratch dir (default: a new temporary one).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
B=${B:-$ROOT/build}
DATA=${DATA:-$ROOT/../shared/data/glove-100}
DATA_DIR=${DATA_DIR:?set DATA_DIR to a data dir holding bench_glove-100}
WORK=${WORK:-$(mktemp -d)}
L=$1; shift
(env "$@" $B/quiverd --data $DATA_DIR --listen 127.0.0.1:47093 --no-auto-rebuild > $WORK/rss-$L.log 2>&1 &)
sleep 5
P=$(pgrep -f "listen 127.0.0.1:47093")
/usr/bin/python3 - $P <<'PY' &
import sys,time,os
pid=int(sys.argv[1]); peak=0; hp=0
while os.path.exists('/proc/%d'%pid):
    try:
        for l in open('/proc/%d/status'%pid):
            if l.startswith('RssAnon'): v=int(l.split()[1]); peak=max(peak,v)
        for l in open('/proc/%d/smaps_rollup'%pid):
            if l.startswith('AnonHugePages'): hp=max(hp,int(l.split()[1]))
    except Exception: break
    time.sleep(0.05)
print('peak RssAnon MiB %.1f  peak AnonHuge MiB %.1f' % (peak/1024, hp/1024))
PY
SP=$!
$B/quiver --addr 127.0.0.1:47093 index rebuild bench_glove-100 > /dev/null 2>&1
pkill -f "listen 127.0.0.1:47093"; wait $SP
