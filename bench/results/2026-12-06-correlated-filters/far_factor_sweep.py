"""The sweep behind FAR_FACTOR (storage/query.c): glove-100 (N items), labelled with 10
k-means clusters of its normalised vectors and with independent random labels; filters
keeping whole clusters (correlated) or random labels (independent) at about 20/50/90%;
200 queries one per call, recall@10 against numpy brute force over the passing items.
It ran against a quiverd whose FAR_FACTOR was read from the QV_M variable (a temporary
build, not committed); each value restarts the server on the same data.
Run: N=331479 KIND=ivf_pq_fs MS=1,2,4,8 QUIVERD=... /usr/bin/python3 far_factor_sweep.py
"""
import os, sys, time, tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "integration"))
import numpy as np
import quiver_testlib as qt
from quiver_testlib import pb
N = int(os.environ.get("N", "60000")); NQ = 200
kind = os.environ.get("KIND", "ivf_flat")
X = qt.fvecs(os.path.join(qt.DATA, "glove-100", "base.fvecs"), N).astype(np.float32)
Q = qt.fvecs(os.path.join(qt.DATA, "glove-100", "query.fvecs"), NQ).astype(np.float32)
Xn = X / np.linalg.norm(X, axis=1, keepdims=True); Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
rng = np.random.default_rng(1)
C = Xn[rng.choice(N, 10, replace=False)]
for _ in range(10):
    lab = np.argmax(Xn @ C.T, 1)
    C = np.stack([Xn[lab == c].mean(0) if (lab == c).any() else C[c] for c in range(10)]); C /= np.linalg.norm(C, axis=1, keepdims=True)
lab = np.argmax(Xn @ C.T, 1)
rnd = rng.integers(0, 10, N)
d = tempfile.mkdtemp()
s = qt.Server(d + "/data", d, ["--no-auto-rebuild"]); s.start()
s.create("g", 100, pb.COSINE, kind=kind)
for a in range(0, N, 5000):
    s.upsert("g", [pb.Item(id=a + i, vector=X[a + i].tolist(), attributes={"c": pb.Value(int_value=int(lab[a + i])), "r": pb.Value(int_value=int(rnd[a + i]))}) for i in range(min(5000, N - a))])
for m in s.admin.RebuildIndex(pb.RebuildIndexRequest(collection="g", index=pb.IndexSpec(kind=kind)), timeout=900): pass
ii = s.describe("g").index; print("kind", ii.kind, "nlist", ii.nlist, "nprobe", ii.default_nprobe, "trained", ii.trained, "count", ii.count)
for M in os.environ.get("MS", "1").split(","):
    os.environ["QV_M"] = M
    s.kill(); s.start()
    print("== QV_M", M)
    sizes = np.bincount(lab, minlength=10); order = np.argsort(-sizes)
    for fam, attr, labels in (("corr", "c", lab), ("indep", "r", rnd)):
        for target in (0.2, 0.5, 0.9):
            keep = []; tot = 0
            for c in (order if fam == "corr" else range(10)):
                keep.append(int(c)); tot += (labels == c).sum()
                if tot >= target * N: break
            mask = np.isin(labels, keep)
            f = pb.Filter(must=[pb.Condition(field=pb.FieldCondition(key=attr, any_of=pb.ValueList(values=[pb.Value(int_value=k) for k in keep])))])
            sc = Qn @ Xn[mask].T; truth = np.nonzero(mask)[0][np.argsort(-sc, axis=1)[:, :10]]
            reqs = [pb.SearchRequest(collection="g", queries=[pb.Query(vector=pb.Vector(values=Q[i].tolist()))], k=10, filter=f, without_attributes=True) for i in range(NQ)]
            t0 = time.time(); got = [[h.id for h in s.search.Search(r).results[0].hits] for r in reqs]; dt = time.time() - t0
            rec = [len(set(got[i]) & set(truth[i].tolist())) / 10 for i in range(NQ)]
            print("%-5s %.2f (%.3f) recall %.3f  %.0f q/s" % (fam, target, mask.mean(), np.mean(rec), NQ / dt))
    reqs = [pb.SearchRequest(collection="g", queries=[pb.Query(vector=pb.Vector(values=Q[i].tolist()))], k=10, without_attributes=True) for i in range(NQ)]
    t0 = time.time()
    for r in reqs: s.search.Search(r)
    print("unfiltered %.0f q/s" % (NQ / (time.time() - t0)))
s.kill()
