"""The `quiver` CLI and /metrics against a real cluster (issue 18): NATS JetStream (one
server), etcd and two quiverd nodes on loopback, started by cluster_lib's fixture.

- `quiver collections create --shards 2 --replicas 2` makes a 2 x 2 collection that
  `describe` and `list` show as such on either node;
- `quiver cluster status --json` lists both nodes alive and both shards with two ACTIVE
  replicas each, caught up with their log; the table names both nodes;
- `quiver import --ack logged` returns once the log holds the rows, which every node
  then serves;
- each node's /metrics has its replicas' applied sequence, lag and state and its node
  id; promtool accepts the text; the Grafana dashboard's cluster panels query families
  a cluster node serves, and every cluster family has a panel.

The binaries are $QUIVER_BIN/quiver and quiverd. Run with /usr/bin/python3 -m pytest.
"""
import json
import os
import signal
import subprocess

import numpy as np
import pytest

import quiver_testlib as qt
from cluster_lib import cluster_factory  # noqa: F401  (the fixture)
from quiver_testlib import pb
from test_cli import QUIVER, cli, fails, jcli, ok, REJECTED
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
        assert set(s["replicas"][0]) == {"node", "state", "applied_seq", "lag"}
        total += s["log_last_seq"]
    assert total >= 2 * 3   # three upserts, each touching both shards

    # the same from the other node, and the table
    st_b = jcli(b, "cluster", "status")
    assert {n["id"] for n in st_b["nodes"]} == NODES
    txt = ok(cli(a, "cluster", "status")).stdout
    for w in ["node1", "node2", a, b, "cc", "ACTIVE", "LOG_LAST_SEQ", "APPLIED_SEQ", "LAG", "nodes: 2 (2 alive)",
              "shards: 2 (4 replicas, 4 ACTIVE)"]:
        assert w in txt, (w, txt)
    rows = [ln.split() for ln in txt.splitlines() if ln.strip().startswith("cc ")]
    assert len(rows) == 4, txt
    for r in rows:   # COLLECTION SHARD LOG_LAST_SEQ NODE STATE APPLIED_SEQ LAG
        assert r[3] in NODES and r[4] == "ACTIVE" and r[2] == r[5] and r[6] == "0", r

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


def _cluster_families(e):
    return {f for f in e.types if f.startswith(CLUSTER_PREFIX)}


def test_cluster_metrics(cluster):
    caught_up(cluster.nodes[0].advertise)
    st = cluster.status()
    last = {s.shard: s.log_last_seq for s in st.shards if s.collection == "cc"}
    for node in cluster.nodes:
        e = Exposition(scrape(metrics_port(node)))
        assert _cluster_families(e) == {
            "quiver_cluster_node_info", "quiver_cluster_replica_applied_seq",
            "quiver_cluster_replica_lag", "quiver_cluster_replica_state"}
        assert all(e.types[f] == "gauge" and e.helps.get(f) for f in _cluster_families(e))
        assert e.find("quiver_cluster_node_info") == [({"node": node.node_id}, 1.0)]
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
