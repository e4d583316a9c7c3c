"""The `quiver` CLI and /metrics against a real cluster (issue 18): NATS JetStream (one
server), etcd and two quiverd nodes on loopback, started by cluster_lib's fixture.

- `quiver collections create --shards 2 --replicas 2` makes a 2 x 2 collection that
  `describe` and `list` show as such on either node;
- `quiver cluster status --json` lists both nodes alive and both shards with two ACTIVE
  replicas each, caught up with their log; the table names both nodes;
- `quiver import --ack logged` returns once the log holds the rows, which every node
  then serves;
- each node's /metrics has its replicas' applied sequence, lag and state, its node id,
  its controller role and the replica moves; promtool accepts the text; the Grafana
  dashboard's cluster panels query families a cluster node serves, and every cluster
  family has a panel;
- on three nodes (issue 19) `quiver cluster drain NODE --wait` returns once the node holds
  no replica (status shows it draining, every replica ACTIVE), `--cancel` and `quiver
  cluster rebalance` give it replicas again, and exactly one node reports itself the
  controller, with the moves it started.

The binaries are $QUIVER_BIN/quiver and quiverd. Run with /usr/bin/python3 -m pytest.
"""
import json
import os
import re
import signal
import subprocess

import numpy as np
import pytest

import quiver_testlib as qt
from cluster_lib import cluster_factory  # noqa: F401  (the fixture)
from quiver_testlib import pb
from test_cli import QUIVER, cli, fails, jcli, ok, NOT_FOUND, REJECTED
from test_metrics import (CLUSTER_PREFIX, PROMTOOL, Exposition, _FAMILY_REF, dashboard_exprs,
                          metrics_port, scrape)

DIM = 8
N = 300
NODES = {"node1", "node2"}
STATES = ("active", "catching_up", "down")


@pytest.fixture
def cluster(cluster_factory):  # noqa: F811
    """Two nodes serving /metrics, and collection "cc" (2 shards x 2 replicas) made with the
    CLI holding N items."""
    if not os.path.exists(QUIVER):
        pytest.fail("quiver binary not found at %s (build it, or set QUIVER_BIN)" % QUIVER,
                    pytrace=False)
    cl = cluster_factory(nodes=2, nats=1, node_args=["--metrics-listen", "127.0.0.1:0"])
    d = jcli(cl.nodes[0].advertise, "collections", "create", "cc", "--dim", DIM,
             "--shards", "2", "--replicas", "2")
    assert (d["name"], d["dim"], d["shards"], d["replicas"]) == ("cc", DIM, 2, 2)
    X = np.random.default_rng(5).standard_normal((N, DIM)).astype(np.float32)
    for s in range(0, N, 100):
        cl.nodes[0].upsert("cc", [qt.item(i, X[i]) for i in range(s, s + 100)])
    return cl


def caught_up(addr, coll="cc"):
    """cluster status --json once every replica of coll is ACTIVE with lag 0."""
    last = {}

    def ok_():
        st = jcli(addr, "cluster", "status")
        last["st"] = st
        shards = [s for s in st["shards"] if s["collection"] == coll]
        return shards and all(r["state"] == "ACTIVE" and r["lag"] == 0
                              for s in shards for r in s["replicas"])
    qt.wait_for(ok_, 30, lambda: "replicas of %s caught up: %s" % (coll, last.get("st")),
                interval=0.2)
    return last["st"]


