"""Cluster operations (issue 19): the controller places replicas as nodes join, die and drain;
new replicas catch up by snapshot where the log was trimmed; the log is trimmed below what
every replica applied. Real NATS, etcd and quiverd processes on loopback."""
import threading
import time

import grpc
import numpy as np

from cluster_lib import cluster_factory  # noqa: F401  (the fixture)
from quiver_testlib import SC, expect_error, item, pb, wait_for

DIM = 8


def vq(v):
    return pb.Query(vector=pb.Vector(values=[float(x) for x in v]))


def status(node):
    return node.admin.ClusterStatus(pb.ClusterStatusRequest(), timeout=10)


def loads(st, alive_only=True):
    alive = {n.id for n in st.nodes if n.alive or not alive_only}
    out = {n: 0 for n in alive}
    for s in st.shards:
        for r in s.replicas:
            out[r.node] = out.get(r.node, 0) + 1
    return out


def settled(st, replicas):
    """Every shard has exactly `replicas` ACTIVE replicas, none leaving, all caught up."""
    for s in st.shards:
        if len(s.replicas) != replicas:
            return False
        for r in s.replicas:
            if r.state != pb.REPLICA_ACTIVE or r.leaving or r.applied_seq != s.log_last_seq:
                return False
    return True


class Writer:
    """Upserts batches in a thread until stopped; remembers what was acknowledged."""

    def __init__(self, node, coll, X, start=0, batch=20):
        self.node, self.coll, self.X, self.batch = node, coll, X, batch
        self.next, self.acked, self.errors = start, [], []
        self.stop_ = threading.Event()
        self.go = threading.Event()
        self.go.set()
        self.idle = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def pause(self):
        """Returns once no batch is in flight: what is acknowledged is then all there is."""
        self.idle.clear()
        self.go.clear()
        self.idle.wait(120)

    def resume(self):
        self.go.set()

    def run(self):
        while not self.stop_.is_set() and self.next + self.batch <= len(self.X):
            if not self.go.is_set():
                self.idle.set()
                self.go.wait()
            ids = list(range(self.next, self.next + self.batch))
            try:
                self.node.items.Upsert(pb.UpsertRequest(collection=self.coll, items=[
                    item(i, self.X[i]) for i in ids]), timeout=60)
                self.acked.extend(ids)
            except grpc.RpcError as e:
                self.errors.append((ids[0], e.code(), e.details()))
            self.next += self.batch
        self.idle.set()  # done: nothing in flight from now on

    def stop(self):
        self.stop_.set()
        self.go.set()
        self.t.join(120)
        return self.acked


def all_there(nodes, coll, ids):
    for node in nodes:
        got = node.items.Get(pb.GetItemsRequest(collection=coll, ids=ids), timeout=30)
        assert len(got.items) == len(ids), (node.node_id, len(got.items), len(ids))


def brute(X, ids, q, k):
    ids = np.array(sorted(ids))
    d = ((X[ids] - q) ** 2).sum(1)
    return [int(ids[j]) for j in np.argsort(d, kind="stable")[:k]]


