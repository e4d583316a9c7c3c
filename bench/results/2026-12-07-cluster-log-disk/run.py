"""NATS JetStream disk use during a long import into a cluster (issue 19, part 5): the
controller trims each shard's stream below what every replica applied, so the log's disk
stays bounded by what the slowest replica has yet to apply, not by what was ever written.
Run: QUIVER_BIN=build /usr/bin/python3 bench/results/2026-12-07-cluster-log-disk/run.py"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../../tests/integration"))
import numpy as np  # noqa: E402
from cluster_lib import Cluster  # noqa: E402
from quiver_testlib import pb  # noqa: E402

N, D, BATCH = int(os.environ.get("N", "300000")), 100, 1000


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


X = np.random.default_rng(1).standard_normal((N, D)).astype(np.float32)
with Cluster(nodes=2, nats=1) as c:
    c.wait_ready(60)
    n0 = c.nodes[0]
    n0.collections.Create(pb.CreateCollectionRequest(name="disk", dim=D, metric=pb.L2, shards=2, replicas=2,
                                                     index=pb.IndexSpec(kind="flat")))
    store = os.path.join(c.base_dir, "nats1")
    samples, done = [], threading.Event()

    def sample():
        t0 = time.time()
        while not done.is_set():
            samples.append((round(time.time() - t0, 2), du(store)))
            time.sleep(0.5)
    th = threading.Thread(target=sample)
    th.start()
    t0 = time.time()

    def reqs():
        for s in range(0, N, BATCH):
            yield pb.UpsertRequest(collection="disk", items=[pb.Item(id=i, vector=X[i].tolist())
                                                             for i in range(s, s + BATCH)])
    n0.items.Import(reqs(), timeout=3600)
    took = time.time() - t0
    time.sleep(12)  # two trim passes after the import
    done.set()
    th.join()
    raw = N * D * 4
    peak = max(b for _, b in samples)
    final = samples[-1][1]
    st = n0.admin.ClusterStatus(pb.ClusterStatusRequest())
    out = {"items": N, "dim": D, "vector_bytes": raw, "import_seconds": round(took, 2),
           "nats_store_peak_bytes": peak, "nats_store_final_bytes": final,
           "peak_over_written": round(peak / raw, 3),
           "shards": [{"shard": s.shard, "log_last_seq": s.log_last_seq,
                       "applied": [r.applied_seq for r in s.replicas]} for s in st.shards],
           "samples": samples}
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=1))
    with open(os.path.join(os.path.dirname(__file__), "result.json"), "w") as f:
        json.dump(out, f, indent=1)
