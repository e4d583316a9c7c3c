"""The cluster's contract on a single node: write tokens, after_token, WriteAck,
shards/replicas and ClusterStatus (issue 18). A client written for a cluster
works unchanged against one quiverd: writes return a token, reads accept it,
ACK_LOGGED is accepted (a single node applies before it replies anyway)."""
import numpy as np
import pytest

from quiver_testlib import SC, expect_error, item, pb

DIM = 8


def vec(i):
    rng = np.random.default_rng(i)
    return rng.standard_normal(DIM).astype(np.float32)


@pytest.fixture
def coll(server):
    server.create("t", DIM, pb.L2)
    return "t"


def upsert(server, coll, ids, ack=pb.ACK_APPLIED):
    return server.items.Upsert(pb.UpsertRequest(collection=coll, items=[item(i, vec(i)) for i in ids],
                                                ack=ack))


def search_one(server, coll, v, token=b"", k=5):
    q = pb.Query(vector=pb.Vector(values=[float(x) for x in v]))
    return server.search.Search(pb.SearchRequest(collection=coll, queries=[q], k=k, after_token=token))


def test_writes_return_tokens_that_reads_accept(server, coll):
    r1 = upsert(server, coll, [1, 2, 3])
    assert r1.upserted == 3 and r1.write_token, r1
    r2 = upsert(server, coll, [4], ack=pb.ACK_LOGGED)
    assert r2.upserted == 1 and r2.write_token and r2.write_token != r1.write_token
    # ACK_LOGGED on a single node: applied before the reply all the same
    hits = search_one(server, coll, vec(4), token=r2.write_token).results[0].hits
    assert hits[0].id == 4 and hits[0].score == pytest.approx(0.0, abs=1e-5)
    got = server.items.Get(pb.GetItemsRequest(collection=coll, ids=[4], after_token=r2.write_token))
    assert [it.id for it in got.items] == [4]
    rec = server.search.Recommend(pb.RecommendRequest(collection=coll, positive=[pb.Example(id=1)], k=3,
                                                      after_token=r1.write_token))
    assert len(rec.hits) == 3 and 1 not in [h.id for h in rec.hits]
    d = server.items.Delete(pb.DeleteItemsRequest(collection=coll, ids=[4, 99], ack=pb.ACK_LOGGED))
    assert d.deleted == 1 and d.write_token
    hits = search_one(server, coll, vec(4), token=d.write_token).results[0].hits
    assert 4 not in [h.id for h in hits]
    # a batch of recommendations, each with the token
    b = server.search.RecommendBatch(pb.RecommendBatchRequest(requests=[
        pb.RecommendRequest(collection=coll, positive=[pb.Example(id=2)], k=2, after_token=d.write_token)]))
    assert len(b.results) == 1 and len(b.results[0].hits) == 2
    # an Import stream returns the token of its last write
    def batches():
        for s in range(3):
            yield pb.UpsertRequest(collection=coll, items=[item(10 + s, vec(10 + s))])
    imp = server.items.Import(batches())
    assert imp.upserted == 3 and imp.write_token
    hits = search_one(server, coll, vec(12), token=imp.write_token).results[0].hits
    assert hits[0].id == 12


def test_tokens_survive_a_restart(server, coll):
    tok = upsert(server, coll, [1, 2]).write_token
    server.restart()
    assert search_one(server, coll, vec(2), token=tok).results[0].hits[0].id == 2


def test_bad_tokens_are_refused_naming_the_field(server, coll):
    upsert(server, coll, [1])
    server.create("other", DIM, pb.L2)
    other = upsert(server, "other", [1]).write_token
    for bad in (b"x", b"\x00" * 40, b"q\x09abcd\x01\x00\x01"):
        expect_error(lambda: search_one(server, coll, vec(1), token=bad), SC.INVALID_ARGUMENT, "after_token")
    expect_error(lambda: search_one(server, coll, vec(1), token=other), SC.INVALID_ARGUMENT,
                 "after_token", "another collection")
    expect_error(lambda: server.items.Get(pb.GetItemsRequest(collection=coll, ids=[1], after_token=b"zz")),
                 SC.INVALID_ARGUMENT, "after_token")
    expect_error(lambda: server.search.Recommend(pb.RecommendRequest(
        collection=coll, positive=[pb.Example(id=1)], after_token=b"zz")), SC.INVALID_ARGUMENT, "after_token")
    # a truncated token of the right collection
    good = upsert(server, coll, [2]).write_token
    expect_error(lambda: search_one(server, coll, vec(1), token=good[:-1]), SC.INVALID_ARGUMENT,
                 "after_token", "damaged")


def test_token_from_before_a_drop_is_not_silently_accepted(server, coll):
    tok = upsert(server, coll, list(range(1, 50))).write_token
    server.collections.Drop(pb.DropCollectionRequest(name=coll))
    server.create(coll, DIM, pb.L2)
    upsert(server, coll, [1])
    expect_error(lambda: search_one(server, coll, vec(1), token=tok), SC.FAILED_PRECONDITION,
                 "after_token", "dropped")


def test_ack_out_of_range_is_refused(server, coll):
    expect_error(lambda: upsert(server, coll, [1], ack=7), SC.INVALID_ARGUMENT, "ack 7")
    expect_error(lambda: server.items.Delete(pb.DeleteItemsRequest(collection=coll, ids=[1], ack=5)),
                 SC.INVALID_ARGUMENT, "ack 5")
    assert server.describe(coll).count == 0  # nothing half-applied


def test_shards_and_replicas_on_a_single_node(server):
    ci = server.collections.Create(pb.CreateCollectionRequest(name="a", dim=DIM, metric=pb.L2))
    assert ci.shards == 1 and ci.replicas == 1
    ci = server.collections.Create(pb.CreateCollectionRequest(name="b", dim=DIM, metric=pb.L2, shards=1,
                                                              replicas=1))
    assert ci.shards == 1 and ci.replicas == 1
    assert all(c.shards == 1 and c.replicas == 1
               for c in server.collections.List(pb.ListCollectionsRequest()).collections)
    expect_error(lambda: server.collections.Create(pb.CreateCollectionRequest(
        name="c", dim=DIM, metric=pb.L2, shards=2)), SC.FAILED_PRECONDITION, "shards 2", "cluster")
    expect_error(lambda: server.collections.Create(pb.CreateCollectionRequest(
        name="c", dim=DIM, metric=pb.L2, replicas=3)), SC.FAILED_PRECONDITION, "replicas 3", "cluster")
    expect_error(lambda: server.describe("c"), SC.NOT_FOUND)


def test_cluster_status_of_a_single_node(server, coll):
    st = server.admin.ClusterStatus(pb.ClusterStatusRequest())
    assert st.clustered is False
    assert len(st.nodes) == 0 and len(st.shards) == 0
