#!/usr/bin/python3
"""Parse each run's summary.md 'QPS at recall@10 = 0.95' block; print per-run
figures, before/after ratios per round, and the spread between repeats."""
import os, re, sys, glob, json, statistics
root = sys.argv[1]
runs = {}
for d in sorted(glob.glob(os.path.join(root, "*-[0-9]*"))):
    name = os.path.basename(d)
    p = os.path.join(d, "summary.md")
    if not os.path.exists(p):
        continue
    vals = {}
    on = False
    for line in open(p):
        if line.startswith("QPS at recall@10"):
            on = True; continue
        if on:
            m = re.match(r"\s+(quiver|faiss|hnswlib)\s+(.*?)\s+(single|batch)\s+(\d+|None|-)\s*$", line)
            if not m:
                if line.startswith("targets") or not line.strip():
                    break
                continue
            eng, ix, mode, q = m.groups()
            kind = ix.split()[0]
            vals[(eng, kind, mode)] = float(q) if q[0].isdigit() else None
    runs[name] = vals
keys = sorted({k for v in runs.values() for k in v})
names = sorted(runs, key=lambda n: (int(n.split("-")[1]), n.split("-")[0] != "before"))
print("QPS at recall@10 0.95 per run (interpolated by quiver-bench):")
print("%-32s" % "engine index mode" + "".join("%11s" % n for n in names))
for k in keys:
    print("%-32s" % " ".join(k) + "".join("%11s" % (("%.0f" % runs[n][k]) if runs[n].get(k) else "-") for n in names))
rounds = sorted({int(n.split("-")[1]) for n in names})
print("\nafter / before, same round:")
for k in keys:
    rs = []
    for r in rounds:
        b, a = runs.get("before-%d" % r, {}).get(k), runs.get("after-%d" % r, {}).get(k)
        rs.append("%.3f" % (a / b) if a and b else "-")
    print("%-32s" % " ".join(k) + "".join("%9s" % x for x in rs))
print("\nrepeat spread (same binary): max/min - 1 over its runs")
for k in keys:
    out = []
    for w in ("before", "after"):
        xs = [runs[n][k] for n in names if n.startswith(w) and runs[n].get(k)]
        out.append("%s %s" % (w, ("%.1f%%" % (100 * (max(xs) / min(xs) - 1))) if len(xs) > 1 else "-"))
    print("%-32s %s" % (" ".join(k), "   ".join(out)))
print("\nload-normalised: (quiver/faiss after) / (quiver/faiss before), same round, same index and mode")
for k in keys:
    if k[0] != "quiver":
        continue
    f = ("faiss",) + k[1:]
    rs = []
    for r in rounds:
        b, a = runs.get("before-%d" % r, {}), runs.get("after-%d" % r, {})
        try:
            rs.append("%.3f" % ((a[k] / a[f]) / (b[k] / b[f])))
        except (KeyError, TypeError, ZeroDivisionError):
            rs.append("-")
    print("%-32s" % " ".join(k) + "".join("%9s" % x for x in rs))
print("\nFAISS / hnswlib (same code in every run): spread max/min - 1 over all runs = machine-load noise")
for k in keys:
    if k[0] == "quiver":
        continue
    xs = [runs[n][k] for n in names if runs[n].get(k)]
    print("%-32s %s  (n=%d)" % (" ".join(k), ("%.1f%%" % (100 * (max(xs) / min(xs) - 1))) if len(xs) > 1 else "-", len(xs)))
