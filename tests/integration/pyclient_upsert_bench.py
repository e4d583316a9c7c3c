"""A client upsert measured against `quiver import` of the same rows, each on a fresh quiverd
(issue 17: speed >= 80% of the CLI's, memory bounded). Used by test_python_client.py at a
size that runs in seconds and by bench/results/2026-12-07-python-client/run.sh at 1M rows.

measure(): given the rows in an .npy, for each round imports them with
`quiver import COLL X.npy --create --kind flat` and upserts them with the client in a
child process (`python pyclient_upsert_bench.py child ...`), each on a new server, both timed from the first
row sent to the last acknowledged; the order alternates between rounds. The child loads
the rows into memory first, then resets its peak RSS (/proc/self/clear_refs) and reports
how much the upsert added on top of the rows (VmHWM - VmRSS before)."""
import json
import os
import subprocess
import sys
import time

import numpy as np


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def child(addr, npy, coll, metric, dtype):
    from quiver_client import Client
    x = np.load(npy)
    if dtype != "float32":
        x = x.astype(dtype)
    ids = np.arange(x.shape[0], dtype=np.int64)
    qv = Client(addr, timeout=120)
    qv.create_collection(coll, dim=x.shape[1], metric=metric, index="flat")
    qv.health()
    rss0 = _status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:   # VmHWM := VmRSS
            f.write("5")
        reset = True
    except OSError:
        reset = False
    t = time.monotonic()
    n = qv.upsert(coll, ids, x)
    secs = time.monotonic() - t
    hwm = _status("VmHWM")
    print(json.dumps({"rows": int(n), "seconds": secs, "rss_before": rss0, "peak_growth": hwm - rss0,
                      "peak_reset": reset, "data_bytes": int(x.nbytes)}))


def run_child(addr, npy, coll, metric="l2", dtype="float32", env=None):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "child", addr, npy, coll, metric, dtype],
                       capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError("client upsert child failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_import(quiver, addr, npy, coll, metric="l2"):
    t = time.monotonic()
    r = subprocess.run([quiver, "--addr", addr, "--json", "import", coll, npy, "--create",
                        "--metric", metric, "--kind", "flat"], capture_output=True, text=True, timeout=1800)
    secs = time.monotonic() - t
    if r.returncode != 0:
        raise RuntimeError("quiver import failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
    out = json.loads(r.stdout)
    return {"rows": out["rows_acknowledged"], "seconds": out["seconds"], "wall_seconds": secs}


def measure(quiver, npy, new_server, rounds=2, env=None):
    """Alternates quiver import and the client, each on a fresh quiverd from
    new_server() -> (address, stop function); returns every run and the best of each
    (rows/s) and the client's largest memory growth."""
    runs = []
    for r in range(rounds):
        order = ("import", "client") if r % 2 == 0 else ("client", "import")
        for what in order:
            addr, stop = new_server()
            try:
                res = run_import(quiver, addr, npy, "bench") if what == "import" else \
                    run_child(addr, npy, "bench", env=env)
            finally:
                stop()
            res["what"] = what
            res["rows_per_second"] = res["rows"] / res["seconds"]
            runs.append(res)
    best = {w: max(x["rows_per_second"] for x in runs if x["what"] == w) for w in ("import", "client")}
    return {"runs": runs, "best_import_rows_per_second": best["import"],
            "best_client_rows_per_second": best["client"], "ratio": best["client"] / best["import"],
            "max_peak_growth": max(x["peak_growth"] for x in runs if x["what"] == "client")}


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "child":
    child(*sys.argv[2:7])