def test_node_joins_during_import_and_gets_replicas_by_snapshot(cluster_factory):  # noqa: F811
    cl = cluster_factory(nodes=4, nats=1, node_args=["--rebalance"])  # the default, said
    n0 = cl.nodes[0]
    n0.collections.Create(pb.CreateCollectionRequest(name="j", dim=DIM, metric=pb.L2, shards=4, replicas=2))
    X = np.random.default_rng(4).standard_normal((20000, DIM)).astype(np.float32)
    w = Writer(n0, "j", X)
    wait_for(lambda: len(w.acked) >= 1500, 60, "1500 items acknowledged")
    # the log is trimmed below what every replica applied (the controller, every 5 s)
    wait_for(lambda: cl.nats.stream_info("QV_j_0")["state"]["first_seq"] > 1, 30, "shard 0's log trimmed")
    new = cl.add_node()
    cl.wait_ready(60)
    wait_for(lambda: loads(status(n0)).get(new.node_id, 0) >= 1, 60, "the new node given replicas")

    def balanced():
        ld = loads(status(n0))
        return settled(status(n0), 2) and max(ld.values()) - min(ld.values()) <= 1
    # searches stay exact while replicas move (flat: brute force over what was acknowledged,
    # with the writer paused so that nothing is in flight), through every node
    checks = 0
    while not balanced() or checks < 3:
        w.pause()
        for node in cl.nodes:
            q = np.random.default_rng(len(w.acked) + checks).standard_normal(DIM).astype(np.float32)
            hits = node.search.Search(pb.SearchRequest(collection="j", queries=[vq(q)], k=5),
                                      timeout=30).results[0].hits
            assert [h.id for h in hits] == brute(X, w.acked, q, 5), (node.node_id, checks)
        w.resume()
        checks += 1
        assert checks < 400, "the map did not settle balanced: %s" % status(n0)
        time.sleep(0.2)
    acked = w.stop()
    assert not w.errors, w.errors[:3]
    all_there(cl.nodes, "j", acked)
    st = status(n0)
    assert settled(st, 2), st
    assert loads(st)[new.node_id] >= 1
    assert "installed a snapshot" in new.stderr_text(), "the new node replayed instead of installing a snapshot"
    q = X[123] + 0.01
    got = [h.id for h in new.search.Search(pb.SearchRequest(collection="j", queries=[vq(q)], k=10)).results[0].hits]
    assert got == brute(X, acked, q, 10)


def test_moved_replica_takes_its_peers_index_file(cluster_factory):  # noqa: F811
    """A replica that catches up by snapshot also gets the source replica's index file: the new
    node refills its trained lists with the items it installed (no k-means, no calibration)
    and answers IVF searches right."""
    cl = cluster_factory(nodes=2, nats=1)
    n0 = cl.nodes[0]
    n0.collections.Create(pb.CreateCollectionRequest(name="ix", dim=DIM, metric=pb.L2, shards=1, replicas=1,
                                                     index=pb.IndexSpec(kind="ivf_flat", nlist=16)))
    X = np.random.default_rng(9).standard_normal((3500, DIM)).astype(np.float32)
    for s in range(0, 3000, 500):
        n0.items.Upsert(pb.UpsertRequest(collection="ix", items=[item(i, X[i]) for i in range(s, s + 500)]))

    def info():
        return n0.collections.Describe(pb.DescribeCollectionRequest(name="ix")).index
    wait_for(lambda: info().kind == "ivf_flat" and not info().rebuilding and info().count == 3000, 60,
             "the IVF index built on the first node")
    # rebuilt with another spec: it becomes the collection's, so the moved replica takes the file
    msgs = list(n0.admin.RebuildIndex(pb.RebuildIndexRequest(collection="ix", index=pb.IndexSpec(
        kind="ivf_flat", nlist=8)), timeout=120))
    assert msgs[-1].phase == "done" and msgs[-1].index.nlist == 8, msgs[-1]
    # written after training: a replica that trained its own would say trained_for 3500
    n0.items.Upsert(pb.UpsertRequest(collection="ix", items=[item(i, X[i]) for i in range(3000, 3500)]))
    before = info()
    assert before.trained_for <= 3000 and before.count == 3500
    holder = next(n for n in cl.nodes if loads(status(n0)).get(n.node_id, 0) == 1)
    other = next(n for n in cl.nodes if n is not holder)
    last = status(n0).shards[0].log_last_seq
    wait_for(lambda: cl.nats.stream_info("QV_ix_0")["state"]["first_seq"] > last, 30, "the log trimmed")
    n0.admin.DrainNode(pb.DrainNodeRequest(node=holder.node_id))
    wait_for(lambda: loads(status(n0)).get(other.node_id, 0) == 1 and settled(status(n0), 1), 60,
             "the replica moved")
    wait_for(lambda: "refills the index file" in other.stderr_text(), 30, "the index file fetched")
    wait_for(lambda: info().kind == "ivf_flat" and not info().rebuilding and info().count == 3500, 60,
             "the moved replica's IVF index")
    after = info()
    assert after.nlist == 8 and after.spec.nlist == 8 and after.trained_for == before.trained_for
    assert [(p.recall, p.nprobe) for p in after.recall_table] == [(p.recall, p.nprobe) for p in before.recall_table]
    assert after.default_nprobe == before.default_nprobe
    err = other.stderr_text()
    assert "index file" in err and "not used" not in err, err[-2000:]
    for i in (5, 1234, 2999):  # nprobe = nlist: every list, so exact
        q = X[i] + 0.01
        hits = n0.search.Search(pb.SearchRequest(collection="ix", queries=[vq(q)], k=10, nprobe=8)).results[0].hits
        assert [h.id for h in hits] == brute(X, range(3500), q, 10)


