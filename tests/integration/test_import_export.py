"""`quiver import`, `quiver export` and `quiver backup` (issue 10) against a real quiverd.

Every file is written here with numpy (the ground truth); what the server holds afterwards
is read back with Items/Get (with_vectors) through the Python stubs and compared bit for
bit. Covered: each import format (fvecs, bvecs, npy float32 and float16, JSON Lines with
unicode attributes, CSV with and without a header), refused npy files, --create, a bad row
with and without --skip-bad, a wrong dimension, truncated files, export -> import round
trips for every format, resume after SIGKILL of the importer, an import while quiverd is
killed (kill -9) and restarted then --resume, checkpoint refusals, backup -> restore, the
progress bar on a terminal, --help and usage errors.

The binary is $QUIVER_BIN/quiver. Run with /usr/bin/python3 -m pytest.
"""
import json
import os
import pty
import select
import signal
import socket
import subprocess
import tarfile
import time

import numpy as np
import pytest

import quiver_testlib as qt
from quiver_testlib import pb

QUIVER = os.path.join(os.environ.get("QUIVER_BIN") or
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"),
                      "quiver")
CLI_TIMEOUT = 300
OK, USAGE, UNAVAILABLE, NOT_FOUND, REJECTED, OTHER = 0, 2, 3, 4, 5, 6


@pytest.fixture(scope="module", autouse=True)
def _binary():
    if not os.path.exists(QUIVER):
        pytest.fail("quiver binary not found at %s (build it, or set QUIVER_BIN)" % QUIVER,
                    pytrace=False)


# ------------------------------------------------------------------ helpers
def _env():
    return {k: v for k, v in os.environ.items() if k != "QUIVER_ADDR"}


def cli(addr, *args, timeout=CLI_TIMEOUT, cwd=None):
    cmd = [QUIVER] + (["--addr", addr] if addr else []) + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=timeout,
                          env=_env(), cwd=cwd)


def ok(r):
    assert r.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (r.returncode, r.stdout, r.stderr)
    return r


def fails(r, code, *words):
    assert r.returncode == code, "expected exit %d, got %d\nstdout: %s\nstderr: %s" % (
        code, r.returncode, r.stdout, r.stderr)
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    return r


def jimport(addr, *args, **kw):
    r = ok(cli(addr, "--json", "import", *args, **kw))
    assert r.stdout.count("\n") == 1, r.stdout
    return json.loads(r.stdout)


def write_fvecs(path, x):
    x = np.ascontiguousarray(x, dtype="<f4")
    n, d = x.shape
    out = np.empty((n, d + 1), dtype="<i4")
    out[:, 0] = d
    out[:, 1:] = x.view("<i4")
    out.tofile(path)


def write_bvecs(path, x):
    x = np.ascontiguousarray(x, dtype=np.uint8)
    n, d = x.shape
    with open(path, "wb") as f:
        for row in x:
            np.array([d], dtype="<i4").tofile(f)
            row.tofile(f)


def write_jsonl(path, rows):
    """rows: (id, vector float32, attrs dict or None)."""
    with open(path, "w", encoding="utf-8") as f:
        for id_, v, attrs in rows:
            o = {"id": int(id_), "vector": [float(x) for x in v]}  # float32 -> double: exact
            if attrs is not None:
                o["attributes"] = attrs
            f.write(json.dumps(o, ensure_ascii=False) + "\n")


def write_csv(path, ids, x, header=True):
    with open(path, "w") as f:
        if header:
            f.write("id," + ",".join("v%d" % (j + 1) for j in range(x.shape[1])) + "\n")
        for id_, v in zip(ids, x):
            f.write("%d,%s\n" % (id_, ",".join(repr(float(a)) for a in v)))


def special_vectors(rng, n, dim):
    """Random float32 vectors with values that test exactness: -0.0, subnormals, extremes."""
    x = qt.rand_vectors(rng, n, dim)
    sp = np.array([-0.0, 0.0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, -3.4028235e38,
                   0.1, 1.0 / 3.0, 16777217.0, 1e-7], dtype=np.float32)
    for i in range(min(n, 40)):
        x[i, i % dim] = sp[i % len(sp)]
    return x