def test_cluster_status_create_describe_list(cluster):
    a, b = (n.advertise for n in cluster.nodes)
    st = caught_up(a)
    assert st["clustered"] is True
    assert st["controller"] in NODES and st["draining"] == []
    assert {n["id"] for n in st["nodes"]} == NODES and all(n["alive"] for n in st["nodes"])
    assert {n["address"] for n in st["nodes"]} == {a, b}
    shards = sorted((s for s in st["shards"] if s["collection"] == "cc"), key=lambda s: s["shard"])
    assert [s["shard"] for s in shards] == [0, 1]
    total = 0
    for s in shards:
        assert len(s["replicas"]) == 2
        assert {r["node"] for r in s["replicas"]} == NODES       # one copy on each node
        assert all(r["state"] == "ACTIVE" for r in s["replicas"])
        assert all(r["applied_seq"] == s["log_last_seq"] > 0 for r in s["replicas"])
        assert set(s["replicas"][0]) == {"node", "state", "applied_seq", "lag", "leaving"}
        assert not any(r["leaving"] for r in s["replicas"])
        total += s["log_last_seq"]
    assert total >= 2 * 3   # three upserts, each touching both shards

    # the same from the other node, and the table
    st_b = jcli(b, "cluster", "status")
    assert {n["id"] for n in st_b["nodes"]} == NODES
    txt = ok(cli(a, "cluster", "status")).stdout
    for w in ["node1", "node2", a, b, "cc", "ACTIVE", "LOG_LAST_SEQ", "APPLIED_SEQ", "LAG", "MOVES",
              "nodes: 2 (2 alive)", "shards: 2 (4 replicas, 4 ACTIVE)", "draining: none\n",
              "controller: %s\n" % st["controller"]]:
        assert w in txt, (w, txt)
    rows = [ln.split() for ln in txt.splitlines() if ln.strip().startswith("cc ")]
    assert len(rows) == 4, txt
    for r in rows:   # COLLECTION SHARD LOG_LAST_SEQ NODE STATE APPLIED_SEQ LAG MOVES
        assert r[3] in NODES and r[4] == "ACTIVE" and r[2] == r[5] and r[6] == "0" and r[7] == "-", r

    # describe and list on either node show the layout
    for addr in (a, b):
        d = jcli(addr, "collections", "describe", "cc")
        assert (d["shards"], d["replicas"], d["count"]) == (2, 2, N), d
    txt = ok(cli(b, "collections", "describe", "cc")).stdout
    assert "shards:" in txt and "replicas:" in txt
    lst = ok(cli(a, "collections", "list")).stdout.splitlines()
    head = lst[0].split()
    row = dict(zip(head, next(ln.split() for ln in lst[1:] if ln.split()[0] == "cc")))
    assert (row["SHARDS"], row["REPLICAS"], row["COUNT"]) == ("2", "2", str(N)), lst

    # a layout the cluster cannot place: three replicas on two nodes
    fails(cli(a, "collections", "create", "c3", "--dim", DIM, "--replicas", "3"), REJECTED)


def test_import_ack_logged(cluster, tmp_path):
    a, b = (n.advertise for n in cluster.nodes)
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": 1000 + i, "vector": [float(i % 7)] * DIM}) + "\n"
                            for i in range(500)))
    r = jcli(b, "import", "imp", str(path), "--create", "--shards", "2", "--replicas", "2",
             "--ack", "logged", "--batch", "100")
    assert r["rows_acknowledged"] == 500
    qt.wait_for(lambda: cluster.nodes[0].describe("imp").count == 500, 30, "imported rows on node1")
    assert jcli(a, "collections", "describe", "imp")["shards"] == 2
    caught_up(a, "imp")


CLUSTER_FAMILIES = {
    "quiver_cluster_node_info": "gauge", "quiver_cluster_replica_applied_seq": "gauge",
    "quiver_cluster_replica_lag": "gauge", "quiver_cluster_replica_state": "gauge",
    "quiver_cluster_controller": "gauge", "quiver_cluster_moves_started_total": "counter",
    "quiver_cluster_moves_in_progress": "gauge", "quiver_cluster_snapshot_bytes_total": "counter"}


def _cluster_families(e):
    return {f for f in e.types if f.startswith(CLUSTER_PREFIX)}


def test_cluster_metrics(cluster):
    caught_up(cluster.nodes[0].advertise)
    # exactly one controller, the one cluster status names
    ctl = jcli(cluster.nodes[0].advertise, "cluster", "status")["controller"]
    roles = {n.node_id: Exposition(scrape(metrics_port(n))).value("quiver_cluster_controller",
                                                                node=n.node_id)
             for n in cluster.nodes}
    assert roles == {n.node_id: float(n.node_id == ctl) for n in cluster.nodes}, (ctl, roles)
    st = cluster.status()
    last = {s.shard: s.log_last_seq for s in st.shards if s.collection == "cc"}
    for node in cluster.nodes:
        e = Exposition(scrape(metrics_port(node)))
        assert _cluster_families(e) == set(CLUSTER_FAMILIES)
        assert all(e.types[f] == CLUSTER_FAMILIES[f] and e.helps.get(f) for f in _cluster_families(e))
        assert e.find("quiver_cluster_node_info") == [({"node": node.node_id}, 1.0)]
        assert [lb for lb, _ in e.find("quiver_cluster_controller")] == [{"node": node.node_id}]
        assert e.value("quiver_cluster_moves_in_progress") == 0
        for shard in (0, 1):   # each node holds a replica of both shards
            lb = {"collection": "cc", "shard": str(shard)}
            assert e.value("quiver_cluster_replica_applied_seq", **lb) == last[shard]
            assert e.value("quiver_cluster_replica_lag", **lb) == 0
            for s in STATES:
                assert e.value("quiver_cluster_replica_state", state=s, **lb) == (s == "active")
        assert len(e.find("quiver_cluster_replica_state")) == 2 * len(STATES)

    # the lag shows while a replica is stopped and writes go on: node2 paused, then back
    node2 = cluster.nodes[1]
    port1 = metrics_port(cluster.nodes[0])
    os.kill(node2.proc.pid, signal.SIGSTOP)
    try:
        X = np.random.default_rng(8).standard_normal((50, DIM)).astype(np.float32)
        cluster.nodes[0].items.Upsert(pb.UpsertRequest(
            collection="cc", items=[qt.item(5000 + i, X[i]) for i in range(50)],
            ack=pb.ACK_LOGGED), timeout=30)
        qt.wait_for(lambda: all(Exposition(scrape(port1)).value(
            "quiver_cluster_replica_lag", collection="cc", shard=str(s)) == 0 for s in (0, 1)),
            30, "node1's replicas caught up")
    finally:
        os.kill(node2.proc.pid, signal.SIGCONT)
    caught_up(cluster.nodes[0].advertise)
    e = Exposition(scrape(metrics_port(node2)))
    new_last = {s.shard: s.log_last_seq for s in cluster.status().shards if s.collection == "cc"}
    assert sum(new_last.values()) > sum(last.values())
    for shard in (0, 1):
        assert e.value("quiver_cluster_replica_applied_seq", collection="cc",
                       shard=str(shard)) == new_last[shard]