def test_dead_node_replaced_after_replace_after(cluster_factory):  # noqa: F811
    cl = cluster_factory(nodes=3, nats=1, node_args=["--replace-after", "2", "--no-rebalance"])
    n0, n1, n2 = cl.nodes
    n0.collections.Create(pb.CreateCollectionRequest(name="d", dim=DIM, metric=pb.L2, shards=2, replicas=2))
    X = np.random.default_rng(5).standard_normal((500, DIM)).astype(np.float32)
    n0.items.Upsert(pb.UpsertRequest(collection="d", items=[item(i, X[i]) for i in range(500)]))
    victim = next(n for n in cl.nodes if n is not n0 and loads(status(n0)).get(n.node_id, 0) > 0)
    victim.kill()

    def replaced():
        st = status(n0)
        return settled(st, 2) and all(r.node != victim.node_id for s in st.shards for r in s.replicas)
    wait_for(replaced, 60, "the dead node's replicas placed on the others")
    all_there([n for n in cl.nodes if n is not victim], "d", list(range(500)))
    # it comes back: its replicas were replaced, so it drops them (not given new ones:
    # --no-rebalance) and still answers as a router
    victim.start()
    wait_for(lambda: "no collection holds it here any more" in victim.stderr_text(), 60,
             "the returning node dropping its stale replicas")
    assert loads(status(n0)).get(victim.node_id, 0) == 0
    assert victim.collections.Describe(pb.DescribeCollectionRequest(name="d")).count == 500


def test_controller_moves_on_when_its_node_dies(cluster_factory):  # noqa: F811
    cl = cluster_factory(nodes=3, nats=1)
    ctl = status(cl.nodes[0]).controller
    assert ctl in {n.node_id for n in cl.nodes}
    victim = next(n for n in cl.nodes if n.node_id == ctl)
    other = next(n for n in cl.nodes if n is not victim)
    victim.kill()
    t0 = time.monotonic()
    wait_for(lambda: status(other).controller not in ("", ctl), 30, "another controller")
    took = time.monotonic() - t0
    assert took < 15, took  # the lease's TTL (5 s) and a tick
    # the new controller does the work: a collection needing a replica gets it
    other.collections.Create(pb.CreateCollectionRequest(name="after", dim=DIM, metric=pb.L2, shards=1, replicas=2))
    wait_for(lambda: settled(status(other), 2), 60, "replicas ACTIVE under the new controller")


