"""Collections service: Create/Describe/List/Drop, errors, and persistence across restart."""
import numpy as np
import pytest

import quiver_testlib as qt
from quiver_testlib import SC, expect_error, pb


def names_of(server):
    return sorted(c.name for c in server.collections.List(pb.ListCollectionsRequest()).collections)


@pytest.mark.parametrize("metric,dim", [(pb.L2, 3), (pb.INNER_PRODUCT, 17), (pb.COSINE, 128)],
                         ids=["L2", "IP", "COSINE"])
def test_round_trip_per_metric(server, metric, dim):
    name = "coll_" + pb.Metric.Name(metric).lower()
    info = server.create(name, dim, metric)
    assert info.name == name
    assert info.dim == dim
    assert info.metric == metric
    assert info.count == 0
    d = server.describe(name)
    assert (d.name, d.dim, d.metric, d.count) == (name, dim, metric, 0)
    # auto index is exact while small
    assert d.index.kind == "flat", d.index
    assert d.index.count == 0
    lst = server.collections.List(pb.ListCollectionsRequest()).collections
    assert [(c.name, c.dim, c.metric) for c in lst] == [(name, dim, metric)]
    server.collections.Drop(pb.DropCollectionRequest(name=name))
    expect_error(lambda: server.describe(name), SC.NOT_FOUND, name)
    assert names_of(server) == []


def test_several_collections_list_and_drop(server):
    specs = {"a": (4, pb.L2), "b.x-y_Z9": (8, pb.INNER_PRODUCT), "-dash": (1, pb.COSINE),
             "d" * 128: (4096, pb.L2)}
    for n, (dim, m) in specs.items():
        server.create(n, dim, m)
    lst = {c.name: (c.dim, c.metric) for c in
           server.collections.List(pb.ListCollectionsRequest()).collections}
    assert lst == specs
    server.collections.Drop(pb.DropCollectionRequest(name="a"))
    assert names_of(server) == sorted(n for n in specs if n != "a")
    # the other collections are untouched
    d = server.describe("b.x-y_Z9")
    assert (d.dim, d.metric) == (8, pb.INNER_PRODUCT)
    # a dropped name can be created again, empty, with new settings
    server.upsert("b.x-y_Z9", [qt.item(1, np.ones(8))])
    server.collections.Drop(pb.DropCollectionRequest(name="b.x-y_Z9"))
    info = server.create("b.x-y_Z9", 2, pb.L2)
    assert (info.dim, info.metric, info.count) == (2, pb.L2, 0)
    g = server.get("b.x-y_Z9", [1])
    assert list(g.missing_ids) == [1] and len(g.items) == 0


def test_index_kind_flat_and_spec(server):
    server.create("f", 5, pb.L2, kind="flat")
    d = server.describe("f")
    assert d.index.kind == "flat"
    assert d.index.spec.kind == "flat"
    server.create("au", 5, pb.L2)
    assert server.describe("au").index.kind == "flat"


def test_already_exists(server):
    server.create("dup", 4, pb.L2)
    expect_error(lambda: server.create("dup", 4, pb.L2), SC.ALREADY_EXISTS, "dup")
    expect_error(lambda: server.create("dup", 8, pb.COSINE), SC.ALREADY_EXISTS, "dup")
    d = server.describe("dup")
    assert (d.dim, d.metric) == (4, pb.L2)
    assert names_of(server) == ["dup"]


def test_not_found(server):
    expect_error(lambda: server.describe("nosuch_coll"), SC.NOT_FOUND, "nosuch_coll")
    expect_error(lambda: server.collections.Drop(pb.DropCollectionRequest(name="other_missing")),
                 SC.NOT_FOUND, "other_missing")
    server.create("dropped_x", 2, pb.L2)
    server.collections.Drop(pb.DropCollectionRequest(name="dropped_x"))
    expect_error(lambda: server.collections.Drop(pb.DropCollectionRequest(name="dropped_x")),
                 SC.NOT_FOUND, "dropped_x")
    expect_error(lambda: server.describe("dropped_x"), SC.NOT_FOUND, "dropped_x")


BAD_NAMES = ["", "has space", "slash/name", ".hidden", "semi;colon", "star*", "tab\tname",
             "\u00fcml\u00e4ut"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n))
def test_create_bad_name(server, name):
    det = expect_error(lambda: server.create(name, 4, pb.L2), SC.INVALID_ARGUMENT, "name")
    if name and "\t" not in name:
        assert name in det, "message %r does not show the value %r" % (det, name)
    assert names_of(server) == []


def test_create_name_too_long(server):
    name = "n" * 129
    expect_error(lambda: server.create(name, 4, pb.L2), SC.INVALID_ARGUMENT,
                 "name", (name, "128", "129"))
    assert names_of(server) == []
    server.create("n" * 128, 4, pb.L2)  # the limit itself is fine
    assert names_of(server) == ["n" * 128]


