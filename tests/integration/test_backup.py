"""Items/Scan, the Import stream's contract, hot backups (Admin/Backup) and restores
(quiverd --restore), against real quiverds: a backup taken during concurrent writes
restores into a second quiverd holding exactly a prefix of the acknowledged writes (every
one acknowledged before the backup started), item by item equal to the source, its
indexes loaded from the backed-up files; refusals leave nothing written."""
import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import threading
import time

import numpy as np
import pytest

import quiver_testlib as qt
from quiver_testlib import SC, expect_error, item, pb

DIM = 16


def upsert_batches(server, coll, x, start, n_batches, size, attrs=True):
    for b in range(start, start + n_batches):
        ids = range(b * size, (b + 1) * size)
        server.upsert(coll, [item(i, x[i], {"b": b, "w": "w%d" % i} if attrs else None) for i in ids])


def scan_all(server, **kw):
    out, msgs = [], 0
    for m in server.items.Scan(pb.ScanRequest(**kw)):
        msgs += 1
        out.extend(m.items)
    return out, msgs


# ------------------------------------------------------------------------- Scan
def test_scan(server):
    rng = np.random.default_rng(1)
    n = 12000
    x = rng.standard_normal((n, 64)).astype(np.float32)
    server.create("sc", 64, pb.L2, kind="flat")
    ids = rng.permutation(np.arange(5, 5 + 3 * n, 3))[:n]   # out of order, with gaps
    for lo in range(0, n, 3000):
        server.upsert("sc", [item(int(ids[i]), x[i], {"i": int(i)}) for i in range(lo, lo + 3000)])
    by_id = {int(ids[i]): i for i in range(n)}
    got, msgs = scan_all(server, collection="sc", with_vectors=True)
    assert [it.id for it in got] == sorted(by_id)
    assert msgs >= 2, "12,000 items of 64 floats come in several messages"
    for it in got[::997]:
        assert np.array_equal(np.array(it.vector, np.float32), x[by_id[it.id]])
        assert it.attributes["i"].int_value == by_id[it.id]
    # without vectors / attributes
    got, _ = scan_all(server, collection="sc", without_attributes=True)
    assert len(got) == n and not got[0].vector and not got[0].attributes
    # after_id is exclusive, limit counts items
    first = sorted(by_id)
    got, _ = scan_all(server, collection="sc", after_id=first[10], limit=7)
    assert [it.id for it in got] == first[11:18]
    got, _ = scan_all(server, collection="sc", after_id=first[-1])
    assert got == []
    expect_error(lambda: scan_all(server, collection="no_such"), SC.NOT_FOUND, "no_such")


def test_scan_is_one_snapshot(server):
    rng = np.random.default_rng(2)
    n = 30000
    x = rng.standard_normal((n, 64)).astype(np.float32)
    server.create("snap", 64, pb.L2, kind="flat")
    for lo in range(0, n, 5000):
        server.upsert("snap", [item(i, x[i]) for i in range(lo, lo + 5000)])
    stream = server.items.Scan(pb.ScanRequest(collection="snap", with_vectors=True))
    first = next(iter(stream))
    # writes while the scan is under way: the scan does not see them
    server.delete("snap", list(range(n - 5000, n)))
    server.upsert("snap", [item(i, -x[i]) for i in range(n - 10000, n - 5000)])
    rest = [it for m in stream for it in m.items]
    got = list(first.items) + rest
    assert [it.id for it in got] == list(range(n))
    assert np.array_equal(np.array(got[n - 7000].vector, np.float32), x[n - 7000])
    assert server.describe("snap").count == n - 5000