def test_controller_dies_mid_move_and_the_next_one_finishes_it(cluster_factory):  # noqa: F811
    """A drain's move is state in etcd, not in the controller: killed while a replica is
    being moved, the next controller finishes the move (the old replica removed only once
    the new one is ACTIVE) and the drain completes; the dead node's replicas are replaced."""
    cl = cluster_factory(nodes=4, nats=1, node_args=["--replace-after", "3"])
    ctl = status(cl.nodes[0]).controller
    ctl_node = next(n for n in cl.nodes if n.node_id == ctl)
    via = next(n for n in cl.nodes if n is not ctl_node)
    via.collections.Create(pb.CreateCollectionRequest(name="mm", dim=32, metric=pb.L2, shards=2, replicas=2))
    X = np.random.default_rng(11).standard_normal((20000, 32)).astype(np.float32)
    for s in range(0, len(X), 2000):
        via.items.Upsert(pb.UpsertRequest(collection="mm", items=[item(i, X[i]) for i in range(s, s + 2000)]),
                         timeout=60)
    held = loads(status(via))
    target = next(n for n in cl.nodes if n is not ctl_node and held.get(n.node_id, 0) >= 1)
    via = next(n for n in cl.nodes if n not in (ctl_node, target))
    via.admin.DrainNode(pb.DrainNodeRequest(node=target.node_id))

    def moving():
        st = status(via)
        return any(r.leaving or r.state == pb.REPLICA_CATCHING_UP for s in st.shards for r in s.replicas)
    wait_for(moving, 30, "a move under way")
    ctl_node.kill()
    wait_for(lambda: status(via).controller not in ("", ctl), 30, "another controller")

    def done():
        st = status(via)
        gone = {target.node_id, ctl}
        return settled(st, 2) and all(r.node not in gone for s in st.shards for r in s.replicas)
    wait_for(done, 120, lambda: "the move finished and the dead node replaced: %s" % status(via))
    assert via.admin.DrainNode(pb.DrainNodeRequest(node=target.node_id)).replicas_left == 0
    all_there([n for n in cl.nodes if n is not ctl_node], "mm", list(range(len(X))))


def test_drain_under_reads_and_writes(cluster_factory):  # noqa: F811
    cl = cluster_factory(nodes=3, nats=1)
    n0, n1, n2 = cl.nodes
    n0.collections.Create(pb.CreateCollectionRequest(name="dr", dim=DIM, metric=pb.L2, shards=2, replicas=2))
    X = np.random.default_rng(6).standard_normal((8000, DIM)).astype(np.float32)
    n0.items.Upsert(pb.UpsertRequest(collection="dr", items=[item(i, X[i]) for i in range(200)]))
    target = next(n for n in (n1, n2) if loads(status(n0)).get(n.node_id, 0) > 0)
    w = Writer(n0, "dr", X, start=200)
    read_errors = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                n0.search.Search(pb.SearchRequest(collection="dr", queries=[vq(X[7])], k=3), timeout=20)
            except grpc.RpcError as e:
                read_errors.append((e.code(), e.details()))
            time.sleep(0.02)
    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    r = n0.admin.DrainNode(pb.DrainNodeRequest(node=target.node_id))
    assert r.replicas_left >= 1
    wait_for(lambda: n0.admin.DrainNode(pb.DrainNodeRequest(node=target.node_id)).replicas_left == 0
             and settled(status(n0), 2), 120, "the node drained")
    stop.set()
    rt.join(30)
    acked = w.stop()
    assert not read_errors, read_errors[:3]
    assert not w.errors, w.errors[:3]
    st = status(n0)
    assert target.node_id in st.draining
    assert all(r.node != target.node_id for s in st.shards for r in s.replicas)
    all_there([n0, n1, n2], "dr", list(range(200)) + acked)
    # taken back: it can hold replicas again (a rebalance moves some to it)
    n0.admin.DrainNode(pb.DrainNodeRequest(node=target.node_id, cancel=True))
    n0.admin.Rebalance(pb.RebalanceRequest())
    wait_for(lambda: loads(status(n0)).get(target.node_id, 0) >= 1 and settled(status(n0), 2), 120,
             "the node given replicas again")
    expect_error(lambda: n0.admin.DrainNode(pb.DrainNodeRequest(node="nope")), SC.NOT_FOUND, "nope")