def get_items(server, coll, ids, chunk=4000):
    """{id: (float32 vector, attrs)} of the ids that exist."""
    out = {}
    ids = [int(i) for i in ids]
    for s in range(0, len(ids), chunk):
        rep = server.get(coll, ids[s:s + chunk], with_vectors=True, timeout=120)
        for it in rep.items:
            out[it.id] = (qt.f32(it.vector), qt.attrs_of(it))
    return out


def count(server, coll):
    return server.describe(coll).count


def assert_exact(server, coll, ids, x, attrs=None, what=""):
    """The collection holds exactly these ids with these vectors (bit for bit) and attributes."""
    ids = [int(i) for i in ids]
    assert len(set(ids)) == len(ids)
    assert count(server, coll) == len(ids), "%s: count %d, expected %d" % (
        what, count(server, coll), len(ids))
    got = get_items(server, coll, ids)
    missing = [i for i in ids if i not in got]
    assert not missing, "%s: %d ids missing, e.g. %s" % (what, len(missing), missing[:5])
    gv = np.stack([got[i][0] for i in ids])
    bad = np.nonzero((qt.bits(gv) != qt.bits(x)).any(axis=1))[0]
    assert len(bad) == 0, "%s: %d vectors differ, first id %d: %r vs %r" % (
        what, len(bad), ids[bad[0]], gv[bad[0]], x[bad[0]])
    if attrs is not None:
        for i, a in zip(ids, attrs):
            assert got[i][1] == qt.expected_attrs(a or {}), (what, i, got[i][1], a)


def assert_subset_exact(server, coll, ids, x, all_ids):
    """Every (id, vector) given is present, and nothing outside all_ids is."""
    got = get_items(server, coll, ids)
    assert len(got) == len(ids), "%d of %d acknowledged rows missing" % (len(ids) - len(got), len(ids))
    gv = np.stack([got[int(i)][0] for i in ids])
    assert (qt.bits(gv) == qt.bits(x)).all()
    assert count(server, coll) <= len(all_ids)


def closed_port_addr():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "127.0.0.1:%d" % port


def ckpt_rows(path):
    try:
        with open(path) as f:
            return json.load(f)["rows_done"]
    except (OSError, ValueError, KeyError):
        return -1


# ------------------------------------------------------------ import formats
def test_import_fvecs_create_and_id_offset(server, tmp_path):
    rng = np.random.default_rng(1)
    x = special_vectors(rng, 3000, 24)
    p = tmp_path / "base.fvecs"
    write_fvecs(p, x)
    out = jimport(server.addr, "vf", p, "--create", "--batch", 700)
    assert out["rows_sent"] == 3000 and out["rows_acknowledged"] == 3000
    assert out["rows_skipped"] == 0 and out["seconds"] > 0 and out["rows_per_second"] > 0
    ci = server.describe("vf")
    assert ci.dim == 24 and ci.metric == pb.L2
    assert_exact(server, "vf", range(3000), x, what="fvecs")
    # the same file again at an offset: rows 0.. get ids 10000..
    ok(cli(server.addr, "import", "vf", p, "--id-offset", 10000))
    assert count(server, "vf") == 6000
    got = get_items(server, "vf", [10000, 12999])
    assert (qt.bits(got[10000][0]) == qt.bits(x[0])).all()
    assert (qt.bits(got[12999][0]) == qt.bits(x[2999])).all()
    assert not os.path.exists(str(p) + ".quiver-import.json"), "a completed import keeps no checkpoint"


def test_import_bvecs(server, tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(500, 32), dtype=np.uint8)
    p = tmp_path / "b.bvecs"
    write_bvecs(p, x)
    server.create("bv", 32)
    r = ok(cli(server.addr, "import", "bv", p))
    assert "imported 500 rows" in r.stdout, r.stdout
    assert_exact(server, "bv", range(500), x.astype(np.float32), what="bvecs")


@pytest.mark.parametrize("dtype", ["<f4", "<f2"])
def test_import_npy(server, tmp_path, dtype):
    rng = np.random.default_rng(3)
    if dtype == "<f4":
        x = special_vectors(rng, 2500, 20)
    else:  # float16 subnormals, the largest half, -0.0
        x = qt.rand_vectors(rng, 2500, 20).astype(dtype)
        x[0, :5] = np.array([6e-8, -6e-8, 65504, -0.0, 1e-5], dtype=np.float16)
    p = tmp_path / "x.npy"
    np.save(p, x)
    assert np.load(p).dtype == np.dtype(dtype)
    ok(cli(server.addr, "import", "np", p, "--create", "--id-offset", 7))
    # float16 -> float32 is exact, so numpy's conversion is the ground truth
    assert_exact(server, "np", range(7, 2507), x.astype(np.float32), what="npy " + dtype)


