"""Index files that must not be used, each refused with its reason in the log and the
collection rebuilt from LMDB: another format version, a file covering writes the store
does not have (a data.mdb restored from before it). And the delete-triggered rebuild."""
import glob
import os
import re
import shutil
import struct
import time

import numpy as np

import quiver_testlib as qt
from quiver_testlib import pb

HDR_LEN = 512
M = (1 << 64) - 1


def header_checksum(h):
    """indexfile.c's checksum of the header (64-bit words: xor, FNV prime, xor-shift)."""
    c = 0xcbf29ce484222325
    for i in range(0, HDR_LEN - 8, 8):
        c ^= struct.unpack_from("<Q", h, i)[0]
        c = (c * 0x100000001b3) & M
        c ^= c >> 29
    return c


def populated(s, name, n=4000, dim=8, seed=0, kind="flat"):
    s.create(name, dim, pb.L2, kind=kind)
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    s.upsert(name, [pb.Item(id=i, vector=v.tolist()) for i, v in enumerate(x)])
    return x


def rebuild(s, name, nlist=16):
    msgs = list(s.admin.RebuildIndex(pb.RebuildIndexRequest(
        collection=name, index=pb.IndexSpec(kind="ivf_flat", nlist=nlist)), timeout=120))
    assert msgs[-1].phase == "done"


def log_of(s):
    return open(s._logs[-1], "rb").read().decode("utf-8", "replace")


def test_other_format_version_refused(make_server):
    s = make_server(["--no-auto-rebuild"])
    x = populated(s, "v")
    rebuild(s, "v")
    f = glob.glob(os.path.join(s.data_dir, "indexes", "*.qvi"))[0]
    assert s.stop() == 0
    with open(f, "r+b") as fh:
        h = bytearray(fh.read(HDR_LEN))
        assert struct.unpack_from("<I", h, 8)[0] == 2
        struct.pack_into("<I", h, 8, 99)
        struct.pack_into("<Q", h, HDR_LEN - 8, header_checksum(h))
        fh.seek(0)
        fh.write(h)
    s.start()
    assert "has format version 99, this quiverd reads 1 and 2" in log_of(s), log_of(s)
    assert "collection v: index file not used" in log_of(s)
    assert s.describe("v").count == 4000
    assert s.search_vectors("v", [x[9]], k=1).results[0].hits[0].id == 9


def test_file_ahead_of_the_store_refused(make_server, tmp_path):
    s = make_server(["--no-auto-rebuild"])
    x = populated(s, "q")
    rebuild(s, "q")
    assert s.stop() == 0
    old = tmp_path / "data.mdb"
    shutil.copyfile(os.path.join(s.data_dir, "data.mdb"), old)   # the store at this point
    s.start()
    s.upsert("q", [pb.Item(id=10000 + i, vector=[0.5] * 8) for i in range(100)])
    rebuild(s, "q", nlist=16)          # a file covering the 100 writes more
    assert s.stop() == 0
    shutil.copyfile(old, os.path.join(s.data_dir, "data.mdb"))     # restored from before
    s.start()
    log = log_of(s)
    assert re.search(r"collection q: index file not used: it covers seq \d+ but the store "
                     r"ends at \d+", log), log
    assert s.describe("q").count == 4000
    hits = s.search_vectors("q", [[0.5] * 8], k=3).results[0].hits
    assert all(h.id < 10000 for h in hits), hits   # nothing of what the store lost


def test_deletes_trigger_a_rebuild(make_server):
    """Deleting more than half of what the index was trained on starts an automatic
    rebuild (README, Indexes)."""
    s = make_server(["--auto-ivf-min", "2000"])
    x = populated(s, "del", n=6000, kind="auto")
    end = time.time() + 60
    while time.time() < end:
        ii = s.describe("del").index
        if ii.kind == "ivf_flat" and not ii.rebuilding:
            break
        time.sleep(0.05)
    assert ii.kind == "ivf_flat", ii
    t1 = ii.trained_for
    s.delete("del", range(0, int(t1 * 0.6)))
    end = time.time() + 60
    while time.time() < end:
        ii = s.describe("del").index
        if ii.trained_for != t1 and not ii.rebuilding:
            break
        time.sleep(0.05)
    assert ii.trained_for == s.describe("del").count < t1, (t1, ii)
    starts = re.findall(r"collection del: automatic index rebuild started", log_of(s))
    assert len(starts) >= 2, starts
    assert s.search_vectors("del", [x[5999]], k=1).results[0].hits[0].id == 5999