def test_log_trimmed_below_what_every_replica_applied(cluster_factory):  # noqa: F811
    cl = cluster_factory(nodes=2, nats=1)
    n0 = cl.nodes[0]
    n0.collections.Create(pb.CreateCollectionRequest(name="t", dim=DIM, metric=pb.L2, shards=1, replicas=2))
    X = np.random.default_rng(7).standard_normal((3000, DIM)).astype(np.float32)
    for s in range(0, 3000, 100):
        n0.items.Upsert(pb.UpsertRequest(collection="t", items=[item(i, X[i]) for i in range(s, s + 100)]))
    last = status(n0).shards[0].log_last_seq
    wait_for(lambda: cl.nats.stream_info("QV_t_0")["state"]["first_seq"] == last + 1 or
             cl.nats.stream_info("QV_t_0")["state"]["messages"] == 0, 30,
             "the stream holds nothing every replica has applied")
    # a replica stopped keeps its part of the log
    n1 = cl.nodes[1]
    n1.kill()
    for s in range(0, 200, 100):
        n0.items.Upsert(pb.UpsertRequest(collection="t", items=[item(5000 + i, X[i]) for i in range(s, s + 100)]),
                        timeout=30)
    time.sleep(7)
    assert cl.nats.stream_info("QV_t_0")["state"]["messages"] >= 2
    n1.start()
    wait_for(lambda: settled(status(n0), 2), 60, "the restarted replica caught up from the log")
    all_there([n0, n1], "t", list(range(3000)) + [5000 + i for i in range(200)])


def test_cluster_status_and_single_node_refusals(cluster_factory, make_server):  # noqa: F811
    single = make_server()
    expect_error(lambda: single.admin.DrainNode(pb.DrainNodeRequest(node="x")), SC.FAILED_PRECONDITION, "cluster mode")
    expect_error(lambda: single.admin.Rebalance(pb.RebalanceRequest()), SC.FAILED_PRECONDITION, "cluster mode")
    st = single.admin.ClusterStatus(pb.ClusterStatusRequest())
    assert not st.clustered and st.controller == ""


def test_full_cluster_restart_loses_nothing(cluster_factory):  # noqa: F811
    """kill -9 of every process (quiverd, NATS, etcd), then all started again on their
    folders: every acknowledged write is back, the map is the same, reads and writes work."""
    cl = cluster_factory(nodes=3, nats=3)
    n0 = cl.nodes[0]
    n0.collections.Create(pb.CreateCollectionRequest(name="r", dim=DIM, metric=pb.L2, shards=2, replicas=2))
    X = np.random.default_rng(8).standard_normal((2000, DIM)).astype(np.float32)
    for s in range(0, 1500, 100):
        n0.items.Upsert(pb.UpsertRequest(collection="r", items=[item(i, X[i]) for i in range(s, s + 100)]))
    before = status(n0)
    for n in cl.nodes:
        n.kill()
    for i in range(3):
        cl.nats.kill(i)
    cl.etcd.kill()
    cl.etcd.start()
    cl.etcd.wait_ready(30)
    for i in range(3):
        cl.nats.start(i)
    cl.nats.wait_ready(60)
    for n in cl.nodes:
        n.start()
    cl.wait_ready(90)
    wait_for(lambda: settled(status(n0), 2), 90, "every replica ACTIVE and caught up after the restart")
    after = status(n0)
    assert sorted((s.collection, s.shard, sorted(r.node for r in s.replicas)) for s in after.shards) == \
        sorted((s.collection, s.shard, sorted(r.node for r in s.replicas)) for s in before.shards)
    all_there(cl.nodes, "r", list(range(1500)))
    cl.nodes[2].items.Upsert(pb.UpsertRequest(collection="r", items=[item(i, X[i]) for i in range(1500, 2000)]),
                             timeout=60)
    all_there(cl.nodes, "r", list(range(2000)))
    q = X[1777] + 0.001
    got = [h.id for h in cl.nodes[1].search.Search(pb.SearchRequest(collection="r", queries=[vq(q)], k=5)).results[0].hits]
    assert got == brute(X, range(2000), q, 5)


