"""Recall@10, QPS and quiverd CPU per query of filtered searches (bench/results/2026-12-07-deep-walks).

usage: rec.py ADDR MODES   (MODES: none, corrN = cluster < N, clN = cluster == N,
indepP = sel < P% of 10000; comma-separated) against a quiverd (on ADDR) serving the data dir
of a `tools/quiver-bench --spec auto --filter-selectivity ... --filter-correlated --workdir W`
run on glove-100: collection bench_glove-100 (COLL), items with the "cluster" and "sel"
attributes. 500 random queries in batches of 50 from one thread, k 100 (K) with attributes,
nprobe from min_recall (NPROBE to fix it); ground truth: numpy brute force over the items
passing each filter, labels and vectors read back with Scan (cached in CACHE)."""
import os, sys, time, numpy as np
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../..")
sys.path.insert(0, os.environ.get("QUIVER_PY", os.path.join(REPO, "build/py")))
import grpc
from quiver.v1 import quiver_pb2 as pb, quiver_pb2_grpc as rpc
addr = sys.argv[1]
modes = sys.argv[2].split(",")
def fvecs(p):
    a = np.fromfile(p, dtype=np.int32); d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].view(np.float32)
D = os.environ.get("DATA", os.path.join(REPO, "../shared/data/glove-100"))
q = fvecs(D + "/query.fvecs")
q = q[np.random.default_rng(7).permutation(len(q))[:500]]
ch = grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", -1)])
items = rpc.ItemsStub(ch); search = rpc.SearchStub(ch)
cache = os.environ.get("CACHE", "/tmp/deep-walks-labels.npz")
if os.path.exists(cache):
    z = np.load(cache); ids, clu, sel, base = z["ids"], z["clu"], z["sel"], z["base"]
else:
    ids, clu, sel, vecs = [], [], [], []
    after = None
    while True:
        req = pb.ScanRequest(collection=os.environ.get("COLL", "bench_glove-100"), limit=10000, with_vectors=True)
        if after is not None: req.after_id = after
        n = 0
        for page in items.Scan(req, timeout=600):
            for it in page.items:
                ids.append(it.id); clu.append(it.attributes["cluster"].int_value); sel.append(it.attributes["sel"].int_value)
                vecs.append(np.array(it.vector, np.float32)); n += 1
                after = it.id
        if n < 10000: break
    ids, clu, sel, base = np.array(ids), np.array(clu), np.array(sel), np.stack(vecs)
    np.savez(cache, ids=ids, clu=clu, sel=sel, base=base)
bn = base / np.linalg.norm(base, axis=1, keepdims=True)
qn = q / np.linalg.norm(q, axis=1, keepdims=True)
S = qn @ bn.T
for mode in modes:
    if mode.startswith("cl"):
        one = int(mode[2:]); mask = clu == one; ncl = -1
        f = pb.Filter(must=[pb.Condition(field=pb.FieldCondition(key="cluster", any_of=pb.ValueList(values=[pb.Value(int_value=one)])))])
    elif mode.startswith("corr"):
        ncl = int(mode[4:]); mask = clu < ncl
        f = pb.Filter(must=[pb.Condition(field=pb.FieldCondition(key="cluster", any_of=pb.ValueList(values=[pb.Value(int_value=i) for i in range(ncl)])))])
    elif mode.startswith("indep"):
        s = int(mode[5:]); mask = sel < s * 100
        f = pb.Filter(must=[pb.Condition(field=pb.FieldCondition(key="sel", range=pb.Range(upper=pb.Bound(value=s * 100, inclusive=False))))])
    else:
        mask = np.ones(len(ids), bool); f = None
    idx = np.flatnonzero(mask)
    truth = [set(ids[idx[np.argsort(-S[i, idx])[:10]]].tolist()) for i in range(len(q))]
    got = []
    import subprocess
    pid = int(subprocess.check_output(["pgrep", "-f", "listen " + addr]).split()[0])
    def cpu():
        f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    c0 = cpu()
    t0 = time.time()
    for lo in range(0, len(q), 50):
        r = pb.SearchRequest(collection=os.environ.get("COLL", "bench_glove-100"), k=int(os.environ.get("K","100")), nprobe=int(os.environ.get("NPROBE", "0")), without_attributes=False, queries=[pb.Query(vector=pb.Vector(values=v.tolist())) for v in q[lo:lo+50]])
        if f is not None: r.filter.CopyFrom(f)
        got.extend(search.Search(r, timeout=600).results)
    dt = time.time() - t0
    cpuq = (cpu() - c0) / len(q) * 1000
    per = np.array([len(set(h.id for h in g.hits[:10]) & t) / 10 for g, t in zip(got, truth)])
    rec = per.mean()
    own = clu[np.argmax(S, axis=1)]
    if mode.startswith("cl"):
        one = int(mode[2:]); mask = clu == one; ncl = -1
        f = pb.Filter(must=[pb.Condition(field=pb.FieldCondition(key="cluster", any_of=pb.ValueList(values=[pb.Value(int_value=one)])))])
    elif mode.startswith("corr") or mode.startswith("cl"): print("   own cluster kept %.4f (%d), removed %.4f (%d)" % (per[(own < ncl) if ncl >= 0 else (own == one)].mean(), ((own < ncl) if ncl >= 0 else (own == one)).sum(), per[(own >= ncl) if ncl >= 0 else (own != one)].mean(), ((own >= ncl) if ncl >= 0 else (own != one)).sum()))
    print("%-8s kept %.3f recall@10 %.4f  %.0f q/s (1 thread, batches of 50)  server CPU %.3f ms/q" % (mode, mask.mean(), rec, len(q) / dt, cpuq), flush=True)