@pytest.mark.parametrize("arr,reason", [
    (np.zeros((3, 4), dtype="<i4"), "'<i4'"),
    (np.zeros((3, 4), dtype="<f8"), "'<f8'"),
    (np.zeros((3, 4), dtype=">f4"), "big-endian"),
    (np.asfortranarray(np.arange(12, dtype="<f4").reshape(3, 4)), "Fortran order"),
    (np.zeros(4, dtype="<f4"), "1 dimension"),
    (np.zeros((2, 3, 4), dtype="<f4"), "3 dimensions"),
])
def test_import_npy_refused(server, tmp_path, arr, reason):
    p = tmp_path / "bad.npy"
    np.save(p, arr)
    r = fails(cli(server.addr, "import", "refused", p, "--create"), REJECTED, str(p), reason)
    assert r.stdout == ""
    names = [c.name for c in server.collections.List(pb.ListCollectionsRequest()).collections]
    assert "refused" not in names, "nothing may be created for a refused file"


def test_import_jsonl_unicode_attributes(server, tmp_path):
    rng = np.random.default_rng(4)
    x = special_vectors(rng, 60, 8)
    ids = [int(i) for i in rng.choice(10 ** 12, size=60, replace=False)]
    ids[0] = 2 ** 63 - 1  # the largest id
    ids[1] = 0
    attrs = []
    for i in range(60):
        a = {"lang": ["en", "日本語", "ελληνικά", "emoji 🚀"][i % 4], "n": i - 30,
             "price": i / 7.0, "ok": i % 2 == 0, "tags": ["ü", "a\"b", "\\", "x y"][: i % 5],
             "ключ": "значение"}
        if i == 3:
            a = {"big": 2 ** 63 - 1, "small": -2 ** 63, "whole_real": 2.0, "neg_zero": -0.0,
                 "tiny": 5e-324, "empty_list": [], "empty": ""}
        if i == 4:
            a = None  # no "attributes" key
        attrs.append(a)
    p = tmp_path / "rows.jsonl"
    write_jsonl(p, zip(ids, x, attrs))
    with open(p, "a") as f:
        f.write("\n   \n")  # blank lines are not rows
    out = jimport(server.addr, "js", p, "--create", "--metric", "ip", "--batch", 7)
    assert out["rows_acknowledged"] == 60
    assert server.describe("js").metric == pb.INNER_PRODUCT
    assert_exact(server, "js", ids, x, attrs, what="jsonl")
    got = get_items(server, "js", [ids[3]])[ids[3]][1]
    assert got["whole_real"] == ("double_value", 2.0)  # 2.0 stays a double, not an int
    assert got["big"] == ("int_value", 2 ** 63 - 1)
    assert got["empty_list"] == ("string_list", [])


def test_import_csv_with_and_without_header(server, tmp_path):
    rng = np.random.default_rng(5)
    x = special_vectors(rng, 400, 12)
    ids = list(range(1000, 1400))
    write_csv(tmp_path / "a.csv", ids[:200], x[:200], header=True)
    write_csv(tmp_path / "b.csv", ids[200:], x[200:], header=False)
    out = jimport(server.addr, "cs", tmp_path / "a.csv", tmp_path / "b.csv", "--create")
    assert out["rows_acknowledged"] == 400
    assert_exact(server, "cs", ids, x, what="csv")


def test_format_flag_overrides_extension(server, tmp_path):
    rng = np.random.default_rng(6)
    x = qt.rand_vectors(rng, 50, 4)
    p = tmp_path / "vectors.bin"
    write_fvecs(p, x)
    fails(cli(server.addr, "import", "ff", p, "--create"), USAGE, "--format")
    ok(cli(server.addr, "import", "ff", p, "--create", "--format", "fvecs"))
    assert_exact(server, "ff", range(50), x)