def test_cluster_metrics_promtool_and_dashboard(cluster):
    text = scrape(metrics_port(cluster.nodes[1]))
    e = Exposition(text)
    fams = _cluster_families(e)
    used = set()
    for title, ex in dashboard_exprs()[1]:
        for ref in _FAMILY_REF.findall(ex):
            if ref.startswith(CLUSTER_PREFIX):
                assert ref in fams, "panel %r queries %s, which a cluster node does not serve" % (
                    title, ref)
                used.add(ref)
    assert used == fams, "cluster families without a panel: %s" % sorted(fams - used)
    qt.require_tool(PROMTOOL, "prometheus")
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        "promtool check metrics: rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr)


# ------------------------------------------------------------- drain, rebalance
def _replicas_on(st, node):
    return sum(r["node"] == node for s in st["shards"] for r in s["replicas"])


def _settled(st, coll, replicas=2):
    shards = [s for s in st["shards"] if s["collection"] == coll]
    return shards and all(len(s["replicas"]) == replicas and all(
        r["state"] == "ACTIVE" and not r["leaving"] for r in s["replicas"]) for s in shards)


def _controller_metrics(nodes):
    """{node id: (quiver_cluster_controller, moves_started_total, moves_in_progress,
    snapshot_bytes_total)} from each node's /metrics."""
    out = {}
    for n in nodes:
        e = Exposition(scrape(metrics_port(n)))
        out[n.node_id] = (e.value("quiver_cluster_controller", node=n.node_id),
                          e.value("quiver_cluster_moves_started_total"),
                          e.value("quiver_cluster_moves_in_progress"),
                          e.value("quiver_cluster_snapshot_bytes_total"))
    return out


