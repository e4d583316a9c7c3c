#!/usr/bin/python3
"""Load-normalised view from each run's results.csv: at each nprobe of
NPROBES, quiver QPS / FAISS QPS measured interleaved in the same run (same
point, same load); geometric mean over the nprobes per (index, mode)."""
import csv, glob, math, os, sys
root = sys.argv[1]
NPROBES = ("32", "64", "128", "256")
runs = {}
for d in sorted(glob.glob(os.path.join(root, "*-[0-9]*"))):
    p = os.path.join(d, "results.csv")
    if not os.path.exists(p):
        continue
    rows = list(csv.DictReader(open(p)))
    q = {(r["engine"], r["index"].split()[0], r["mode"], r["value"]): float(r["qps"])
         for r in rows if r["param"] == "nprobe"}
    runs[os.path.basename(d)] = q
names = sorted(runs, key=lambda n: (int(n.split("-")[1]), n.split("-")[0] != "before"))
keys = [(i, m) for i in ("ivf_flat", "ivf_pq_fs") for m in ("single", "batch")]
g = {}
print("geomean over nprobe %s of quiver/FAISS QPS (same run, interleaved):" % ",".join(NPROBES))
print("%-20s" % "" + "".join("%11s" % n for n in names))
for k in keys:
    for n in names:
        xs = [runs[n][("quiver",) + k + (p,)] / runs[n][("faiss",) + k + (p,)] for p in NPROBES]
        g[(n,) + k] = math.exp(sum(map(math.log, xs)) / len(xs))
    print("%-20s" % " ".join(k) + "".join("%11.3f" % g[(n,) + k] for n in names))
rounds = sorted({int(n.split("-")[1]) for n in names})
print("\nafter/before of that ratio, per round:")
for k in keys:
    print("%-20s" % " ".join(k) + "".join("%9s" % ("%.3f" % (g[("after-%d" % r,) + k] / g[("before-%d" % r,) + k])
          if ("after-%d" % r,) + k in g and ("before-%d" % r,) + k in g else "-") for r in rounds))
print("\nFAISS alone (same code every run), per point: max/min - 1 over runs")
for k in keys:
    out = []
    for p in NPROBES:
        xs = [runs[n][("faiss",) + k + (p,)] for n in names]
        out.append("np%s %.0f%%" % (p, 100 * (max(xs) / min(xs) - 1)))
    print("%-20s %s" % (" ".join(k), "  ".join(out)))