# --------------------------------------------------------------- bad input
def test_bad_row_stops_before_its_batch(server, tmp_path):
    rng = np.random.default_rng(7)
    x = qt.rand_vectors(rng, 100, 16)
    rows = [(i, x[i], {"k": i}) for i in range(100)]
    p = tmp_path / "bad.jsonl"
    write_jsonl(p, rows)
    lines = p.read_text().splitlines()
    lines[56] = json.dumps({"id": 56, "vector": [1.0, 2.0]})  # line 57: wrong dimension
    p.write_text("\n".join(lines) + "\n")
    server.create("bad", 16)
    r = fails(cli(server.addr, "import", "bad", p, "--batch", 10), REJECTED,
              "%s:57: " % p, "dimension 2, expected 16")
    # batches of 10: rows 1..50 went, the batch of rows 51..60 did not
    assert_exact(server, "bad", range(50), x[:50], [{"k": i} for i in range(50)])
    assert r.stdout == ""
    # --skip-bad: every other row, the bad one counted
    out = jimport(server.addr, "bad", p, "--batch", 10, "--skip-bad")
    assert out["rows_skipped"] == 1 and out["rows_acknowledged"] == 99
    keep = [i for i in range(100) if i != 56]
    assert_exact(server, "bad", keep, x[keep], [{"k": i} for i in keep])


@pytest.mark.parametrize("kind", ["nan_fvecs", "inf_npy", "json_syntax", "bad_attr_null",
                                  "bad_attr_object", "bad_attr_mixed_list", "csv_value",
                                  "csv_id", "id_negative", "unknown_key"])
def test_bad_rows_of_every_kind(server, tmp_path, kind):
    rng = np.random.default_rng(8)
    x = qt.rand_vectors(rng, 30, 4)
    bad_at = 12  # 0-based row
    if kind == "nan_fvecs":
        y = x.copy()
        y[bad_at, 2] = np.nan
        p = tmp_path / "f.fvecs"
        write_fvecs(p, y)
        where, why = "%s:%d: " % (p, bad_at + 1), "NaN"
    elif kind == "inf_npy":
        y = x.copy()
        y[bad_at, 0] = -np.inf
        p = tmp_path / "f.npy"
        np.save(p, y)
        where, why = "%s:%d: " % (p, bad_at + 1), "Inf"
    elif kind.startswith("csv"):
        p = tmp_path / "f.csv"
        write_csv(p, range(30), x, header=False)
        lines = p.read_text().splitlines()
        lines[bad_at] = ("%d,1,2,x,4" % bad_at) if kind == "csv_value" else "-3,1,2,3,4"
        p.write_text("\n".join(lines) + "\n")
        where, why = "%s:%d: " % (p, bad_at + 1), "not a number" if kind == "csv_value" else "id"
    else:
        p = tmp_path / "f.jsonl"
        write_jsonl(p, [(i, x[i], None) for i in range(30)])
        lines = p.read_text().splitlines()
        v = [float(a) for a in x[bad_at]]
        lines[bad_at] = {
            "json_syntax": '{"id": 12, "vector": [1, 2, 3, 4]',
            "bad_attr_null": json.dumps({"id": 12, "vector": v, "attributes": {"a": None}}),
            "bad_attr_object": json.dumps({"id": 12, "vector": v, "attributes": {"a": {"b": 1}}}),
            "bad_attr_mixed_list": json.dumps({"id": 12, "vector": v, "attributes": {"a": ["x", 1]}}),
            "id_negative": json.dumps({"id": -1, "vector": v}),
            "unknown_key": json.dumps({"id": 12, "vector": v, "attrs": {}}),
        }[kind]
        p.write_text("\n".join(lines) + "\n")
        why = {"json_syntax": "unparsable JSON", "bad_attr_null": "bad attribute",
               "bad_attr_object": "bad attribute", "bad_attr_mixed_list": "bad attribute",
               "id_negative": "id", "unknown_key": "unknown key"}[kind]
        where = "%s:%d: " % (p, bad_at + 1)
    server.create("k", 4)
    fails(cli(server.addr, "import", "k", p, "--batch", 5), REJECTED, where, why)
    assert count(server, "k") == 10  # batches of 5: rows 0..9
    out = jimport(server.addr, "k", p, "--batch", 5, "--skip-bad")
    assert out["rows_skipped"] == 1
    keep = [i for i in range(30) if i != bad_at]
    assert_exact(server, "k", keep, x[keep])


