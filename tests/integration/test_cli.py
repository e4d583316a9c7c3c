"""The `quiver` admin CLI against a real quiverd: every subcommand, --json output,
--help on every level, exit codes, index rebuild progress, a refused concurrent
rebuild and Ctrl-C cancelling a rebuild.

The binary is $QUIVER_BIN/quiver (QUIVER_BIN: the cmake build folder, default
<repo>/build). Data is loaded with the Python gRPC stubs (the CLI has no write
command). Run with /usr/bin/python3 -m pytest.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

import quiver_testlib as qt
from quiver_testlib import pb

QUIVER = os.path.join(os.environ.get("QUIVER_BIN") or
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"),
                      "quiver")
PROGRESS = re.compile(r"^phase=(\w+) done=(\d+) total=(\d+) elapsed=(\d+\.\d)s$")
CLI_TIMEOUT = 120

# exit codes documented in `quiver --help`
OK, USAGE, UNAVAILABLE, NOT_FOUND, REJECTED, OTHER, INTERRUPTED = 0, 2, 3, 4, 5, 6, 130


@pytest.fixture(scope="module", autouse=True)
def _binary():
    if not os.path.exists(QUIVER):
        pytest.fail("quiver binary not found at %s (build it, or set QUIVER_BIN)" % QUIVER,
                    pytrace=False)


def _env(extra=None):
    env = {k: v for k, v in os.environ.items() if k != "QUIVER_ADDR"}
    env.update(extra or {})
    return env


def cli(addr, *args, env=None, timeout=CLI_TIMEOUT):
    """Run `quiver [--addr addr] args...`; returns the CompletedProcess (text)."""
    cmd = [QUIVER] + (["--addr", addr] if addr else []) + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=timeout,
                          env=_env(env))


def ok(r):
    assert r.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (r.returncode, r.stdout, r.stderr)
    return r


def jcli(addr, *args, **kw):
    """Run with --json, require exit 0 and exactly one JSON document on stdout."""
    r = ok(cli(addr, "--json", *args, **kw))
    assert r.stdout.endswith("\n") and r.stdout.count("\n") == 1, repr(r.stdout)
    return json.loads(r.stdout)


def fails(r, code, status=None, *words):
    assert r.returncode == code, "expected exit %d, got %d\nstdout: %s\nstderr: %s" % (
        code, r.returncode, r.stdout, r.stderr)
    if status:
        assert r.stderr.startswith("quiver: %s: " % status), r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    return r


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def load(server, coll, vecs, attrs=None, batch=2000):
    for s in range(0, len(vecs), batch):
        items = [qt.item(i + 1, vecs[i], attrs(i) if attrs else None)
                 for i in range(s, min(len(vecs), s + batch))]
        server.upsert(coll, items)


def populated(server, coll, n, dim, seed=1, metric=pb.L2, attrs=None):
    server.create(coll, dim, metric)
    vecs = qt.rand_vectors(np.random.default_rng(seed), n, dim)
    load(server, coll, vecs, attrs)
    return vecs


def wait_idle(server, coll, timeout=120):
    """Wait until no rebuild runs and the index holds every item."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = server.describe(coll)
        if not d.index.rebuilding and d.index.count == d.count:
            return d
        time.sleep(0.1)
    raise AssertionError("collection %s still rebuilding: %s" % (coll, d.index))


# ===================================================================== help
HELP_LEVELS = [
    ["--help"], ["-h"], ["help"],
    ["health", "--help"],
    ["collections", "--help"], ["collections", "-h"],
    ["collections", "list", "--help"], ["collections", "create", "--help"],
    ["collections", "describe", "-h"], ["collections", "drop", "--help"],
    ["index", "--help"], ["index", "rebuild", "--help"], ["index", "status", "--help"],
    ["search", "--help"], ["recommend", "--help"], ["recommend", "x", "--positive", "bad", "-h"],
    ["cluster", "--help"], ["cluster", "status", "--help"], ["cluster", "drain", "--help"],
    ["cluster", "drain", "n", "--wait", "--help"], ["cluster", "rebalance", "--help"],
    # --help wins over missing or bad arguments of its level
    ["collections", "create", "x", "--dim", "nope", "--help"],
    ["--json", "search", "--help"],
]


@pytest.mark.parametrize("args", HELP_LEVELS, ids=[" ".join(a) for a in HELP_LEVELS])
def test_help_on_every_level(args):
    r = ok(cli("127.0.0.1:%d" % closed_port(), *args))
    assert r.stdout.startswith("Usage: quiver"), r.stdout
    assert r.stderr == ""


def test_top_help_documents_commands_and_exit_codes():
    out = ok(cli(None, "--help")).stdout
    for w in ["collections list", "collections create", "collections describe", "collections drop",
              "index rebuild", "index status", "search", "health", "cluster status", "cluster drain",
              "cluster rebalance", "--addr", "QUIVER_ADDR",
              "--json", "Exit codes"]:
        assert w in out, w
    for code, what in [(0, "success"), (2, "usage"), (3, "connect"), (4, "not found"),
                       (5, "INVALID_ARGUMENT"), (6, "INTERNAL"), (130, "Ctrl-C")]:
        assert re.search(r"^\s+%d\s+.*%s" % (code, re.escape(what)), out, re.M), (code, what, out)
    sub = ok(cli(None, "index", "rebuild", "--help")).stdout
    for w in ["--kind", "--nlist", "--pq-m", "--pq-nbits", "--refine", "Ctrl-C"]:
        assert w in sub, w