def test_drain_wait_cancel_rebalance(cluster_factory):  # noqa: F811
    if not os.path.exists(QUIVER):
        pytest.fail("quiver binary not found at %s (build it, or set QUIVER_BIN)" % QUIVER,
                    pytrace=False)
    cl = cluster_factory(nodes=3, nats=1, node_args=["--metrics-listen", "127.0.0.1:0"])
    ids = {n.node_id for n in cl.nodes}
    a = cl.nodes[0].advertise
    d = jcli(a, "collections", "create", "dr", "--dim", DIM, "--shards", "2", "--replicas", "2")
    assert (d["shards"], d["replicas"]) == (2, 2)
    X = np.random.default_rng(11).standard_normal((400, DIM)).astype(np.float32)
    for s in range(0, 400, 100):
        cl.nodes[0].upsert("dr", [qt.item(i, X[i]) for i in range(s, s + 100)])
    st = caught_up(a, "dr")
    assert st["controller"] in ids and st["draining"] == []
    # a node holding replicas, not the one the CLI talks to
    target = next(n.node_id for n in cl.nodes[1:] if _replicas_on(st, n.node_id) > 0)
    held = _replicas_on(st, target)

    # drain without --wait: the replicas it holds now
    r = ok(cli(a, "cluster", "drain", target))
    assert r.stdout.startswith("draining node %s: " % target), r.stdout
    assert ("%d replica" % held) in r.stdout or "no replica" in r.stdout, r.stdout
    # again with --wait (the same drain): returns once the node holds none
    r = ok(cli(a, "cluster", "drain", target, "--wait", timeout=240))
    lines = r.stdout.splitlines()
    assert lines[-1].startswith("node %s drained: it holds no replica (" % target), r.stdout
    for ln in r.stderr.splitlines():   # progress, one line per change (stderr is no terminal)
        assert re.match(r"^draining %s: \d+ replicas? left, \d+ leaving, \d+ not ACTIVE \(\d+\.\ds\)$"
                        % re.escape(target), ln), r.stderr
    st = jcli(a, "cluster", "status")
    assert st["draining"] == [target], st
    assert _replicas_on(st, target) == 0, st
    assert _settled(st, "dr"), st
    assert all(n["alive"] for n in st["nodes"])
    txt = ok(cli(a, "cluster", "status")).stdout
    assert "draining: %s\n" % target in txt and "controller: %s\n" % st["controller"] in txt, txt
    assert not [ln for ln in txt.splitlines() if ln.strip().startswith("dr ") and target in ln.split()], txt
    # --json, --wait on a drained node: at once
    j = jcli(a, "cluster", "drain", target, "--wait")
    assert (j["node"], j["draining"], j["replicas_left"]) == (target, True, 0) and j["seconds"] < 30, j
    # the items are all there, through every node
    for n in cl.nodes:
        qt.wait_for(lambda: n.describe("dr").count == 400, 30, "400 items through %s" % n.node_id)

    # metrics: one controller; it started the moves; none in progress now
    m = _controller_metrics(cl.nodes)
    ctl = [nid for nid, v in m.items() if v[0] == 1]
    assert len(ctl) == 1 and all(v[0] in (0, 1) for v in m.values()), m
    assert ctl[0] == st["controller"], (m, st["controller"])
    assert m[ctl[0]][1] > 0, m
    assert all(v[2] == 0 for v in m.values()), m
    assert all(v[3] >= 0 for v in m.values()), m
    qt.require_tool(PROMTOOL, "prometheus")
    for n in cl.nodes:
        pr = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape(metrics_port(n)),
                            capture_output=True, text=True, timeout=60)
        assert pr.returncode == 0 and not pr.stdout.strip() and not pr.stderr.strip(), \
            "promtool check metrics: rc %d\n%s%s" % (pr.returncode, pr.stdout, pr.stderr)

    # taken back, then a balancing pass gives it replicas again
    r = ok(cli(a, "cluster", "drain", target, "--cancel"))
    assert r.stdout == "node %s taken back (no longer drained): it holds 0 replicas\n" % target, r.stdout
    assert jcli(a, "cluster", "status")["draining"] == []
    r = ok(cli(a, "cluster", "rebalance"))
    assert r.stdout.startswith("rebalance requested"), r.stdout
    assert jcli(a, "cluster", "rebalance") == {"rebalance": "requested"}
    last = {}

    def back():
        last["st"] = st_ = jcli(a, "cluster", "status")
        return _replicas_on(st_, target) >= 1 and _settled(st_, "dr")
    qt.wait_for(back, 120, lambda: "%s given replicas again: %s" % (target, last.get("st")), interval=0.5)
    assert jcli(a, "cluster", "drain", target, "--cancel")["draining"] is False

    # an unknown node: NOT_FOUND (exit 4), as the server says
    fails(cli(a, "cluster", "drain", "nope"), NOT_FOUND, "NOT_FOUND", "nope")
    fails(cli(a, "cluster", "drain", "nope", "--wait"), NOT_FOUND, "NOT_FOUND", "nope")


def test_cluster_backup_and_restore_through_the_cli(cluster_factory, tmp_path):  # noqa: F811
    """quiver backup FILE against a cluster node, quiver cluster restore FILE into another
    cluster: the same collections (shards, replicas) and items."""
    def run(addr, *args):
        r = subprocess.run([QUIVER, "--addr", addr, "--json"] + list(args), capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, (args, r.returncode, r.stderr)
        return json.loads(r.stdout) if r.stdout.strip() else None
    a = cluster_factory(nodes=2, nats=1)
    a.nodes[0].collections.Create(pb.CreateCollectionRequest(name="cb", dim=4, metric=pb.L2, shards=2, replicas=2))
    a.nodes[0].items.Upsert(pb.UpsertRequest(collection="cb", items=[
        qt.item(i, [i, 1, 2, 3], {"k": "v%d" % i}) for i in range(300)]))
    f = str(tmp_path / "cluster.tar")
    run(a.nodes[1].addr, "backup", f)
    b = cluster_factory(nodes=2, nats=1)
    out = run(b.nodes[0].addr, "cluster", "restore", f)
    assert out["collections"] == 1 and out["items"] == 300, out
    info = b.nodes[1].collections.Describe(pb.DescribeCollectionRequest(name="cb"))
    assert info.count == 300 and info.shards == 2 and info.replicas == 2
    got = b.nodes[1].items.Get(pb.GetItemsRequest(collection="cb", ids=[7, 299]))
    assert [qt.attrs_of(it) for it in got.items] == [{"k": ("string_value", "v7")}, {"k": ("string_value", "v299")}]
    r = subprocess.run([QUIVER, "--addr", b.nodes[0].addr, "cluster", "restore", f], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "ALREADY_EXISTS" in r.stderr and "cb" in r.stderr, r.stderr