@pytest.mark.parametrize("fmt", ["npy", "fvecs", "jsonl", "csv"])
def test_wrong_dimension_sends_nothing(server, tmp_path, fmt):
    rng = np.random.default_rng(9)
    x = qt.rand_vectors(rng, 20, 8)
    p = tmp_path / ("w." + fmt)
    if fmt == "npy":
        np.save(p, x)
    elif fmt == "fvecs":
        write_fvecs(p, x)
    elif fmt == "jsonl":
        write_jsonl(p, [(i, x[i], None) for i in range(20)])
    else:
        write_csv(p, range(20), x)
    server.create("w", 16)
    fails(cli(server.addr, "import", "w", p, "--skip-bad"), REJECTED, "dimension 8", 'dim 16')
    assert count(server, "w") == 0


@pytest.mark.parametrize("fmt", ["fvecs", "npy", "jsonl"])
def test_truncated_file(server, tmp_path, fmt):
    rng = np.random.default_rng(10)
    x = qt.rand_vectors(rng, 100, 8)
    p = tmp_path / ("t." + fmt)
    if fmt == "fvecs":
        write_fvecs(p, x)
    elif fmt == "npy":
        np.save(p, x)
    else:
        write_jsonl(p, [(i, x[i], {"a": "b"}) for i in range(100)])
    data = p.read_bytes()
    p.write_bytes(data[:len(data) - 20])  # the last row is cut
    server.create("t", 8)
    fails(cli(server.addr, "import", "t", p, "--batch", 30), REJECTED, "%s:100: " % p)
    assert count(server, "t") == 90  # three batches of 30
    out = jimport(server.addr, "t", p, "--batch", 30, "--skip-bad")
    assert out["rows_skipped"] == 1
    assert_exact(server, "t", range(99), x[:99])


def test_create_and_collection_checks(server, tmp_path):
    rng = np.random.default_rng(11)
    x = qt.rand_vectors(rng, 300, 10)
    p = tmp_path / "c.npy"
    np.save(p, x)
    fails(cli(server.addr, "import", "nope", p), NOT_FOUND, "--create")
    ok(cli(server.addr, "import", "cr", p, "--create", "--metric", "cosine", "--kind", "flat"))
    ci = server.describe("cr")
    assert ci.dim == 10 and ci.metric == pb.COSINE and ci.count == 300
    fails(cli(server.addr, "import", "cr", p, "--create"), REJECTED, "ALREADY_EXISTS")
    fails(cli(server.addr, "import", "cr", p, "--metric", "l2"), USAGE, "--create")
    ok(cli(server.addr, "import", "cr", p, "--create", "--resume"))  # resuming uses it
    assert count(server, "cr") == 300


def test_usage_errors_and_help(server, tmp_path):
    for c in ("import", "export", "backup"):
        r = ok(cli(None, c, "--help"))
        assert r.stdout.startswith("Usage: quiver " + c), r.stdout
    h = ok(cli(None, "import", "--help")).stdout
    for w in ("--skip-bad", "--resume", "--checkpoint", "--window", "--batch", "--segment-batches",
              "string_value", "int_value", "double_value", "bool_value", "string_list",
              "quiver-import.json", "rows_done"):
        assert w in h, w
    e = ok(cli(None, "export", "--help")).stdout
    assert "attributes are lost" in e and "ids and attributes are lost" in e
    top = ok(cli(None, "--help")).stdout
    for w in ("import COLLECTION", "export COLLECTION", "backup FILE"):
        assert w in top, w
    p = tmp_path / "u.npy"
    np.save(p, np.zeros((2, 2), dtype="<f4"))
    fails(cli(server.addr, "import", "u"), USAGE, "FILE")
    fails(cli(server.addr, "import", "u", p, "--batch", 0), USAGE, "--batch")
    fails(cli(server.addr, "import", "u", p, "--format", "xml"), USAGE, "--format")
    fails(cli(server.addr, "export", "u", "--format", "npy"), USAGE, "-o")
    fails(cli(server.addr, "export", "u", "-o", tmp_path / "x.txt"), USAGE, "--format")
    fails(cli(server.addr, "backup"), USAGE, "FILE")
    fails(cli(server.addr, "import", "u", tmp_path / "missing.npy", "--create"), REJECTED, "missing.npy")


# --------------------------------------------------------------- round trips
def _source(server, name, ids, x, attrs):
    server.create(name, x.shape[1])
    for s in range(0, len(ids), 500):
        server.upsert(name, [qt.item(int(i), v, a) for i, v, a in
                             zip(ids[s:s + 500], x[s:s + 500], attrs[s:s + 500])])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "fvecs", "npy"])
