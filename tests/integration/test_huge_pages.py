"""The refine copy of a compressed index (the vectors searches re-rank from, read
at random) sits on transparent huge pages (storage/pages.h), and answers are
unchanged by it."""
import subprocess

import numpy as np

import quiver_testlib as qt
from quiver_testlib import pb


def anon_huge_kb(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1])
    return 0


def thp_allowed():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def sanitized(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return "libasan" in out or "libubsan" in out


def rebuild(s, coll, spec):
    for _ in s.admin.RebuildIndex(pb.RebuildIndexRequest(collection=coll, index=spec), timeout=300):
        pass


def test_refine_copy_on_huge_pages(make_server):
    s = make_server()
    n, dim = 20000, 128  # a 10 MB refine copy
    s.create("c", dim)
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    for lo in range(0, n, 5000):
        s.upsert("c", [qt.item(lo + i, vecs[lo + i]) for i in range(5000)])
    flat_kb = anon_huge_kb(s.proc.pid)
    rebuild(s, "c", pb.IndexSpec(kind="ivf_pq_fs", nlist=64, refine=10))
    d = s.describe("c")
    assert d.index.refine == 10, d.index
    # the answers: exact re-ranking finds each item's own vector first
    r = s.search_vectors("c", [vecs[5], vecs[17000]], k=3)
    assert [res.hits[0].id for res in r.results] == [5, 17000]
    if thp_allowed() and not sanitized(s.binary):
        kb = anon_huge_kb(s.proc.pid)
        # at least 2 of the copy's 5 aligned 2 MiB pages beyond what the flat index had
        assert kb - flat_kb >= 4096, (flat_kb, kb)
        s.restart()  # loaded from the index file: the same
        assert anon_huge_kb(s.proc.pid) >= 4096
        r = s.search_vectors("c", [vecs[5]], k=1)
        assert r.results[0].hits[0].id == 5