# ----------------------------------------------------------------------- Import
def test_import_failure_keeps_what_came_before(server):
    server.create("imp9", 2, pb.L2, kind="flat")
    good = [pb.UpsertRequest(collection="imp9", items=[item(m * 10 + i, [m, i]) for i in range(10)])
            for m in range(6)]
    bad = pb.UpsertRequest(collection="imp9", items=[item(100, [1, 2, 3])])
    msgs = good[:4] + [bad] + good[4:]
    det = expect_error(lambda: server.items.Import(iter(msgs)), SC.INVALID_ARGUMENT,
                       "import request #5", "vector")
    assert "4 messages, 40 items committed before it" in det, det
    got = server.get("imp9", list(range(60)) + [100], with_vectors=False)
    assert sorted(it.id for it in got.items) == list(range(40))
    # a stream that completes counts every item
    r = server.items.Import(iter(good))
    assert r.upserted == 60
    assert server.describe("imp9").count == 60


# ----------------------------------------------------------------------- Backup
def take_backup(server, path):
    chunks = list(server.admin.Backup(pb.BackupRequest(), timeout=300))
    data = b"".join(c.data for c in chunks)
    assert len(data) == chunks[0].total_bytes
    assert all(c.last_seq == chunks[0].last_seq for c in chunks)
    with open(path, "wb") as f:
        f.write(data)
    return chunks[0].last_seq, data


def restore(archive, data_dir, *extra):
    return subprocess.run([qt.QUIVERD, "--restore", archive, "--data", data_dir] + list(extra),
                          capture_output=True, text=True, timeout=300)


def test_backup_during_writes_restores(server, tmp_path):
    rng = np.random.default_rng(3)
    size, n_batches = 200, 150
    x = rng.standard_normal((size * n_batches, DIM)).astype(np.float32)
    server.create("bk", DIM, pb.COSINE, kind="ivf_flat", nlist=16)
    server.create("bk2", DIM, pb.L2, kind="flat")
    upsert_batches(server, "bk", x, 0, 40, size)
    upsert_batches(server, "bk2", x, 0, 5, size, attrs=False)
    for _ in server.admin.RebuildIndex(pb.RebuildIndexRequest(collection="bk"), timeout=300):
        pass
    src_info = server.describe("bk")
    assert src_info.index.kind == "ivf_flat"
    acked = []   # (batch, time acknowledged)
    stop = threading.Event()
    errors = []

    def writer():
        try:
            for b in range(40, n_batches):
                if stop.is_set():
                    break
                upsert_batches(server, "bk", x, b, 1, size)
                acked.append((b, time.monotonic()))
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)

    th = threading.Thread(target=writer)
    th.start()
    qt.wait_for(lambda: len(acked) >= 10 or errors or not th.is_alive(), 120,
                lambda: "10 batches acknowledged before the backup starts (%d so far)" % len(acked))
    started = time.monotonic()
    last_seq, data = take_backup(server, str(tmp_path / "b.tar"))
    th.join()
    assert not errors, errors
    before = [b for b, t in acked if t < started]
    assert len(before) < len(acked), "writes went on while the backup was made"
    # the archive: manifest first, members as listed, checksums right
    tf = tarfile.open(fileobj=io.BytesIO(data))
    names = tf.getnames()
    assert names[0] == "manifest.json" and "data.mdb" in names
    man = json.loads(tf.extractfile("manifest.json").read())
    assert man["format"] == 1 and man["last_seq"] == last_seq
    assert sorted(m["name"] for m in man["members"]) == sorted(names[1:])
    for m in man["members"]:
        body = tf.extractfile(m["name"]).read()
        assert len(body) == m["size"] and hashlib.sha256(body).hexdigest() == m["sha256"]
    assert any(n.startswith("indexes/") for n in names), names
    colls = {c["name"]: c for c in man["collections"]}
    assert set(colls) == {"bk", "bk2"}
    # restore, then serve it
    dst = str(tmp_path / "restored")
    r = restore(str(tmp_path / "b.tar"), dst)
    assert r.returncode == 0, r.stderr
    os.makedirs(str(tmp_path / "logs2"))
    s2 = qt.Server(dst, str(tmp_path / "logs2")).start()
    try:
        info = s2.describe("bk")
        # exactly a prefix of the batches: all acknowledged before the backup began
        n = info.count
        assert n % size == 0
        present = n // size
        assert present >= 40 + len(before), (present, len(before))
        assert info.last_seq == colls["bk"]["last_seq"] and info.count == colls["bk"]["count"]
        ids = list(range(present * size))
        got = s2.get("bk", ids + [present * size], with_vectors=True)
        assert [it.id for it in got.items] == ids and list(got.missing_ids) == [present * size]
        src = server.get("bk", ids, with_vectors=True)
        for a, b in zip(got.items[::37], src.items[::37]):
            assert a.id == b.id and list(a.vector) == list(b.vector)
            assert dict(a.attributes) == dict(b.attributes)
        assert s2.describe("bk2").count == 5 * size
        # the index came from the backed-up file, not retrained
        assert info.index.kind == "ivf_flat" and info.index.trained
        assert info.index.trained_for == src_info.index.trained_for
        assert "loaded ivf_flat index file" in s2.stderr_text(), s2.stderr_text()
        # searches work on the restored copy
        res = s2.search_vectors("bk", [x[5]], k=1)
        assert res.results[0].hits[0].id == 5
    finally:
        s2.kill()