def test_export_import_round_trip(server, tmp_path, fmt):
    rng = np.random.default_rng(12)
    n, dim = 2345, 17
    x = special_vectors(rng, n, dim)
    if fmt in ("jsonl", "csv"):
        ids = sorted(int(i) for i in rng.choice(2 ** 40, size=n, replace=False))
        ids[-1] = 2 ** 63 - 1
    else:
        ids = list(range(100, 100 + n))  # contiguous: --id-offset 100 restores them
    attrs = [{"s": "värde %d ✓" % i, "i": -i, "d": i * 0.1, "b": i % 3 == 0,
              "l": ["x", "ÿ"][: i % 3]} if i % 5 else {} for i in range(n)]
    _source(server, "src", ids, x, attrs)
    out = tmp_path / ("out." + fmt)
    r = ok(cli(server.addr, "--json", "export", "src", "--format", fmt, "-o", out))
    info = json.loads(r.stdout)
    assert info["items"] == n and info["format"] == fmt
    assert not os.path.exists(str(out) + ".tmp")
    # the file itself, read independently
    if fmt == "npy":
        a = np.load(out)
        assert a.dtype == np.dtype("<f4") and a.shape == (n, dim)
        assert (qt.bits(a) == qt.bits(x)).all()
        assert info["first_id"] == 100 and info["ids_contiguous"] is True
    elif fmt == "fvecs":
        assert (qt.bits(qt.fvecs(str(out))) == qt.bits(x)).all()
    elif fmt == "csv":
        lines = out.read_text().splitlines()
        assert lines[0].startswith("id,v1,") and len(lines) == n + 1
    else:
        first = json.loads(out.read_text(encoding="utf-8").splitlines()[1])
        assert first["id"] == ids[1] and first["attributes"]["s"] == "värde 1 ✓"
    extra = ["--id-offset", 100] if fmt in ("fvecs", "npy") else []
    ok(cli(server.addr, "import", "dst", out, "--create", *extra))
    keep_attrs = attrs if fmt == "jsonl" else [None] * n
    assert_exact(server, "dst", ids, x, keep_attrs, what="round trip " + fmt)
    if fmt == "jsonl":  # and once more: the second export is the same file
        out2 = tmp_path / "again.jsonl"
        ok(cli(server.addr, "export", "dst", "-o", out2))
        assert out2.read_bytes() == out.read_bytes()


def test_export_empty_and_missing(server, tmp_path):
    server.create("empty", 3)
    for fmt in ("npy", "fvecs", "jsonl", "csv"):
        out = tmp_path / ("e." + fmt)
        r = ok(cli(server.addr, "export", "empty", "-o", out))
        assert "exported 0 items" in r.stdout
    assert np.load(tmp_path / "e.npy").shape == (0, 3)
    fails(cli(server.addr, "export", "missing", "-o", tmp_path / "m.npy"), NOT_FOUND)
    assert not os.path.exists(tmp_path / "m.npy") and not os.path.exists(tmp_path / "m.npy.tmp")


# ------------------------------------------------------------------- resume
N_BIG, DIM_BIG = 200_000, 16


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    rng = np.random.default_rng(13)
    x = qt.rand_vectors(rng, N_BIG, DIM_BIG)
    d = tmp_path_factory.mktemp("big")
    p = d / "big.fvecs"
    write_fvecs(p, x)
    return p, x


