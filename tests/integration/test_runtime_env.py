"""quiverd restarts itself once with the runtime settings its libraries read only
when they load (server/main.c, maybe_reexec_with_runtime_env): OpenMP's idle
policy and glibc's huge pages for malloc. What the operator set is kept."""
import os
import subprocess

import numpy as np

import quiver_testlib as qt


def environ_of(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        pairs = [e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e]
    return {k.decode(): v.decode() for k, v in pairs}


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


def fill(s, n=20000, dim=128):
    """n vectors (10 MB at the defaults) into an exact collection: the flat
    index holds them in malloc'd memory."""
    s.create("c", dim)
    rng = np.random.default_rng(7)
    for lo in range(0, n, 5000):
        v = rng.standard_normal((5000, dim)).astype(np.float32)
        s.upsert("c", [qt.item(lo + i, v[i]) for i in range(5000)])


def test_huge_pages_by_default(make_server, monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    s = make_server()
    env = environ_of(s.proc.pid)
    assert env.get("GLIBC_TUNABLES") == "glibc.malloc.hugetlb=1", env.get("GLIBC_TUNABLES")
    assert env.get("OMP_WAIT_POLICY") == "passive"
    if thp_allowed() and not sanitized(s.binary):
        fill(s)
        r = s.search_vectors("c", [np.ones(128, np.float32)], k=3)
        assert len(r.results[0].hits) == 3
        assert anon_huge_kb(s.proc.pid) > 0, "no anonymous huge pages after 10 MB of vectors"


def test_operator_settings_are_kept(make_server, monkeypatch):
    # hugetlb=0 from the operator: left as it is, and malloc stays on 4 KiB pages
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")
    s = make_server()
    assert environ_of(s.proc.pid).get("GLIBC_TUNABLES") == "glibc.malloc.hugetlb=0"
    if thp_allowed() and not sanitized(s.binary):
        fill(s)
        assert anon_huge_kb(s.proc.pid) == 0
    s.kill()
    # other tunables: kept, and huge pages added after them
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    s = make_server()
    # (glibc rewrites the environment's copy of GLIBC_TUNABLES as it reads it,
    # so /proc/PID/environ need not show the whole string: the effect is checked)
    assert environ_of(s.proc.pid).get("OMP_WAIT_POLICY") == "active"
    if thp_allowed() and not sanitized(s.binary):
        fill(s)
        assert anon_huge_kb(s.proc.pid) > 0, "the operator's other tunables turned huge pages off"
    else:
        s.create("c2", 4)
        assert s.describe("c2").count == 0