def test_restore_refusals(server, tmp_path):
    server.create("rf", DIM, pb.L2, kind="flat")
    x = np.random.default_rng(4).standard_normal((400, DIM)).astype(np.float32)
    upsert_batches(server, "rf", x, 0, 2, 200)
    arch = str(tmp_path / "b.tar")
    _, data = take_backup(server, arch)
    # a corrupt member: nothing written
    tf = tarfile.open(fileobj=io.BytesIO(data))
    off = tf.getmember("data.mdb").offset_data
    bad = bytearray(data)
    bad[off + 5000] ^= 0x40
    with open(str(tmp_path / "bad.tar"), "wb") as f:
        f.write(bad)
    dst = str(tmp_path / "r1")
    r = restore(str(tmp_path / "bad.tar"), dst)
    assert r.returncode != 0 and "data.mdb" in r.stderr and "corrupt" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(dst, "data.mdb"))
    # a truncated archive
    with open(str(tmp_path / "short.tar"), "wb") as f:
        f.write(data[:len(data) // 2])
    r = restore(str(tmp_path / "short.tar"), dst)
    assert r.returncode != 0 and not os.path.exists(os.path.join(dst, "data.mdb")), r.stderr
    # a format this quiverd does not know
    man = json.loads(tf.extractfile("manifest.json").read())
    man["format"] = 2
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as w:
        body = json.dumps(man).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(body)
        w.addfile(ti, io.BytesIO(body))
        for m in tf.getmembers()[1:]:
            w.addfile(m, tf.extractfile(m))
    with open(str(tmp_path / "v2.tar"), "wb") as f:
        f.write(out.getvalue())
    r = restore(str(tmp_path / "v2.tar"), dst)
    assert r.returncode != 0 and "format 2" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(dst, "data.mdb"))
    # not a backup at all
    with open(str(tmp_path / "junk.tar"), "wb") as f:
        f.write(b"x" * 4096)
    assert restore(str(tmp_path / "junk.tar"), dst).returncode != 0
    # a non-empty directory: refused without --force, replaced with it
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "something"), "w") as f:
        f.write("x")
    r = restore(arch, dst)
    assert r.returncode != 0 and "not empty" in r.stderr and "--force" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(dst, "data.mdb"))
    r = restore(arch, dst, "--force")
    assert r.returncode == 0, r.stderr
    os.makedirs(str(tmp_path / "logs"))
    s2 = qt.Server(dst, str(tmp_path / "logs")).start()
    try:
        assert s2.describe("rf").count == 400
    finally:
        s2.kill()
    # --force alone is a usage error
    r = subprocess.run([qt.QUIVERD, "--force", "--data", dst], capture_output=True, text=True)
    assert r.returncode == 2