def _start_import(addr, *args):
    cmd = [QUIVER, "--addr", addr, "import"] + [str(a) for a in args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _wait_rows(proc, ck, at_least, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ckpt_rows(ck) >= at_least:
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail("the importer ended (exit %s) before %d rows were acknowledged\n%s%s"
                        % (proc.returncode, at_least, out, err))
        time.sleep(0.005)
    pytest.fail("no checkpoint with %d rows within %ss" % (at_least, timeout))


SLOW = ["--batch", 100, "--segment-batches", 2, "--window", 2]


def test_resume_after_killing_the_importer(server, tmp_path, big):
    p, x = big
    ck = tmp_path / "ck.json"
    proc = _start_import(server.addr, "big", p, "--create", "--checkpoint", ck, *SLOW)
    _wait_rows(proc, ck, 20_000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = ckpt_rows(ck)
    assert 20_000 <= done < N_BIG, done
    with open(ck) as f:
        c = json.load(f)
    assert c["version"] == 1 and c["collection"] == "big" and c["format"] == "fvecs"
    assert c["id_offset"] == 0 and c["files"][0]["size"] == os.path.getsize(p)
    # the acknowledged prefix is there, nothing from outside the file
    assert_subset_exact(server, "big", range(done), x[:done], range(N_BIG))
    # the same command with --resume completes it
    out = jimport(server.addr, "big", p, "--create", "--checkpoint", ck, "--resume", *SLOW)
    assert out["resumed_from"] == done and out["rows_done"] == N_BIG
    assert out["rows_acknowledged"] == N_BIG - done
    assert not os.path.exists(ck)
    assert_exact(server, "big", range(N_BIG), x, what="after resume")


def test_resume_jsonl_ids_from_the_file(server, tmp_path):
    """Ids from the file, some repeated (the later row wins), kill and resume."""
    rng = np.random.default_rng(14)
    n = 60_000
    x = qt.rand_vectors(rng, n, 8)
    ids = rng.integers(0, 40_000, size=n)  # many repeats across segments
    p = tmp_path / "dup.jsonl"
    write_jsonl(p, [(i, v, {"row": r}) for r, (i, v) in enumerate(zip(ids, x))])
    last = {}
    for r, i in enumerate(ids):
        last[int(i)] = r
    ck = str(p) + ".quiver-import.json"  # the default location
    proc = _start_import(server.addr, "dup", p, "--create", "--batch", 50, "--segment-batches", 2,
                         "--window", 4)
    _wait_rows(proc, ck, 5_000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ok(cli(server.addr, "import", "dup", p, "--create", "--resume", "--batch", 50,
           "--segment-batches", 2, "--window", 4))
    want = sorted(last)
    assert_exact(server, "dup", want, x[[last[i] for i in want]],
                 [{"row": last[i]} for i in want], what="repeated ids")


def test_import_while_the_server_is_killed_and_restarted(server, tmp_path, big):
    p, x = big
    ck = tmp_path / "ck.json"
    proc = _start_import(server.addr, "srv", p, "--create", "--checkpoint", ck, *SLOW)
    _wait_rows(proc, ck, 20_000)
    server.kill()  # kill -9 mid-import
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == UNAVAILABLE, (proc.returncode, out, err)
    assert "--resume" in err, err
    done = ckpt_rows(ck)
    assert 20_000 <= done < N_BIG
    server.start()  # same folder, a new port
    # every acknowledged row survived the crash; nothing foreign appeared
    assert_subset_exact(server, "srv", range(done), x[:done], range(N_BIG))
    res = jimport(server.addr, "srv", p, "--create", "--checkpoint", ck, "--resume", *SLOW)
    assert res["resumed_from"] == done
    assert_exact(server, "srv", range(N_BIG), x, what="after the server's restart")


def test_resume_refuses_another_import(server, tmp_path):
    rng = np.random.default_rng(15)
    x = qt.rand_vectors(rng, 100, 4)
    p = tmp_path / "r.npy"
    np.save(p, x)
    ck = tmp_path / "r.ck"
    server.create("r", 4)
    server.create("r2", 4)
    ckpt = {"version": 1, "collection": "r", "format": "npy", "id_offset": 0,
            "files": [{"path": str(p), "size": os.path.getsize(p),
                       "mtime": os.stat(p).st_mtime_ns, "format": "npy"}],
            "rows_done": 40, "rows_skipped": 0, "dim": 4}
    ck.write_text(json.dumps(ckpt))
    fails(cli(server.addr, "import", "r2", p, "--resume", "--checkpoint", ck), REJECTED,
          "another collection")
    fails(cli(server.addr, "import", "r", p, "--resume", "--checkpoint", ck, "--id-offset", 5),
          REJECTED, "--id-offset")
    os.utime(p, ns=(os.stat(p).st_atime_ns, os.stat(p).st_mtime_ns + 10 ** 9))
    fails(cli(server.addr, "import", "r", p, "--resume", "--checkpoint", ck), REJECTED, "changed")
    assert count(server, "r") == 0
    # a matching checkpoint: rows 40.. only
    ckpt["files"][0]["mtime"] = os.stat(p).st_mtime_ns
    ck.write_text(json.dumps(ckpt))
    out = jimport(server.addr, "r", p, "--resume", "--checkpoint", ck)
    assert out["resumed_from"] == 40 and out["rows_acknowledged"] == 60
    assert_exact(server, "r", range(40, 100), x[40:])
    # --resume without a checkpoint starts at the first row
    out = jimport(server.addr, "r", p, "--resume", "--checkpoint", ck)
    assert out["resumed_from"] == 0 and out["rows_acknowledged"] == 100


# ------------------------------------------------------------------- backup
def test_backup_then_restore(server, tmp_path):
    rng = np.random.default_rng(16)
    x = qt.rand_vectors(rng, 3000, 12)
    p = tmp_path / "b.npy"
    np.save(p, x)
    ok(cli(server.addr, "import", "bk", p, "--create"))
    f = tmp_path / "backup.tar"
    r = ok(cli(server.addr, "--json", "backup", f))
    info = json.loads(r.stdout)
    assert info["bytes"] == os.path.getsize(f) and info["file"] == str(f)
    assert info["last_seq"] == server.describe("bk").last_seq
    assert not os.path.exists(str(f) + ".tmp")
    with tarfile.open(f) as t:
        names = t.getnames()
    assert names[0] == "manifest.json" and "data.mdb" in names
    r = ok(cli(server.addr, "backup", tmp_path / "b2.tar"))
    assert "last_seq %d" % info["last_seq"] in r.stdout
    restored = tmp_path / "restored"
    rr = subprocess.run([qt.QUIVERD, "--restore", str(f), "--data", str(restored)],
                        capture_output=True, text=True, timeout=120)
    assert rr.returncode == 0, rr.stderr
    s2 = qt.Server(str(restored), str(tmp_path))
    try:
        s2.start()
        assert_exact(s2, "bk", range(3000), x, what="restored")
    finally:
        s2.kill()
    fails(cli(closed_port_addr(), "backup", tmp_path / "x.tar"), UNAVAILABLE)
    assert not os.path.exists(tmp_path / "x.tar.tmp")


# ---------------------------------------------------------- progress on a tty
def test_progress_bar_on_a_terminal(server, tmp_path, big):
    p, _ = big
    master, slave = pty.openpty()
    proc = subprocess.Popen([QUIVER, "--addr", server.addr, "import", "tty", str(p), "--create",
                             "--batch", "500"], stdout=subprocess.PIPE, stderr=slave, env=_env())
    os.close(slave)
    buf = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    proc.wait(timeout=60)
    os.close(master)
    text = buf.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "import" in text and "rows/s" in text and "100.0%" in text, text
    assert "\r" in text  # redrawn in place
    # not a terminal: no bar, one summary line
    r = ok(cli(server.addr, "import", "tty", p, "--batch", 5000))
    assert r.stderr == "" and r.stdout.count("\n") == 1 and "rows/s" in r.stdout


def test_default_checkpoint_beside_the_file_or_in_the_current_folder(server, tmp_path):
    rng = np.random.default_rng(17)
    x = qt.rand_vectors(rng, 50, 4)
    x[30, 1] = np.nan  # a bad row keeps the checkpoint
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    cwd = tmp_path / "cwd"
    for d in (rw, ro, cwd):
        d.mkdir()
    np.save(rw / "a.npy", x)
    np.save(ro / "a.npy", x)
    ro.chmod(0o555)
    try:
        server.create("dc", 4)
        fails(cli(server.addr, "import", "dc", rw / "a.npy", "--batch", 10, cwd=cwd), REJECTED)
        assert ckpt_rows(rw / "a.npy.quiver-import.json") == 30
        fails(cli(server.addr, "import", "dc", ro / "a.npy", "--batch", 10, cwd=cwd), REJECTED)
        assert not os.path.exists(ro / "a.npy.quiver-import.json")
        assert ckpt_rows(cwd / "a.npy.quiver-import.json") == 30
        out = jimport(server.addr, "dc", ro / "a.npy", "--batch", 10, "--resume", "--skip-bad", cwd=cwd)
        assert out["resumed_from"] == 30 and out["rows_acknowledged"] == 19 and out["rows_skipped"] == 1
        assert not os.path.exists(cwd / "a.npy.quiver-import.json")
    finally:
        ro.chmod(0o755)