@pytest.mark.parametrize("dim", [0, 4097, 100000])
def test_create_bad_dim(server, dim):
    det = expect_error(lambda: server.create("c", dim, pb.L2), SC.INVALID_ARGUMENT, "dim")
    assert str(dim) in det, det
    assert names_of(server) == []


def test_create_dim_limits_ok(server):
    assert server.create("one", 1, pb.L2).dim == 1
    assert server.create("max", 4096, pb.COSINE).dim == 4096


def test_create_bad_metric(server):
    expect_error(lambda: server.create("c", 4, pb.METRIC_UNSPECIFIED), SC.INVALID_ARGUMENT,
                 "metric", ("METRIC_UNSPECIFIED", "0", "unspecified"))
    req = pb.CreateCollectionRequest(name="c", dim=4)
    req.metric = 7  # an enum value this version does not know
    det = expect_error(lambda: server.collections.Create(req), SC.INVALID_ARGUMENT, "metric")
    assert "7" in det, det
    assert names_of(server) == []


@pytest.mark.parametrize("kind", ["hnsw", "FLAT_", "ivf"])
def test_create_bad_index_kind(server, kind):
    expect_error(lambda: server.create("c", 4, pb.L2, kind=kind), SC.INVALID_ARGUMENT,
                 "kind", kind)
    assert names_of(server) == []


def test_restart_keeps_collections(server):
    rng = np.random.default_rng(1)
    long_name = "L" * 127 + "z"
    specs = {"l2": (3, pb.L2, 5, "flat"), "ip": (7, pb.INNER_PRODUCT, 0, None),
             "cos": (16, pb.COSINE, 12, None), "gone": (2, pb.L2, 3, None),
             "-x.y_Z": (5, pb.INNER_PRODUCT, 4, None), long_name: (2, pb.L2, 1, None)}
    for n, (dim, m, cnt, kind) in specs.items():
        server.create(n, dim, m, kind=kind)
        if cnt:
            vecs = qt.rand_vectors(rng, cnt, dim)
            assert server.upsert(n, [qt.item(i, v) for i, v in enumerate(vecs)]) == cnt
    server.collections.Drop(pb.DropCollectionRequest(name="gone"))
    del specs["gone"]
    server.delete("cos", [0, 1])
    expected = {"l2": (3, pb.L2, 5), "ip": (7, pb.INNER_PRODUCT, 0), "cos": (16, pb.COSINE, 10),
                "-x.y_Z": (5, pb.INNER_PRODUCT, 4), long_name: (2, pb.L2, 1)}

    def state():
        return {c.name: (c.dim, c.metric, c.count)
                for c in server.collections.List(pb.ListCollectionsRequest()).collections}

    assert state() == expected
    server.restart()
    assert state() == expected
    for n, (dim, m, cnt) in expected.items():
        d = server.describe(n)
        assert (d.name, d.dim, d.metric, d.count) == (n, dim, m, cnt)
    assert server.describe("l2").index.spec.kind == "flat"
    expect_error(lambda: server.describe("gone"), SC.NOT_FOUND, "gone")
    # and once more after a kill -9
    server.restart(kill=True)
    assert state() == expected


def test_drop_recreate_after_ivf_index(server):
    """Dropping a collection that had a trained index on disk, then creating the same
    name with another dim: nothing of the old collection comes back, before or after
    a restart."""
    rng = np.random.default_rng(2)
    server.create("re", 8, pb.L2)
    vecs = qt.rand_vectors(rng, 2000, 8)
    for lo in range(0, 2000, 500):
        server.upsert("re", [qt.item(i, vecs[i]) for i in range(lo, lo + 500)])
    prog = list(server.admin.RebuildIndex(pb.RebuildIndexRequest(
        collection="re", index=pb.IndexSpec(kind="ivf_flat", nlist=8)), timeout=120))
    assert prog and prog[-1].phase == "done", [p.phase for p in prog]
    d = server.describe("re")
    assert d.index.kind == "ivf_flat" and d.index.trained and d.index.count == 2000, d.index
    server.restart()   # the index now lives in a file too
    assert server.describe("re").index.kind == "ivf_flat"
    server.collections.Drop(pb.DropCollectionRequest(name="re"))
    info = server.create("re", 3, pb.COSINE)
    assert (info.dim, info.metric, info.count, info.index.kind) == (3, pb.COSINE, 0, "flat")
    server.upsert("re", [qt.item(7, [1, 0, 0]), qt.item(8, [0, 1, 0])])
    for restart in (False, True):
        if restart:
            server.restart()
        d = server.describe("re")
        assert (d.dim, d.metric, d.count, d.index.kind, d.index.count) == (3, pb.COSINE, 2, "flat", 2), d
        g = server.get("re", [0, 1, 7, 8], with_vectors=False)
        assert [it.id for it in g.items] == [7, 8] and sorted(g.missing_ids) == [0, 1]
        hits = server.search_vectors("re", [[1, 0.1, 0]], k=10).results[0].hits
        assert [h.id for h in hits] == [7, 8], [(h.id, h.score) for h in hits]