def test_cluster_backup_during_writes_restores_into_a_fresh_cluster(cluster_factory):  # noqa: F811
    from quiver_testlib import attrs_of
    src = cluster_factory(nodes=2, nats=1)
    a0 = src.nodes[0]
    a0.collections.Create(pb.CreateCollectionRequest(name="bk", dim=DIM, metric=pb.COSINE, shards=2, replicas=2,
                                                     index=pb.IndexSpec(kind="flat")))
    a0.collections.Create(pb.CreateCollectionRequest(name="bk2", dim=DIM, metric=pb.L2, shards=1, replicas=1))
    X = np.random.default_rng(9).standard_normal((6000, DIM)).astype(np.float32)
    a0.items.Upsert(pb.UpsertRequest(collection="bk", items=[
        item(i, X[i], {"c": "x%d" % (i % 5), "n": i, "t": ["a", "b"]}) for i in range(1000)]))
    a0.items.Upsert(pb.UpsertRequest(collection="bk2", items=[item(i, X[i]) for i in range(50)]))
    w = Writer(src.nodes[1], "bk", X, start=1000)
    wait_for(lambda: len(w.acked) >= 200, 60, "writes under way")
    before = set(range(1000)) | set(w.acked)
    data = b"".join(c.data for c in a0.admin.Backup(pb.BackupRequest(), timeout=120))
    acked = w.stop()
    assert not w.errors
    import io
    import json
    import tarfile
    tf = tarfile.open(fileobj=io.BytesIO(data))
    man = json.loads(tf.extractfile("manifest.json").read())
    assert man["format"] == "quiver-cluster-backup" and {c["name"] for c in man["collections"]} == {"bk", "bk2"}

    dst = cluster_factory(nodes=2, nats=1)
    b0 = dst.nodes[1]

    def chunks(blob, size=1 << 20):
        for s in range(0, len(blob), size):
            yield pb.RestoreChunk(data=blob[s:s + size])
    # a damaged archive is refused before anything is written
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    try:
        b0.admin.Restore(chunks(bytes(bad)), timeout=120)
        raise AssertionError("a damaged archive was restored")
    except grpc.RpcError as e:
        assert e.code() in (SC.DATA_LOSS, SC.INVALID_ARGUMENT), (e.code(), e.details())
    assert len(b0.collections.List(pb.ListCollectionsRequest()).collections) == 0
    r = b0.admin.Restore(chunks(data), timeout=300)
    assert r.collections == 2 and r.items >= len(before) + 50, r
    info = dst.nodes[0].collections.Describe(pb.DescribeCollectionRequest(name="bk"))
    assert info.shards == 2 and info.replicas == 2 and info.metric == pb.COSINE

    def scan(node, coll):
        return {it.id: it for m in node.items.Scan(pb.ScanRequest(collection=coll, with_vectors=True))
                for it in m.items}
    got, now = scan(dst.nodes[0], "bk"), scan(a0, "bk")
    assert before <= set(got), sorted(before - set(got))[:10]  # acknowledged before the backup: all there
    assert set(got) <= set(now)
    for i, it in got.items():  # item by item: the same vector and attributes
        assert list(it.vector) == list(now[i].vector) and attrs_of(it) == attrs_of(now[i]), i
    assert len(scan(dst.nodes[1], "bk2")) == 50
    # a second restore meets the collections: refused, nothing changed
    expect_error(lambda: b0.admin.Restore(chunks(data), timeout=120), SC.ALREADY_EXISTS, "bk")
    _ = acked