# ============================================================ usage errors
USAGE_ERRORS = [
    [], ["bogus"], ["collections"], ["index"], ["collections", "frob"], ["index", "frob"],
    ["collections", "create"], ["collections", "create", "c"],
    ["collections", "create", "c", "--dim"], ["collections", "create", "c", "--dim", "abc"],
    ["collections", "create", "c", "--dim", "-3"], ["collections", "create", "c", "--dim", "8x"],
    ["collections", "create", "c", "--dim", "8", "--metric", "manhattan"],
    ["collections", "create", "c", "--dim", "8", "--nlist", "many"],
    ["collections", "create", "c", "--dim", "8", "--bogus", "1"],
    ["collections", "create", "c", "d", "--dim", "8"],
    ["collections", "describe"], ["collections", "describe", "a", "b"], ["collections", "drop"],
    ["collections", "list", "extra"], ["collections", "list", "--verbose"],
    ["index", "rebuild"], ["index", "rebuild", "c", "--pq-m", "x"], ["index", "status"],
    ["search"], ["search", "c"],
    ["search", "c", "--id", "-1"], ["search", "c", "--id", "x"],
    ["search", "c", "--vector", "1,abc,3"], ["search", "c", "--vector", ""],
    ["search", "c", "--vector", "1,,2"],
    ["search", "c", "--id", "1", "--k", "ten"], ["search", "c", "--id", "1", "--min-recall", "hi"],
    # issue 9: filters, exclusions, groups, MMR, fusion, recommend
    ["search", "c", "--id", "1", "--filter", "{"], ["search", "c", "--id", "1", "--filter", "[]"],
    ["search", "c", "--id", "1", "--filter", '{"must":[{"feild":{}}]}'],
    ["search", "c", "--id", "1", "--exclude", "1,x"], ["search", "c", "--id", "1", "--exclude", ""],
    ["search", "c", "--id", "1", "--threshold", "near"], ["search", "c", "--id", "1", "--group-size", "2"],
    ["search", "c", "--id", "1", "--group-by", ""], ["search", "c", "--id", "1", "--mmr", "1.5"],
    ["search", "c", "--id", "1", "--mmr-candidates", "50"], ["search", "c", "--id", "1", "--fusion", "avg"],
    ["search", "c", "--id", "1", "--id", "2", "--rrf-k", "10"],
    ["recommend"], ["recommend", "c"], ["recommend", "c", "--positive", "x"],
    ["recommend", "c", "--positive", "1:0"], ["recommend", "c", "--positive", "1:-2"],
    ["recommend", "c", "--positive", "1:w"], ["recommend", "c", "--positive", "1,,2"],
    ["recommend", "c", "--positive", "1", "--negative", "-3"],
    ["recommend", "c", "--positive", "1", "--strategy", "median"],
    ["recommend", "c", "--positive", "1", "--mmr", "0.5"],
    ["recommend", "c", "--positive", "1", "--filter", '{"must":[{"field":{"key":"a","exists":"yes"}}]}'],
    ["health", "extra"], ["health", "--service"],
    ["cluster"], ["cluster", "frob"], ["cluster", "status", "extra"], ["cluster", "status", "--verbose"],
    ["cluster", "drain"], ["cluster", "drain", ""], ["cluster", "drain", "a", "b"],
    ["cluster", "drain", "n", "--wait", "--cancel"], ["cluster", "drain", "n", "--now"],
    ["cluster", "rebalance", "extra"], ["cluster", "rebalance", "--now"],
    ["collections", "create", "c", "--dim", "8", "--shards", "two"],
    ["collections", "create", "c", "--dim", "8", "--replicas", "-1"],
    ["import", "c", "f.fvecs", "--ack", "eventually"], ["import", "c", "f.fvecs", "--shards", "2"],
    ["--addr"], ["--timeout", "0", "health"], ["--timeout", "x", "health"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=[" ".join(a) or "(none)" for a in USAGE_ERRORS])
def test_usage_errors_exit_2(args):
    # a closed port: arguments are checked before any connection is tried
    r = cli("127.0.0.1:%d" % closed_port(), *args)
    fails(r, USAGE)
    assert r.stdout == ""
    assert r.stderr.strip(), "a usage error says what is wrong"


# ============================================================ no server
@pytest.mark.parametrize("args", [["health"], ["collections", "list"], ["--json", "collections", "list"],
                                  ["collections", "describe", "x"], ["index", "status", "x"],
                                  ["index", "rebuild", "x"], ["search", "x", "--id", "1"]])
def test_server_not_running_exit_3(args):
    addr = "127.0.0.1:%d" % closed_port()
    t0 = time.time()
    r = cli(addr, *args)
    took = time.time() - t0
    fails(r, UNAVAILABLE, "UNAVAILABLE", addr)
    assert r.stdout == ""
    assert took < 5, "a refused connection should fail fast, took %.1fs" % took


def test_silent_server_exit_3_after_connect_timeout():
    """A port that accepts TCP but never speaks HTTP/2: no connection within 5 s."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(8)
    try:
        addr = "127.0.0.1:%d" % lsn.getsockname()[1]
        t0 = time.time()
        r = cli(addr, "collections", "list", timeout=30)
        took = time.time() - t0
    finally:
        lsn.close()
    fails(r, UNAVAILABLE, "DEADLINE_EXCEEDED", addr)
    assert 4 <= took < 15, took


def test_addr_from_environment(server):
    r = ok(cli(None, "health", env={"QUIVER_ADDR": server.addr}))
    assert r.stdout.strip() == "SERVING"
    # --addr wins over the environment
    r = cli(None, "--addr", "127.0.0.1:%d" % closed_port(), "health", env={"QUIVER_ADDR": server.addr})
    fails(r, UNAVAILABLE, "UNAVAILABLE")
    r = cli(None, "health", "--addr=%s" % server.addr, env={"QUIVER_ADDR": "127.0.0.1:%d" % closed_port()})
    ok(r)


# =================================================================== health
def test_health(server):
    assert ok(cli(server.addr, "health")).stdout == "SERVING\n"
    assert jcli(server.addr, "health")["status"] == "SERVING"
    assert jcli(server.addr, "health", "--service", "quiver.v1.Search")["status"] == "SERVING"
    fails(cli(server.addr, "health", "--service", "no.such.Service"), NOT_FOUND, "NOT_FOUND",
          "no.such.Service")


# ============================================================== collections
def test_collections_lifecycle(server):
    a = server.addr
    assert ok(cli(a, "collections", "list")).stdout.strip() == "no collections"
    assert jcli(a, "collections", "list") == {"collections": []}

    c = jcli(a, "collections", "create", "pins", "--dim", "16", "--metric", "cosine",
             "--kind", "ivf_flat", "--nlist", "8", "--refine", "2")
    assert (c["name"], c["dim"], c["metric"], c["count"]) == ("pins", 16, "cosine", 0)
    assert c["index"]["spec"] == {"kind": "ivf_flat", "nlist": 8, "pq_m": 0, "pq_nbits": 0, "refine": 2}
    d = server.describe("pins")
    assert (d.dim, d.metric, d.index.spec.kind, d.index.spec.nlist) == (16, pb.COSINE, "ivf_flat", 8)

    r = ok(cli(a, "collections", "create", "vecs.v2", "--dim=3"))  # --opt=value form, default metric
    assert 'created collection "vecs.v2"' in r.stdout
    assert re.search(r"^metric:\s+l2$", r.stdout, re.M), r.stdout
    ok(cli(a, "collections", "create", "pq", "--dim", "32", "--metric", "ip", "--kind", "ivf_pq",
           "--pq-m", "8", "--pq-nbits", "6"))
    assert server.describe("pq").index.spec.pq_m == 8

    lst = jcli(a, "collections", "list")["collections"]
    got = {c["name"]: (c["dim"], c["metric"], c["count"]) for c in lst}
    assert got == {"pins": (16, "cosine", 0), "vecs.v2": (3, "l2", 0), "pq": (32, "ip", 0)}

    server.upsert("vecs.v2", [qt.item(i, [i, 0, 1]) for i in range(1, 6)])
    table = ok(cli(a, "collections", "list")).stdout.splitlines()
    assert table[0].split() == ["NAME", "DIM", "METRIC", "COUNT", "INDEX", "TRAINED", "REBUILDING", "NLIST",
                                "SHARDS", "REPLICAS"]
    rows = {ln.split()[0]: ln.split() for ln in table[1:]}
    assert set(rows) == {"pins", "vecs.v2", "pq"}
    assert rows["vecs.v2"][1:4] == ["3", "l2", "5"]
    assert rows["vecs.v2"][-2:] == ["1", "1"]  # a single node: 1 shard, 1 replica
    # columns line up: every row is as wide as the header or wider only in the last column
    starts = [m.start() for m in re.finditer(r"\S+", table[0])]
    for ln in table[1:]:
        assert [m.start() for m in re.finditer(r"\S+", ln)][2] == starts[2], table

    d = jcli(a, "collections", "describe", "vecs.v2")
    assert (d["name"], d["dim"], d["metric"], d["count"], d["last_seq"]) == ("vecs.v2", 3, "l2", 5, 5)
    assert (d["shards"], d["replicas"]) == (1, 1)
    assert d["index"]["kind"] == "flat" and d["index"]["count"] == 5
    txt = ok(cli(a, "collections", "describe", "vecs.v2")).stdout
    for key, val in [("name", "vecs.v2"), ("dim", "3"), ("count", "5"), ("kind", "flat"), ("shards", "1"),
                     ("replicas", "1")]:
        assert re.search(r"^\s*%s:\s+%s$" % (key, re.escape(val)), txt, re.M), (key, txt)

    # server-side rejections: exit 5
    fails(cli(a, "collections", "create", "pins", "--dim", "16"), REJECTED, "ALREADY_EXISTS", "pins")
    fails(cli(a, "collections", "create", "z", "--dim", "0"), REJECTED, "INVALID_ARGUMENT", "dim")
    fails(cli(a, "collections", "create", "z", "--dim", "5000"), REJECTED, "INVALID_ARGUMENT", "5000")
    fails(cli(a, "collections", "create", "z", "--dim", "8", "--kind", "hnsw"), REJECTED,
          "INVALID_ARGUMENT", "hnsw")
    fails(cli(a, "collections", "create", "z", "--dim", "10", "--kind", "ivf_pq", "--pq-m", "3"),
          REJECTED, "INVALID_ARGUMENT", "pq_m")
    fails(cli(a, "collections", "create", ".hidden", "--dim", "8"), REJECTED, "INVALID_ARGUMENT")
    # not found: exit 4
    fails(cli(a, "collections", "describe", "nope"), NOT_FOUND, "NOT_FOUND", "nope")
    fails(cli(a, "index", "status", "nope"), NOT_FOUND, "NOT_FOUND", "nope")

    assert jcli(a, "collections", "drop", "pins") == {"dropped": "pins"}
    assert ok(cli(a, "collections", "drop", "pq")).stdout.strip() == 'dropped collection "pq"'
    fails(cli(a, "collections", "drop", "pins"), NOT_FOUND, "NOT_FOUND")
    assert [c["name"] for c in jcli(a, "collections", "list")["collections"]] == ["vecs.v2"]


def test_cluster_status_single_node(server):
    a = server.addr
    r = ok(cli(a, "cluster", "status"))
    assert r.stdout == "single node (not clustered)\n", r.stdout
    assert jcli(a, "cluster", "status") == {"clustered": False, "controller": "", "draining": [],
                                            "nodes": [], "shards": []}
    assert jcli(a, "cluster", "--json", "status")["clustered"] is False


def test_cluster_drain_and_rebalance_need_cluster_mode(server):
    """A single node refuses both with the server's FAILED_PRECONDITION message (exit 5),
    --json or not, and whatever the options."""
    a = server.addr
    for args in (["cluster", "drain", "node1"], ["cluster", "drain", "node1", "--wait"],
                 ["cluster", "drain", "node1", "--cancel"], ["--json", "cluster", "drain", "x"]):
        r = fails(cli(a, *args), REJECTED, "FAILED_PRECONDITION", "DrainNode", "cluster mode")
        assert r.stdout == "" and r.stderr.count("\n") == 1, (args, r.stdout, r.stderr)
    for args in (["cluster", "rebalance"], ["--json", "cluster", "rebalance"]):
        r = fails(cli(a, *args), REJECTED, "FAILED_PRECONDITION", "Rebalance", "cluster mode")
        assert r.stdout == "" and r.stderr.count("\n") == 1, (args, r.stdout, r.stderr)


def test_cluster_help_documents_drain_and_rebalance():
    out = ok(cli(None, "cluster", "--help")).stdout
    for w in ("status", "drain NODE", "rebalance"):
        assert w in out, w
    drain = ok(cli(None, "cluster", "drain", "--help")).stdout
    for w in ("Usage: quiver cluster drain NODE [--wait] [--cancel]", "--wait", "--cancel", "500 ms",
              "ACTIVE", "leaving", "replicas_left", "Ctrl-C"):
        assert w in drain, w
    assert "Admin.Rebalance" in ok(cli(None, "cluster", "rebalance", "--help")).stdout
    st = ok(cli(None, "cluster", "status", "--help")).stdout
    for w in ("controller", "draining", "leaving", "MOVES"):
        assert w in st, w


def test_shards_and_replicas_need_cluster_mode(server):
    a = server.addr
    for opt in ("--shards", "--replicas"):
        r = fails(cli(a, "collections", "create", "sh", "--dim", "8", opt, "2"), REJECTED,
                  "FAILED_PRECONDITION", opt[2:], "cluster mode")
        assert r.stdout == ""
    fails(cli(a, "collections", "describe", "sh"), NOT_FOUND)
    # 1 (and 0: the server's default) is what a single node holds anyway
    d = jcli(a, "collections", "create", "sh", "--dim", "8", "--shards", "1", "--replicas", "0")
    assert (d["shards"], d["replicas"]) == (1, 1)


def test_import_ack_on_a_single_node(server, tmp_path):
    """--ack logged is accepted by a single node (it commits before it replies anyway)."""
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": i, "vector": [float(i), 1.0]}) + "\n" for i in range(50)))
    for ack in ("logged", "applied"):
        coll = "ack_" + ack
        r = jcli(server.addr, "import", coll, str(path), "--create", "--ack", ack, "--shards", "1")
        assert r["rows_acknowledged"] == 50, r
        assert server.describe(coll).count == 50
    fails(cli(server.addr, "import", "ack_x", str(path), "--create", "--shards", "2"), REJECTED,
          "FAILED_PRECONDITION", "shards", "cluster mode")


def test_json_flag_anywhere(server):
    server.create("j", 4, pb.L2)
    a = server.addr
    forms = [
        [QUIVER, "--json", "--addr", a, "collections", "describe", "j"],
        [QUIVER, "--addr", a, "collections", "--json", "describe", "j"],
        [QUIVER, "--addr", a, "collections", "describe", "j", "--json"],
        [QUIVER, "collections", "describe", "--json", "j", "--addr", a],
    ]
    docs = []
    for cmd in forms:
        r = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=CLI_TIMEOUT,
                           env=_env())
        ok(r)
        docs.append(json.loads(r.stdout))
    assert all(d == docs[0] for d in docs) and docs[0]["name"] == "j"


def test_unusual_names(server):
    # a valid name that looks like an option goes after "--"
    name = "-dash.v1_X"
    d = jcli(server.addr, "collections", "create", "--dim", "2", "--", name)
    assert d["name"] == name
    assert jcli(server.addr, "collections", "describe", "--", name)["name"] == name
    # an invalid name is the server's to reject, and its message names it
    r = fails(cli(server.addr, "collections", "describe", 'no"pe\\x'), REJECTED, "INVALID_ARGUMENT")
    assert 'no"pe\\x' in r.stderr


# ==================================================================== search
def _attrs(i):
    return {"color": 'bl"ue\n\tand\\' if i % 2 else "red", "n": i, "w": i / 3.0, "ok": bool(i % 3),
            "tags": ["a", "é"], "big": -(1 << 62)}


def test_search(server):
    n, dim = 500, 16
    vecs = populated(server, "s", n, dim, seed=3, attrs=_attrs)
    a = server.addr

    # by id: same hits and scores as the gRPC API
    res = jcli(a, "search", "s", "--id", "7", "--k", "5")
    want = server.search.Search(pb.SearchRequest(collection="s", queries=[pb.Query(id=7)], k=5)).results[0]
    assert res["collection"] == "s"
    assert [h["rank"] for h in res["hits"]] == [1, 2, 3, 4, 5]
    assert [h["id"] for h in res["hits"]] == [h.id for h in want.hits]
    assert 7 not in [h["id"] for h in res["hits"]]
    np.testing.assert_array_equal(np.float32([h["score"] for h in res["hits"]]),
                                  np.float32([h.score for h in want.hits]))  # exact float round trip
    for h in res["hits"]:
        i = h["id"] - 1
        assert h["attributes"] == {"color": _attrs(i)["color"], "n": i, "w": i / 3.0,
                                   "ok": bool(i % 3), "tags": ["a", "é"], "big": -(1 << 62)}, h

    # by vector (brackets and spaces allowed): exact top hit is the item itself
    q = vecs[42]
    vec_arg = "[" + ", ".join(repr(float(x)) for x in q) + "]"
    res = jcli(a, "search", "s", "--vector", vec_arg, "--k", "3", "--no-attributes")
    exact = qt.brute_force(np.arange(1, n + 1), vecs, q[None, :], pb.L2, 3)[0]
    assert [h["id"] for h in res["hits"]] == exact[0]
    assert res["hits"][0]["score"] == pytest.approx(0.0, abs=1e-4)
    assert all(h["attributes"] == {} for h in res["hits"])
    # default k is 10; the human table
    assert len(jcli(a, "search", "s", "--id", "1")["hits"]) == 10
    lines = ok(cli(a, "search", "s", "--id", "2", "--k", "3")).stdout.splitlines()
    assert lines[0].split() == ["RANK", "ID", "SCORE", "ATTRIBUTES"] and len(lines) == 4, lines
    first = lines[1].split()
    assert first[0] == "1" and int(first[1]) == want_first(server, 2)
    assert "color=" in lines[1] and "tags=[" in lines[1], lines[1]
    ok(cli(a, "search", "s", "--id", "2", "--nprobe", "4", "--min-recall", "0.9"))

    # errors
    fails(cli(a, "search", "nope", "--id", "1"), NOT_FOUND, "NOT_FOUND", "nope")
    fails(cli(a, "search", "s", "--id", "99999"), NOT_FOUND, "NOT_FOUND")
    fails(cli(a, "search", "s", "--vector", "1,2,3"), REJECTED, "INVALID_ARGUMENT", "dim 16")
    fails(cli(a, "search", "s", "--vector", ",".join(["nan"] * dim)), REJECTED, "INVALID_ARGUMENT")
    fails(cli(a, "search", "s", "--id", "1", "--k", "100000"), REJECTED, "INVALID_ARGUMENT")


def want_first(server, id_):
    return server.search.Search(pb.SearchRequest(collection="s", queries=[pb.Query(id=id_)], k=1)
                                ).results[0].hits[0].id


# ===================================================================== index
def progress_lines(stderr):
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    bad = [ln for ln in lines if not PROGRESS.match(ln)]
    assert not bad, "not progress lines: %r" % bad
    return [PROGRESS.match(ln).groups() for ln in lines]


def test_index_rebuild_and_status(make_server):
    server = make_server(args=["--no-auto-rebuild"])
    n, dim = 3000, 16
    populated(server, "r", n, dim, seed=5)
    wait_idle(server, "r")
    a = server.addr
    st = jcli(a, "index", "status", "r")
    assert st["collection"] == "r" and st["index"]["kind"] == "flat"

    r = ok(cli(a, "index", "rebuild", "r", "--kind", "ivf_flat", "--nlist", "16"))
    prog = progress_lines(r.stderr)   # not a terminal: one plain line per update
    assert len(prog) >= 2, r.stderr
    phases = [p[0] for p in prog]
    assert phases[-1] == "done" and "training" in phases and "adding" in phases, phases
    done = [p for p in prog if p[0] == "adding"][-1]
    assert done[1] == done[2] == str(n), prog
    assert 'rebuilt the index of "r"' in r.stdout
    assert re.search(r"^kind:\s+ivf_flat$", r.stdout, re.M), r.stdout
    assert re.search(r"^trained:\s+yes$", r.stdout, re.M), r.stdout

    st = jcli(a, "index", "status", "r")["index"]
    assert (st["kind"], st["trained"], st["nlist"], st["count"], st["rebuilding"]) == \
        ("ivf_flat", True, 16, n, False), st
    assert st["trained_for"] == n and 1 <= st["default_nprobe"] <= 16
    assert st["recall_table"] and all(0 <= p["recall"] <= 1 for p in st["recall_table"])
    assert st["spec"]["kind"] == "ivf_flat" and st["spec"]["nlist"] == 16
    txt = ok(cli(a, "index", "status", "r")).stdout
    for key, val in [("kind", "ivf_flat"), ("trained", "yes"), ("nlist", "16"), ("rebuilding", "no"),
                     ("count", str(n))]:
        assert re.search(r"^%s:\s+%s$" % (key, val), txt, re.M), (key, txt)
    assert re.search(r"^recall_table:$", txt, re.M) and "NPROBE" in txt, txt

    # --json rebuild: progress still on stderr, one document on stdout
    r = ok(cli(a, "--json", "index", "rebuild", "r", "--kind", "ivf_sq8", "--nlist", "8"))
    assert progress_lines(r.stderr)[-1][0] == "done"
    doc = json.loads(r.stdout)
    assert doc["collection"] == "r" and doc["index"]["kind"] == "ivf_sq8" and doc["index"]["trained"]
    assert doc["elapsed_seconds"] >= 0
    # without options: the collection's own (now ivf_sq8) spec
    r = ok(cli(a, "--json", "index", "rebuild", "r"))
    assert json.loads(r.stdout)["index"]["kind"] == "ivf_sq8"

    # rejections
    fails(cli(a, "index", "rebuild", "nope"), NOT_FOUND, "NOT_FOUND", "nope")
    fails(cli(a, "index", "rebuild", "r", "--kind", "hnsw"), REJECTED, "INVALID_ARGUMENT", "hnsw")
    fails(cli(a, "index", "rebuild", "r", "--kind", "ivf_pq", "--pq-m", "5"), REJECTED,
          "INVALID_ARGUMENT", "pq_m")
    fails(cli(a, "index", "rebuild", "r", "--kind", "flat", "--nlist", "4"), REJECTED, "INVALID_ARGUMENT")


def _big(make_server):
    server = make_server(args=["--no-auto-rebuild"])
    populated(server, "big", 40000, 32, seed=11)
    wait_idle(server, "big")
    return server


def _start_rebuild(server, *extra):
    cmd = [QUIVER, "--addr", server.addr, "index", "rebuild", "big", "--kind", "ivf_pq",
           "--pq-m", "8", "--nlist", "64"] + list(extra)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         encoding="utf-8", env=_env())
    # the rebuild runs once the first progress line is out (waited for with a deadline:
    # a CLI that never prints must fail the test, not hang it)
    import select
    ready, _, _ = select.select([p.stderr], [], [], CLI_TIMEOUT)
    assert ready, "no progress line within %ss" % CLI_TIMEOUT
    first = p.stderr.readline()
    assert PROGRESS.match(first.strip()), (first, p.poll())
    return p, first


def test_second_concurrent_rebuild_refused(make_server):
    server = _big(make_server)
    p, first = _start_rebuild(server)
    try:
        r = cli(server.addr, "index", "rebuild", "big", "--kind", "ivf_flat")
        fails(r, REJECTED, "FAILED_PRECONDITION", "big")
        st = jcli(server.addr, "index", "status", "big")["index"]
        assert st["rebuilding"] is True and st["phase"], st
        out, err = p.communicate(timeout=CLI_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, (p.returncode, err)
    prog = progress_lines(first + err)
    assert prog[-1][0] == "done", prog
    st = jcli(server.addr, "index", "status", "big")["index"]
    assert (st["kind"], st["trained"], st["count"], st["pq_m"]) == ("ivf_pq", True, 40000, 8), st


def test_ctrl_c_cancels_rebuild(make_server):
    server = _big(make_server)
    before = server.describe("big").index
    p, _ = _start_rebuild(server)
    # Ctrl-C once the server has the rebuild (not after a fixed sleep)
    end = time.time() + CLI_TIMEOUT
    while not server.describe("big").index.rebuilding and time.time() < end:
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=CLI_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == INTERRUPTED, (p.returncode, out, err)
    assert "CANCELLED" in err, err
    assert out == ""
    # the server stops the rebuild (after its current step) and keeps the old index
    d = wait_idle(server, "big", timeout=120)
    assert d.index.kind == before.kind and d.index.spec.kind == before.spec.kind, d.index
    assert "index rebuild cancelled" in server.stderr_text()
    # and a new rebuild may start
    ok(cli(server.addr, "index", "rebuild", "big", "--kind", "ivf_flat", "--nlist", "32"))
    assert server.describe("big").index.kind == "ivf_flat"


# ================================================= issue 9: filters, recommend
# The semantics are the README's "Composed queries" section. Expected answers are computed
# here by numpy brute force (float64) on small flat collections, where every answer is
# exact.

def test_help_mentions_recommend_and_filters():
    out = ok(cli(None, "--help")).stdout
    assert "recommend COLLECTION" in out and "--filter" in out
    sub = ok(cli(None, "search", "--help")).stdout
    for w in ["--filter", "--exclude", "--threshold", "--group-by", "--group-size", "--mmr",
              "--mmr-candidates", "--fusion", "--rrf-k", "--without-attributes", "stringValue"]:
        assert w in sub, w
    sub = ok(cli(None, "recommend", "--help")).stdout
    for w in ["--positive", "--negative", "--strategy", "average_vector", "best_score", "sum_scores",
              "--filter", "--exclude", "--threshold", "--group-by", "--nprobe", "--min-recall"]:
        assert w in sub, w


def test_filter_json_errors_name_the_path():
    port = closed_port()
    r = fails(cli("127.0.0.1:%d" % port, "search", "c", "--id", "1", "--filter",
                  '{"must":[{"field":{"key":"p","range":{"lower":{"value":"x"}}}}]}'), USAGE)
    assert r.stdout == ""
    assert r.stderr.startswith("quiver: --filter: must[0].field.range.lower.value: expected a number"), r.stderr
    r = fails(cli("127.0.0.1:%d" % port, "recommend", "c", "--positive", "1", "--filter",
                  '{"should":[{}, {"has_id":{"ids":[1,-2]}}]}'), USAGE)
    assert "--filter: should[1].has_id.ids[1]: expected a whole number" in r.stderr, r.stderr
    r = fails(cli("127.0.0.1:%d" % port, "search", "c", "--id", "1", "--filter",
                  '{"must":[{"field":{"key":"a","exists":true,"equals":{"boolValue":true}}}]}'), USAGE)
    assert "--filter: must[0].field.equals: exists is set already" in r.stderr, r.stderr
    r = fails(cli("127.0.0.1:%d" % port, "search", "c", "--id", "1", "--filter", '{"must": [}'), USAGE)
    assert "--filter: invalid JSON at line 1, column" in r.stderr, r.stderr


N9, DIM9 = 300, 8


def _attrs9(i):
    a = {"price": float(i % 97), "year": 1990 + i % 30, "board": "b%d" % (i % 7),
         "tags": ["a", "c"] if i % 5 == 0 else (["a"] if i % 2 else ["b", "c"])}
    if i % 10 != 9:
        a["lang"] = ["en", "fr", "de"][i % 3]
    return a


# (filter in the proto3 JSON mapping, the same as a Python predicate over (id, attributes))
FILTERS9 = {
    "camel": ({"must": [{"field": {"key": "lang", "equals": {"stringValue": "en"}}},
                        {"field": {"key": "price", "range": {"lower": {"value": 10, "inclusive": True},
                                                             "upper": {"value": "60"}}}}],
               "mustNot": [{"hasId": {"ids": [4, "7"]}}]},
              lambda i, a: a.get("lang") == "en" and 10 <= a["price"] < 60 and i not in (4, 7)),
    "snake_nested": ({"should": [{"field": {"key": "tags", "any_of": {"values": [{"string_value": "c"},
                                                                                {"string_value": "z"}]}}},
                                 {"field": {"key": "lang", "exists": False}}],
                      "must_not": [{"filter": {"must": [{"field": {"key": "year", "range": {
                          "lower": {"value": 2010, "inclusive": True}}}}]}}]},
                     lambda i, a: ("c" in a["tags"] or "lang" not in a) and not a["year"] >= 2010),
    # an int compares numerically with a double attribute
    "int_equals_double": ({"must": [{"field": {"key": "price", "equals": {"intValue": "5"}}}]},
                          lambda i, a: a["price"] == 5.0),
    # fewer matches than k: exactly the matches
    "rare": ({"must": [{"field": {"key": "year", "equals": {"intValue": 1995}}},
                       {"field": {"key": "lang", "any_of": {"values": [{"stringValue": "de"}]}}}]},
             lambda i, a: a["year"] == 1995 and a.get("lang") == "de"),
}


def _hits_pb(hits):
    return pb.Hits(hits=[pb.Hit(id=h["id"], score=h["score"]) for h in hits])


def _truth(vecs, attrs, q, metric, k, pred=None, exclude=()):
    ids = np.arange(1, len(vecs) + 1)
    keep = np.array([(pred is None or pred(int(i), attrs[int(i)])) and int(i) not in exclude for i in ids])
    return qt.brute_force(ids[keep], vecs[keep], q[None, :], metric, k)[0]


def _vec_arg(v):
    return ",".join(repr(float(x)) for x in v)


@pytest.fixture
def coll9(server):
    vecs = populated(server, "f", N9, DIM9, seed=21, attrs=_attrs9)
    attrs = {i + 1: _attrs9(i) for i in range(N9)}
    return server, vecs, attrs


@pytest.mark.parametrize("name", sorted(FILTERS9))
def test_search_filter_json(coll9, name):
    server, vecs, attrs = coll9
    flt, pred = FILTERS9[name]
    q = qt.rand_vectors(np.random.default_rng(5), 1, DIM9)[0]
    k = 10
    res = jcli(server.addr, "search", "f", "--vector", _vec_arg(q), "--k", k, "--filter", json.dumps(flt))
    assert res["collection"] == "f" and set(res) == {"collection", "hits"}
    want = _truth(vecs, attrs, q, pb.L2, k, pred)
    matches = sum(pred(i, a) for i, a in attrs.items())
    assert len(res["hits"]) == min(k, matches), (len(res["hits"]), matches)
    qt.assert_hits_match(_hits_pb(res["hits"]), want, what="--filter %s" % name)
    assert [h["rank"] for h in res["hits"]] == list(range(1, len(res["hits"]) + 1))
    for h in res["hits"]:   # attributes come back with the hits, and they pass the filter
        assert pred(h["id"], h["attributes"]), h

    # exclusions (repeatable, comma lists) on top of the filter: the next ones move up
    top = [h["id"] for h in res["hits"]]
    if len(top) >= 3:
        ex = top[:3]
        res2 = jcli(server.addr, "search", "f", "--vector", _vec_arg(q), "--k", k, "--filter",
                    json.dumps(flt), "--exclude", "%d,%d" % (ex[0], ex[1]), "--exclude", ex[2],
                    "--without-attributes")
        qt.assert_hits_match(_hits_pb(res2["hits"]), _truth(vecs, attrs, q, pb.L2, k, pred, set(ex)),
                             what="--filter %s --exclude" % name)
        assert all(h["attributes"] == {} for h in res2["hits"])

    # the table form: one row per hit
    lines = ok(cli(server.addr, "search", "f", "--vector", _vec_arg(q), "--k", k, "--filter",
                   json.dumps(flt))).stdout.splitlines()
    if matches:
        assert lines[0].split() == ["RANK", "ID", "SCORE", "ATTRIBUTES"] and len(lines) == 1 + min(k, matches)
    else:
        assert lines == ["no hits"]


def test_search_filter_by_id_and_server_errors(coll9):
    server, vecs, attrs = coll9
    a = server.addr
    flt, pred = FILTERS9["camel"]
    # a query by id: the item itself never comes back, the filter still applies
    res = jcli(a, "search", "f", "--id", 3, "--k", 5, "--filter", json.dumps(flt))
    want = _truth(vecs, attrs, vecs[2], pb.L2, 5, pred, exclude={3})
    qt.assert_hits_match(_hits_pb(res["hits"]), want, what="--id 3 --filter")
    # the server judges the filter's meaning: exit 5, its message names the condition
    fails(cli(a, "search", "f", "--id", 3, "--filter",
              '{"must":[{"field":{"key":"price","exists":true}},{"field":{"key":"board","range":{"lower":{"value":1}}}}]}'),
          REJECTED, "INVALID_ARGUMENT", "filter.must[1].field.range", "board")
    fails(cli(a, "search", "f", "--id", 3, "--filter", '{"must":[{"field":{"key":"lang"}}]}'),
          REJECTED, "INVALID_ARGUMENT", "filter.must[0].field")
    fails(cli(a, "search", "f", "--id", 3, "--group-by", "tags"), REJECTED, "INVALID_ARGUMENT", "group_by")
    fails(cli(a, "search", "nope", "--id", 3, "--filter", "{}"), NOT_FOUND, "NOT_FOUND", "nope")


def test_search_threshold_groups_mmr(coll9):
    server, vecs, attrs = coll9
    a = server.addr
    q = qt.rand_vectors(np.random.default_rng(6), 1, DIM9)[0]
    plain = jcli(a, "search", "f", "--vector", _vec_arg(q), "--k", 10)["hits"]
    ids = np.arange(1, N9 + 1)
    d = ((vecs.astype(np.float64) - q.astype(np.float64)) ** 2).sum(1)
    order = ids[np.argsort(d, kind="stable")]

    # --threshold on L2: distance <= V
    t = float(np.sort(d)[4] + np.sort(d)[5]) / 2
    res = jcli(a, "search", "f", "--vector", _vec_arg(q), "--k", 10, "--threshold", repr(t))["hits"]
    assert [h["id"] for h in res] == list(order[:5]) and all(h["score"] <= t for h in res)

    # --group-by: at most --group-size per board, filled in score order
    res = jcli(a, "search", "f", "--vector", _vec_arg(q), "--k", 6, "--group-by", "board",
               "--group-size", 2)["hits"]
    want, per = [], {}
    for i in order:
        b = attrs[int(i)]["board"]
        if per.get(b, 0) < 2:
            per[b] = per.get(b, 0) + 1
            want.append(int(i))
        if len(want) == 6:
            break
    assert [h["id"] for h in res] == want
    # --group-by without --group-size: one per group
    res = jcli(a, "search", "f", "--vector", _vec_arg(q), "--k", 7, "--group-by", "board")["hits"]
    assert len({h["attributes"]["board"] for h in res}) == len(res) == 7

    # --mmr 0 is plain search; full diversity keeps the nearest first and changes the order
    res = jcli(a, "search", "f", "--vector", _vec_arg(q), "--k", 10, "--mmr", 0)["hits"]
    assert [h["id"] for h in res] == [h["id"] for h in plain]
    res = jcli(a, "search", "f", "--vector", _vec_arg(q), "--k", 10, "--mmr", 1, "--mmr-candidates", 60)["hits"]
    assert len(res) == 10 and res[0]["id"] == plain[0]["id"]
    assert set(h["id"] for h in res) <= set(int(i) for i in order[:60])
    assert [h["id"] for h in res] != [h["id"] for h in plain]
    # reported scores stay search scores
    for h in res:
        assert h["score"] == pytest.approx(d[h["id"] - 1], rel=1e-5, abs=1e-4)


def _rrf(lists, rrf_k, k):
    from fractions import Fraction
    score = {}
    for lst in lists:
        for r, i in enumerate(lst, 1):
            score[i] = score.get(i, Fraction(0)) + Fraction(1, rrf_k + r)
    best = sorted(score, key=lambda i: (-score[i], i))[:k]
    return best, [float(score[i]) for i in best]


def test_search_several_queries_and_fusion(coll9):
    server, vecs, attrs = coll9
    a = server.addr
    rng = np.random.default_rng(7)
    q1, q2 = qt.rand_vectors(rng, 2, DIM9)
    flt, pred = FILTERS9["snake_nested"]
    k = 5

    # several queries, no fusion: one result list per query, in order (--id and --vector mixed)
    res = jcli(a, "search", "f", "--vector", _vec_arg(q1), "--id", 9, "--vector", _vec_arg(q2), "--k", k)
    assert set(res) == {"collection", "results"} and len(res["results"]) == 3
    for got, (q, ex) in zip(res["results"], [(q1, ()), (vecs[8], {9}), (q2, ())]):
        qt.assert_hits_match(_hits_pb(got["hits"]), _truth(vecs, attrs, q, pb.L2, k, exclude=ex))
    txt = ok(cli(a, "search", "f", "--vector", _vec_arg(q1), "--vector", _vec_arg(q2), "--k", 2)).stdout
    assert re.search(r"^query 1:$", txt, re.M) and re.search(r"^query 2:$", txt, re.M), txt

    # max_score on L2: each item's smallest distance over the queries, ascending; the filter applies
    res = jcli(a, "search", "f", "--vector", _vec_arg(q1), "--vector", _vec_arg(q2), "--k", k,
               "--fusion", "max_score", "--filter", json.dumps(flt))
    assert set(res) == {"collection", "hits"}
    ids = np.arange(1, N9 + 1)
    keep = np.array([pred(int(i), attrs[int(i)]) for i in ids])
    d = np.stack([((vecs.astype(np.float64) - q.astype(np.float64)) ** 2).sum(1) for q in (q1, q2)])
    best = d.min(0)
    order = [int(i) for i in ids[keep][np.argsort(best[keep], kind="stable")]]
    qt.assert_hits_match(_hits_pb(res["hits"]),
                         (order[:k], [best[i - 1] for i in order[:k]], {int(i): best[i - 1] for i in ids}),
                         what="max_score")

    # rrf: sum of 1 / (rrf_k + rank) over each query's filtered list, 10 x k deep; ties by id
    for rrf_k in (None, 7):
        extra = ["--rrf-k", rrf_k] if rrf_k else []
        res = jcli(a, "search", "f", "--vector", _vec_arg(q1), "--vector", _vec_arg(q2), "--k", k,
                   "--fusion", "rrf", "--filter", json.dumps(flt), *extra)
        lists = [[int(i) for i in ids[keep][np.argsort(d[j][keep], kind="stable")][:10 * k]] for j in (0, 1)]
        want_ids, want_scores = _rrf(lists, rrf_k or 60, k)
        assert [h["id"] for h in res["hits"]] == want_ids, (rrf_k, res["hits"], want_ids)
        np.testing.assert_allclose([h["score"] for h in res["hits"]], want_scores, rtol=1e-5)


def _sim(metric, c, x):
    c, x = np.asarray(c, dtype=np.float64), np.asarray(x, dtype=np.float64)
    if metric == pb.L2:
        return -((c - x) ** 2).sum(-1)
    if metric == pb.COSINE:
        return (qt.normalize(c) * qt.normalize(x)).sum(-1)
    return (c * x).sum(-1)


@pytest.mark.parametrize("metric", [pb.L2, pb.COSINE], ids=["l2", "cosine"])
def test_recommend(server, metric):
    n, dim = 200, 6
    rng = np.random.default_rng(31)
    vecs = qt.rand_vectors(rng, n, dim)
    if metric == pb.COSINE:   # unit vectors: the stored and the normalised examples agree
        vecs = qt.normalize(vecs).astype(np.float32)
    server.create("r", dim, metric)
    load(server, "r", vecs, _attrs9)
    attrs = {i + 1: _attrs9(i) for i in range(n)}
    a = server.addr
    pos, neg = {3: 2.0, 10: 1.0}, {25: 1.0}
    examples = set(pos) | set(neg)
    ids = np.arange(1, n + 1)
    V = vecs.astype(np.float64)
    sp = np.stack([_sim(metric, V, V[i - 1]) for i in pos])       # (positives, n)
    sn = np.stack([_sim(metric, V, V[i - 1]) for i in neg])
    wp, wn = np.array(list(pos.values())), np.array(list(neg.values()))

    qv = (wp[:, None] * V[[i - 1 for i in pos]]).sum(0) / wp.sum() - \
        (wn[:, None] * V[[i - 1 for i in neg]]).sum(0) / wn.sum()
    expected = {
        "average_vector": ((((V - qv) ** 2).sum(1)) if metric == pb.L2 else _sim(metric, V, qv),
                           metric == pb.L2, np.ones(n, bool)),
        "best_score": (sp.max(0), False, ~(sn.max(0) > sp.max(0))),
        "sum_scores": ((wp[:, None] * sp).sum(0) - (wn[:, None] * sn).sum(0), False, np.ones(n, bool)),
    }
    flt, pred = FILTERS9["snake_nested"]
    k = 7
    for strategy, (score, ascending, alive) in expected.items():
        for filtered in (False, True):
            keep = alive & np.array([int(i) not in examples and (not filtered or pred(int(i), attrs[int(i)]))
                                     and int(i) != 40 for i in ids])
            o = np.argsort(score[keep] if ascending else -score[keep], kind="stable")[:k]
            want = ([int(i) for i in ids[keep][o]], list(score[keep][o]),
                    {int(i): score[i - 1] for i in ids})
            args = ["recommend", "r", "--positive", "3:2", "--positive", "10", "--negative", "25:1",
                    "--strategy", strategy, "--k", k, "--exclude", 40]
            if filtered:
                args += ["--filter", json.dumps(flt)]
            res = jcli(a, *args)
            assert set(res) == {"collection", "hits"} and res["collection"] == "r"
            qt.assert_hits_match(_hits_pb(res["hits"]), want, what="%s filtered=%s" % (strategy, filtered))
            assert not examples & {h["id"] for h in res["hits"]}
            if filtered:
                assert all(pred(h["id"], h["attributes"]) for h in res["hits"])
    # the default strategy is average_vector; comma lists equal repeated flags
    d1 = jcli(a, "recommend", "r", "--positive", "3:2,10", "--negative", "25", "--k", k, "--exclude", 40)
    d2 = jcli(a, "recommend", "r", "--positive", "3:2", "--positive", "10", "--negative", "25:1",
              "--strategy", "average_vector", "--k", k, "--exclude", 40)
    assert d1 == d2
    # the human table
    lines = ok(cli(a, "recommend", "r", "--positive", "3", "--k", 4)).stdout.splitlines()
    assert lines[0].split() == ["RANK", "ID", "SCORE", "ATTRIBUTES"] and len(lines) == 5, lines
    # group-by and threshold reach the server
    res = jcli(a, "recommend", "r", "--positive", "3", "--k", 5, "--group-by", "board")["hits"]
    assert len({h["attributes"]["board"] for h in res}) == len(res) == 5
    # errors: an unknown example is NOT_FOUND naming it, bad collections and weights too
    fails(cli(a, "recommend", "r", "--positive", "3,99999"), NOT_FOUND, "NOT_FOUND", "positive[1].id")
    fails(cli(a, "recommend", "nope", "--positive", "3"), NOT_FOUND, "NOT_FOUND", "nope")
    fails(cli(a, "recommend", "r", "--positive", "3", "--filter", '{"must":[{}]}'), REJECTED,
          "INVALID_ARGUMENT", "filter.must[0]")
