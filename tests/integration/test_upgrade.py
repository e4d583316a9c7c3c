"""A data directory written before FAISS 1.15 (tests/fixtures/pre-faiss-1.15, made by
the quiverd of commit 34996f4 on Debian's FAISS 1.7.3, index file format 1; see
tests/fixtures/make_pre115.py) is served by this quiverd: the IVF-Flat file loads as it
is (FAISS reads its older format), the IVF-PQ-with-refine file, which has no copy of
the vectors for refine, is rebuilt from LMDB with a log line; both answer correctly."""
import os
import re
import shutil
import time

import numpy as np

import quiver_testlib as qt

pb = qt.pb
FIXTURE = os.path.join(qt.REPO, "tests", "fixtures", "pre-faiss-1.15")


def brute_l2(x, ids, q, k):
    d = ((x[None, :, :].astype(np.float64) - q[:, None, :]) ** 2).sum(-1)
    return [[ids[j] for j in np.argsort(row, kind="stable")[:k]] for row in d]


def wait_ready(s, coll, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        ii = s.describe(coll).index
        if not ii.rebuilding and ii.trained and ii.kind != "flat":
            return ii
        time.sleep(0.2)
    raise AssertionError("%s not rebuilt within %ss: %s" % (coll, timeout, s.describe(coll)))


def test_files_from_faiss_1_7_3(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(os.path.join(FIXTURE, "data"), data)
    x = np.load(os.path.join(FIXTURE, "vectors.npy"))
    ids = [10 * i for i in range(len(x))]
    s = qt.Server(str(data), str(tmp_path)).start()
    try:
        # old_ivf: loaded, not rebuilt
        ii = s.describe("old_ivf").index
        assert (ii.kind, ii.nlist, ii.count, ii.trained) == ("ivf_flat", 32, 6000, True), ii
        q = np.random.default_rng(7).standard_normal((40, 16)).astype(np.float32)
        truth = brute_l2(x, ids, q, 10)
        for coll, nprobe in [("old_ivf", 32), ("old_pq", 32)]:
            if coll == "old_pq":
                ip = wait_ready(s, coll)
                assert (ip.kind, ip.refine, ip.count) == ("ivf_pq", 4, 6000), ip
            res = s.search.Search(pb.SearchRequest(
                collection=coll, k=10, nprobe=nprobe,
                queries=[pb.Query(vector=pb.Vector(values=v.tolist())) for v in q]))
            got = [[h.id for h in r.hits] for r in res.results]
            hits = sum(len(set(g) & set(t)) for g, t in zip(got, truth))
            if coll == "old_ivf":
                # every list probed: IVF-Flat is exact
                assert got == truth, (coll, got[:2], truth[:2])
            else:
                # 6-bit PQ codes re-ranked from the new in-RAM copy: near exact
                assert hits / (10 * len(q)) >= 0.9, (coll, hits)
        log = open(s._logs[-1], "rb").read().decode("utf-8", "replace")
        assert re.search(r"collection old_ivf: loaded ivf_flat index file \(6000 items, "
                         r"replayed 0 writes", log), log
        assert re.search(r"collection old_pq: index file not used: .*format version 1, which kept "
                         r"no copy of the vectors for refine; rebuilding from LMDB", log), log
        # the rebuilt file is format 2 and loads after a restart; the old one still does
        s.restart()
        log = open(s._logs[-1], "rb").read().decode("utf-8", "replace")
        assert "collection old_pq: loaded ivf_pq index file (6000 items" in log, log
        assert "collection old_ivf: loaded ivf_flat index file (6000 items" in log, log
        assert "not used" not in log, log
        # writes to the upgraded collections work
        s.items.Upsert(pb.UpsertRequest(collection="old_ivf", items=[
            pb.Item(id=1, vector=[0.5] * 16)]))
        r = s.search.Search(pb.SearchRequest(collection="old_ivf", k=1, nprobe=32, queries=[
            pb.Query(vector=pb.Vector(values=[0.5] * 16))]))
        assert r.results[0].hits[0].id == 1, r
    finally:
        s.kill()