def test_restore_waits_for_replicas_to_open(cluster_factory, monkeypatch):  # noqa: F811
    """Replicas open as their nodes' etcd watches see the collections: on nodes whose
    watch lags (quiverd-test's QUIVER_TEST_REPLICA_OPEN_DELAY_MS), a restore still
    answers only once every restored shard serves, and every replica is ACTIVE (a write
    that found a replica not yet open used to set it CATCHING_UP, and the restored
    collection answered UNAVAILABLE right after the reply)."""
    src = cluster_factory(nodes=2, nats=1)
    a0 = src.nodes[0]
    X = np.random.default_rng(12).standard_normal((300, DIM)).astype(np.float32)
    for name, shards in (("ra", 2), ("rb", 1)):
        a0.collections.Create(pb.CreateCollectionRequest(name=name, dim=DIM, metric=pb.L2, shards=shards,
                                                         replicas=2 if shards == 2 else 1))
        a0.items.Upsert(pb.UpsertRequest(collection=name, items=[item(i, X[i]) for i in range(300)]))
    data = b"".join(c.data for c in a0.admin.Backup(pb.BackupRequest(), timeout=120))
    monkeypatch.setenv("QUIVER_TEST_REPLICA_OPEN_DELAY_MS", "1500")  # the nodes below: quiverd-test
    dst = cluster_factory(nodes=2, nats=1)
    b1 = dst.nodes[1]
    r = b1.admin.Restore(iter([pb.RestoreChunk(data=data)]), timeout=120)
    assert r.collections == 2 and r.items == 600, r
    for node in dst.nodes:  # at once, through either node
        for name in ("ra", "rb"):
            got = {it.id for m in node.items.Scan(pb.ScanRequest(collection=name)) for it in m.items}
            assert got == set(range(300)), (name, len(got))
    states = [rep.state for sh in b1.admin.ClusterStatus(pb.ClusterStatusRequest()).shards for rep in sh.replicas]
    assert len(states) == 5 and all(st == pb.REPLICA_ACTIVE for st in states), states


def test_log_size_cap_and_a_replica_behind_it(cluster_factory):  # noqa: F811
    """--log-max-bytes caps each stream; a replica that was away while the cap dropped
    entries it needs installs a snapshot instead of missing them."""
    cl = cluster_factory(nodes=2, nats=1, node_args=["--log-max-bytes", "1M"])
    n0, n1 = cl.nodes
    n0.collections.Create(pb.CreateCollectionRequest(name="cap", dim=64, metric=pb.L2, shards=1, replicas=2))
    X = np.random.default_rng(10).standard_normal((12000, 64)).astype(np.float32)
    n0.items.Upsert(pb.UpsertRequest(collection="cap", items=[item(i, X[i]) for i in range(1000)]))
    n1.kill()
    for s in range(1000, 12000, 500):  # ~3 MB of entries: the stream keeps ~1 MB of them
        n0.items.Upsert(pb.UpsertRequest(collection="cap", items=[item(i, X[i]) for i in range(s, s + 500)]),
                        timeout=30)
    info = cl.nats.stream_info("QV_cap_0")
    assert info["state"]["bytes"] <= (1 << 20) + (300 << 10), info["state"]
    assert info["state"]["first_seq"] > 2, info["state"]
    n1.start()
    wait_for(lambda: settled(status(n0), 2), 90, "the replica back and caught up")
    assert "installing a snapshot" in n1.stderr_text() or "installed a snapshot" in n1.stderr_text()
    all_there([n1], "cap", list(range(12000)))


def test_cluster_flags_checked_at_start(tmp_path):
    """--rebalance[=on|off] and --no-rebalance are cluster flags: bad values and a cluster
    flag without the rest of cluster mode are usage errors (exit 2), never ignored."""
    import subprocess
    from quiver_testlib import QUIVERD

    def run(*args):
        return subprocess.run([QUIVERD, "--data", str(tmp_path / "d"), *args], capture_output=True,
                              text=True, timeout=30)
    r = run("--rebalance=maybe")
    assert r.returncode == 2 and "--rebalance=maybe" in r.stderr, r.stderr
    for flag in ("--rebalance", "--rebalance=off", "--no-rebalance", "--replace-after=5"):
        r = run(flag)
        assert r.returncode == 2 and "--cluster-etcd" in r.stderr, (flag, r.stderr)
    assert "--rebalance[=on|off]" in run("--help").stdout
