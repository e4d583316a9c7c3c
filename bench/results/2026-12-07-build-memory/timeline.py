# timeline.py OUT: waits for a quiverd whose cmdline has "workdir-marker" arg, samples RssAnon every 20 ms
import sys, time, os, glob
out = open(sys.argv[1], 'w'); pat = sys.argv[2]
pid = None
while pid is None:
    for p in glob.glob('/proc/[0-9]*/cmdline'):
        try:
            c = open(p).read()
        except Exception:
            continue
        if 'quiverd' in c and pat in c:
            pid = int(p.split('/')[2]); break
    time.sleep(0.05)
t0 = time.time()
while os.path.exists('/proc/%d' % pid):
    try:
        v = [l for l in open('/proc/%d/status' % pid) if l.startswith('RssAnon')][0].split()[1]
    except Exception:
        break
    out.write('%.3f %s\n' % (time.time(), v)); out.flush()
    time.sleep(0.02)
