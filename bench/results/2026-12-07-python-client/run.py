"""quiver_client upsert vs `quiver import`, same rows, same quiverd (issue 17).

    /usr/bin/python3 bench/results/2026-12-07-python-client/run.py [--rows 1000000] [--dim 128]
        [--rounds 3] [--bin build] > bench/results/2026-12-07-python-client/result.json

Starts a fresh quiverd (BIN/quiverd, default settings: fsync on commit) on a temporary
folder for every run, writes ROWS x DIM float32 rows (seed 1) to an .npy, and runs
tests/integration/pyclient_upsert_bench.measure: rounds of `quiver import --kind flat`
and the client's upsert in a child process (.venv's python, where quiver_client is
installed), alternating which goes first. Prints the JSON of every run."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import numpy as np  # noqa: E402
import pyclient_upsert_bench as pb  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=1_000_000)
ap.add_argument("--dim", type=int, default=128)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--bin", default=os.path.join(REPO, "build"))
ap.add_argument("--python", default=os.path.join(REPO, ".venv", "bin", "python"))
a = ap.parse_args()

tmp = tempfile.mkdtemp(prefix="qv-pyclient-bench-")
try:
    npy = os.path.join(tmp, "x.npy")
    np.save(npy, np.random.default_rng(1).standard_normal((a.rows, a.dim), dtype=np.float32))
    servers = []

    def new_server():
        d = os.path.join(tmp, "data%d" % len(servers))
        p = subprocess.Popen([os.path.join(a.bin, "quiverd"), "--listen", "127.0.0.1:0", "--data", d],
                             stdout=subprocess.PIPE, stderr=open(d + ".log", "w"), text=True)
        servers.append(p)
        port = int(re.fullmatch(r"listening on port (\d+)\n", p.stdout.readline()).group(1))

        def stop():
            p.terminate()
            p.wait()
            shutil.rmtree(d, ignore_errors=True)
        return "127.0.0.1:%d" % port, stop

    sys.executable = a.python  # the child runs where quiver_client is installed
    load0 = os.getloadavg()
    res = pb.measure(os.path.join(a.bin, "quiver"), npy, new_server, rounds=a.rounds)
    med = {w: float(np.median([x["rows_per_second"] for x in res["runs"] if x["what"] == w]))
           for w in ("import", "client")}
    res.update(rows=a.rows, dim=a.dim, data_mb=a.rows * a.dim * 4 / 2**20, nproc=os.cpu_count(),
               median_import_rows_per_second=med["import"], median_client_rows_per_second=med["client"],
               median_ratio=med["client"] / med["import"], loadavg_before=load0,
               loadavg_after=os.getloadavg())
    print(json.dumps(res, indent=1))
finally:
    shutil.rmtree(tmp, ignore_errors=True)
