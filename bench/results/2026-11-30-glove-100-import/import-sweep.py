#!/usr/bin/python3
"""Sweep of `quiver import`'s pipelining flags on glove-100 (331,479 x 100, cosine)
into a quiverd with default durability (fsync on every commit; --no-auto-rebuild, so the
live index stays exact flat while it grows). Each point: a fresh quiverd on an empty data
folder (as a first import meets it: data.mdb grows, no freed pages to reuse), the CLI's
--create --metric cosine, one import, then quiverd stopped and the folder removed;
R repetitions, rounds interleaved, median and best reported.
Usage: import-sweep.py BUILD_DIR OUT_JSON [R [BASE_FILE]]"""
import json, os, re, statistics, subprocess, sys, tempfile, time, shutil

build, out = sys.argv[1], sys.argv[2]
R = int(sys.argv[3]) if len(sys.argv) > 3 else 3
base = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                     "..", "shared", "data", "glove-100", "base.fvecs"))
if len(sys.argv) > 4:
    base = sys.argv[4]
cli = os.path.join(build, "quiver")
configs = [(b, w, 4) for b in (1000, 2000, 4000, 8000) for w in (1, 2, 3, 4)]
configs += [(4000, 3, s) for s in (1, 2, 8)]
res = {c: [] for c in configs}


def start(work):
    p = subprocess.Popen([os.path.join(build, "quiverd"), "--listen", "127.0.0.1:0", "--data",
                          os.path.join(work, "data"), "--no-auto-rebuild"], stdout=subprocess.PIPE,
                         stderr=open(os.path.join(work, "quiverd.log"), "wb"))
    for line in p.stdout:
        m = re.search(rb"listening on port (\d+)", line)
        if m:
            return p, "127.0.0.1:%d" % int(m.group(1))
    sys.exit("quiverd did not start (%s)" % work)


for rnd in range(R):
    for (b, w, s) in configs:
        work = tempfile.mkdtemp(prefix="quiver-import-sweep-")
        p, addr = start(work)
        try:
            cmd = [cli, "--addr", addr, "--json", "import", "sweep", base, "--create", "--metric",
                   "cosine", "--checkpoint", os.path.join(work, "ck.json"), "--batch", str(b),
                   "--window", str(w), "--segment-batches", str(s)]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode:
                sys.exit("failed: %s %s" % (cmd, r.stderr))
            j = json.loads(r.stdout.strip().splitlines()[-1])
        finally:
            p.terminate()
            p.wait()
            shutil.rmtree(work, ignore_errors=True)
        res[(b, w, s)].append({"wall_s": wall, "wall_rate": j["rows_acknowledged"] / wall,
                               "cli_rate": j["rows_per_second"], "load1": os.getloadavg()[0]})
        print("round %d batch %5d window %d segment %d: %7.0f vectors/s wall (CLI %7.0f), load %.2f"
              % (rnd, b, w, s, j["rows_acknowledged"] / wall, j["rows_per_second"],
                 os.getloadavg()[0]), flush=True)
rows = []
for (b, w, s), v in res.items():
    rates = [x["wall_rate"] for x in v]
    rows.append({"batch": b, "window": w, "segment_batches": s, "runs": v,
                 "median_wall_rate": statistics.median(rates), "best_wall_rate": max(rates)})
with open(out, "w") as f:
    json.dump({"data": "glove-100 base.fvecs (331479 x 100), cosine", "repetitions": R,
               "server": "a fresh quiverd --no-auto-rebuild (fsync on) per point", "points": rows}, f, indent=1)
print("\n| batch | window | segment-batches | median vectors/s (wall) | best |")
print("|---|---|---|---|---|")
for x in sorted(rows, key=lambda x: (x["segment_batches"] != 4, x["batch"], x["window"], x["segment_batches"])):
    print("| %d | %d | %d | %s | %s |" % (x["batch"], x["window"], x["segment_batches"],
                                         "{:,.0f}".format(x["median_wall_rate"]),
                                         "{:,.0f}".format(x["best_wall_rate"])))
