"""Disk full on a small filesystem made for the test (a tmpfs of 24 MB; needs root to
mount, skipped otherwise): writes that hit it fail with RESOURCE_EXHAUSTED and write
nothing, reads keep working, an index save that hits it leaves no corrupt file, writes
resume when space is freed, and a restart finds everything acknowledged."""
import glob
import os
import subprocess
import tempfile

import numpy as np
import pytest

import quiver_testlib as qt
from quiver_testlib import SC, pb


@pytest.fixture
def small_fs():
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    d = tempfile.mkdtemp(prefix="quiver-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", d],
                       capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.strip())
    yield d
    subprocess.run(["umount", "-l", d])
    os.rmdir(d)


def fill(path, mb):
    with open(path, "wb") as f:
        f.write(b"\0" * (mb << 20))


def test_disk_full(small_fs):
    s = qt.Server(os.path.join(small_fs, "data"), tempfile.mkdtemp(prefix="quiver-full-log-"),
                  args=["--map-size", "1G", "--no-auto-rebuild"]).start()
    try:
        ballast = os.path.join(small_fs, "ballast")
        fill(ballast, 8)
        s.create("d", 64, pb.L2, kind="flat")
        rng = np.random.default_rng(12)
        acked, refused, batch = 0, None, 0
        while refused is None and batch < 200:
            x = rng.standard_normal((1000, 64)).astype(np.float32)
            items = [pb.Item(id=batch * 1000 + i, vector=v.tolist()) for i, v in enumerate(x)]
            try:
                s.upsert("d", items, timeout=60)
                acked += 1
            except qt.grpc.RpcError as e:
                refused = e
            batch += 1
        assert refused is not None, "the filesystem never filled up"
        assert refused.code() == SC.RESOURCE_EXHAUSTED, (refused.code(), refused.details())
        assert "storage full" in refused.details(), refused.details()
        # nothing of the refused batch, everything of the others
        assert s.describe("d").count == acked * 1000
        got = s.get("d", [(batch - 1) * 1000, 0])
        assert [it.id for it in got.items] == [0], got
        # reads keep working
        r = s.search_vectors("d", [np.zeros(64)], k=5)
        assert len(r.results[0].hits) == 5
        # a rebuild whose index file cannot be saved: no file left half written
        msgs = list(s.admin.RebuildIndex(pb.RebuildIndexRequest(
            collection="d", index=pb.IndexSpec(kind="ivf_flat", nlist=16)), timeout=120))
        assert msgs[-1].phase == "done", [m.phase for m in msgs]
        ixdir = os.path.join(s.data_dir, "indexes")
        assert not glob.glob(os.path.join(ixdir, "*.tmp.*")), os.listdir(ixdir)
        # room again: writes resume
        os.remove(ballast)
        x = rng.standard_normal((1000, 64)).astype(np.float32)
        assert s.upsert("d", [pb.Item(id=10**6 + i, vector=v.tolist()) for i, v in enumerate(x)]) == 1000
        count = s.describe("d").count
        assert count == (acked + 1) * 1000
        # a restart finds all of it; any index file there is whole (it loads, or
        # there is none and the index is rebuilt from LMDB)
        s.restart()
        assert s.describe("d").count == count
        log = open(s._logs[-1], "rb").read().decode("utf-8", "replace")
        assert "checksum" not in log and "truncated" not in log, log
        r = s.search_vectors("d", [x[3]], k=1, nprobe=16)
        assert r.results[0].hits[0].id == 10**6 + 3
    finally:
        s.kill()


def test_disk_full_during_import(small_fs):
    """An Import stream that fills the disk: RESOURCE_EXHAUSTED for the message that hit
    it, every message before it kept (the status says how many), nothing after it; the
    database is intact, and the import completes once space is freed."""
    s = qt.Server(os.path.join(small_fs, "data"), tempfile.mkdtemp(prefix="quiver-full-log-"),
                  args=["--no-auto-rebuild"]).start()
    try:
        ballast = os.path.join(small_fs, "ballast")
        fill(ballast, 8)
        s.create("imp", 64, pb.L2, kind="flat")
        rng = np.random.default_rng(13)
        x = rng.standard_normal((1000, 64)).astype(np.float32)

        def msgs(lo, hi):
            for m in range(lo, hi):
                yield pb.UpsertRequest(collection="imp", items=[
                    pb.Item(id=m * 1000 + i, vector=v.tolist(), attributes={"m": pb.Value(int_value=m)})
                    for i, v in enumerate(x)])

        with pytest.raises(qt.grpc.RpcError) as ei:
            s.items.Import(msgs(0, 200), timeout=120)
        e = ei.value
        assert e.code() == SC.RESOURCE_EXHAUSTED, (e.code(), e.details())
        assert "storage full" in e.details(), e.details()
        import re
        m = re.search(r"\((\d+) messages, (\d+) items committed before it\)", e.details())
        assert m, e.details()
        kept_msgs, kept_items = int(m.group(1)), int(m.group(2))
        assert kept_items == kept_msgs * 1000 and 0 < kept_msgs < 200
        assert s.describe("imp").count == kept_items
        # exactly the first kept_msgs messages
        got = s.get("imp", [0, kept_items - 1, kept_items], with_vectors=False)
        assert [it.id for it in got.items] == [0, kept_items - 1], got
        # intact after a restart; then the rest goes in once there is room
        s.restart()
        assert s.describe("imp").count == kept_items
        os.remove(ballast)
        r = s.items.Import(msgs(kept_msgs, kept_msgs + 3), timeout=120)
        assert r.upserted == 3000
        assert s.describe("imp").count == kept_items + 3000
    finally:
        s.kill()
