L=$1; shift
(env "$@" /work/main/build/quiverd --data /tmp/fw/data --listen 127.0.0.1:47093 --no-auto-rebuild > rss-$L.log 2>&1 &)
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
/work/main/build/quiver --addr 127.0.0.1:47093 index rebuild bench_glove-100 > /dev/null 2>&1
pkill -f "listen 127.0.0.1:47093"; wait $SP
