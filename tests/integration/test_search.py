"""Search service on exact (small, flat) collections: results equal a numpy brute force."""
import numpy as np
import pytest

import quiver_testlib as qt
from quiver_testlib import SC, assert_hits_match, attrs_of, brute_force, expect_error, expected_attrs, item, pb

DIM = 16
N = 400
METRIC_IDS = {pb.L2: "L2", pb.INNER_PRODUCT: "IP", pb.COSINE: "COSINE"}


class Coll:
    def __init__(self, server, name, metric, seed=3, n=N, kind=None):
        self.server, self.name, self.metric = server, name, metric
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.ids = [10 + 3 * i for i in range(n)]
        self.vecs = qt.rand_vectors(rng, n, DIM, scale=0.5)
        self.attrs = {id_: {"i": id_, "tag": "t%d" % (id_ % 5), "w": id_ / 8.0, "even": id_ % 2 == 0,
                            "tags": ["a", "b%d" % (id_ % 3)]} for id_ in self.ids}
        server.create(name, DIM, metric, kind=kind)
        for lo in range(0, n, 150):
            server.upsert(name, [item(self.ids[i], self.vecs[i], self.attrs[self.ids[i]])
                                 for i in range(lo, min(n, lo + 150))])
        self.live = dict(zip(self.ids, self.vecs))

    def delete(self, ids):
        n = self.server.delete(self.name, ids)
        for i in ids:
            self.live.pop(i, None)
        return n

    def expected(self, queries, k, exclude=()):
        ids = [i for i in self.live if i not in exclude]
        base = np.array([self.live[i] for i in ids])
        return brute_force(ids, base, queries, self.metric, k)

    def queries(self, n):
        return qt.rand_vectors(self.rng, n, DIM, scale=0.5)


@pytest.fixture(params=[pb.L2, pb.INNER_PRODUCT, pb.COSINE], ids=lambda m: METRIC_IDS[m])
def coll(request, server):
    return Coll(server, "s_" + METRIC_IDS[request.param].lower(), request.param)


def test_exact_matches_brute_force(server, coll):
    qs = coll.queries(6)
    # several queries in one request: results in request order
    r = server.search_vectors(coll.name, qs, k=7)
    assert len(r.results) == 6
    exp = coll.expected(qs, 7)
    for qi in range(6):
        assert_hits_match(r.results[qi], exp[qi], what="query %d" % qi)
    # one query per request gives the same answer
    for qi in range(2):
        r1 = server.search_vectors(coll.name, [qs[qi]], k=7)
        assert_hits_match(r1.results[0], exp[qi], what="single query %d" % qi)
    # the whole collection, in order
    r = server.search_vectors(coll.name, qs[:2], k=1000)
    exp = coll.expected(qs[:2], 1000)
    assert len(exp[0][0]) == N
    for qi in range(2):
        assert_hits_match(r.results[qi], exp[qi], what="k=1000 query %d" % qi)
    # score order: ascending for L2, descending otherwise
    s = [h.score for h in r.results[0].hits]
    if coll.metric == pb.L2:
        assert s == sorted(s)
        assert s[0] >= 0
    else:
        assert s == sorted(s, reverse=True)
    if coll.metric == pb.COSINE:
        assert max(s) <= 1 + 1e-5 and min(s) >= -1 - 1e-5
        # queries are normalised: a scaled query scores the same
        r2 = server.search_vectors(coll.name, [qs[0] * 25.0], k=7)
        assert_hits_match(r2.results[0], coll.expected(qs[:1], 7)[0], what="scaled cosine query")


def test_many_queries_in_order(server):
    c = Coll(server, "many", pb.L2, n=200)
    qs = c.queries(40)
    r = server.search_vectors("many", qs, k=5)
    assert len(r.results) == 40
    exp = c.expected(qs, 5)
    for qi in range(40):
        assert_hits_match(r.results[qi], exp[qi], what="query %d of 40" % qi)


def test_k_default_and_limits(server):
    c = Coll(server, "k", pb.L2, n=50)
    q = c.queries(1)
    r = server.search_vectors("k", q, k=0)
    assert len(r.results) == 1 and len(r.results[0].hits) == 10
    assert_hits_match(r.results[0], c.expected(q, 10)[0], what="k=0")
    assert len(server.search_vectors("k", q, k=1).results[0].hits) == 1
    assert len(server.search_vectors("k", q, k=1000).results[0].hits) == 50
    for k in (1001, 5000, 2**32 - 1):
        det = expect_error(lambda: server.search_vectors("k", q, k=k), SC.INVALID_ARGUMENT, "k")
        assert str(k) in det, det
    # fewer items than k
    server.create("small", DIM, pb.COSINE)
    server.upsert("small", [item(i, c.vecs[i]) for i in range(5)])
    hits = server.search_vectors("small", q, k=0).results[0].hits
    assert sorted(h.id for h in hits) == [0, 1, 2, 3, 4]
    # an empty collection answers with no hits
    server.create("empty", DIM, pb.L2)
    r = server.search_vectors("empty", q, k=3)
    assert len(r.results) == 1 and len(r.results[0].hits) == 0


def test_query_by_id(server, coll):
    picks = [coll.ids[0], coll.ids[17], coll.ids[N - 1]]
    req = pb.SearchRequest(collection=coll.name, k=9, queries=[pb.Query(id=p) for p in picks])
    r = server.search.Search(req)
    assert len(r.results) == 3
    for qi, p in enumerate(picks):
        got = [h.id for h in r.results[qi].hits]
        assert p not in got, "query by id %d returned the item itself: %s" % (p, got)
        exp = coll.expected([coll.live[p]], 9, exclude={p})[0]
        assert_hits_match(r.results[qi], exp, what="query by id %d" % p)
        # equals searching by its vector, minus the item itself
        byvec = server.search_vectors(coll.name, [coll.live[p]], k=10).results[0]
        rest = [(h.id, h.score) for h in byvec.hits if h.id != p][:9]
        assert [h.id for h in r.results[qi].hits] == [i for i, _ in rest]
        np.testing.assert_allclose([h.score for h in r.results[qi].hits], [s for _, s in rest],
                                   rtol=1e-5, atol=1e-5)
    # mixing vector and id queries keeps request order
    q = coll.queries(1)[0]
    req = pb.SearchRequest(collection=coll.name, k=4, queries=[
        pb.Query(vector=pb.Vector(values=q.tolist())), pb.Query(id=picks[1]),
        pb.Query(vector=pb.Vector(values=q.tolist()))])
    r = server.search.Search(req)
    assert len(r.results) == 3
    e0 = coll.expected([q], 4)[0]
    assert_hits_match(r.results[0], e0, what="mixed q0")
    assert_hits_match(r.results[2], e0, what="mixed q2")
    assert_hits_match(r.results[1], coll.expected([coll.live[picks[1]]], 4, exclude={picks[1]})[0],
                      what="mixed q1 (id)")


def test_unknown_query_id(server):
    c = Coll(server, "u", pb.L2, n=20)
    req = pb.SearchRequest(collection="u", k=3, queries=[pb.Query(id=987654321)])
    expect_error(lambda: server.search.Search(req), SC.NOT_FOUND, "987654321")
    req = pb.SearchRequest(collection="u", k=3, queries=[
        pb.Query(vector=pb.Vector(values=c.vecs[0].tolist())), pb.Query(id=c.ids[1]),
        pb.Query(id=55555)])
    expect_error(lambda: server.search.Search(req), SC.NOT_FOUND, "55555")
    # a deleted item can no longer be used as a query
    c.delete([c.ids[2]])
    req = pb.SearchRequest(collection="u", k=3, queries=[pb.Query(id=c.ids[2])])
    expect_error(lambda: server.search.Search(req), SC.NOT_FOUND, str(c.ids[2]))


def test_bad_search_requests(server):
    Coll(server, "b", pb.L2, n=20)
    expect_error(lambda: server.search.Search(pb.SearchRequest(collection="b", k=3)),
                 SC.INVALID_ARGUMENT, "queries")
    det = expect_error(lambda: server.search_vectors("b", [[1.0] * (DIM - 1)], k=3),
                       SC.INVALID_ARGUMENT, "vector")
    assert str(DIM - 1) in det and str(DIM) in det, det
    bad = [0.0] * DIM
    bad[3] = float("nan")
    expect_error(lambda: server.search_vectors("b", [[0.0] * DIM, bad], k=3),
                 SC.INVALID_ARGUMENT, "queries[1]", "nan")
    bad[3] = float("inf")
    expect_error(lambda: server.search_vectors("b", [bad], k=3), SC.INVALID_ARGUMENT, "inf")
    expect_error(lambda: server.search_vectors("no_such_search", [[0.0] * DIM], k=3),
                 SC.NOT_FOUND, "no_such_search")
    # the server is fine afterwards
    assert len(server.search_vectors("b", [[0.0] * DIM], k=3).results[0].hits) == 3


def test_deleted_never_returned(server, coll):
    qs = coll.queries(5)
    before = coll.expected(qs, 10)
    # delete every top-3 hit of the queries, plus 100 others
    doomed = sorted({i for e in before for i in e[0][:3]} | set(coll.ids[::4]))
    assert coll.delete(doomed) == len(doomed)
    assert server.describe(coll.name).count == N - len(doomed)
    for k in (10, 1000):
        r = server.search_vectors(coll.name, qs, k=k)
        exp = coll.expected(qs, k)
        for qi in range(5):
            got = {h.id for h in r.results[qi].hits}
            assert not (got & set(doomed)), "deleted ids returned: %s" % sorted(got & set(doomed))
            assert_hits_match(r.results[qi], exp[qi], what="after delete k=%d q%d" % (k, qi))
    # query by id of a surviving item does not bring them back either
    alive = next(i for i in coll.ids if i not in doomed)
    r = server.search.Search(pb.SearchRequest(collection=coll.name, k=1000, queries=[pb.Query(id=alive)]))
    assert not ({h.id for h in r.results[0].hits} & set(doomed))
    assert len(r.results[0].hits) == N - len(doomed) - 1
    # re-inserting one makes it searchable again
    back = doomed[0]
    server.upsert(coll.name, [item(back, coll.vecs[coll.ids.index(back)])])
    coll.live[back] = coll.vecs[coll.ids.index(back)]
    r = server.search_vectors(coll.name, [coll.live[back]], k=1)
    assert r.results[0].hits[0].id == back


def test_writes_immediately_visible(server):
    server.create("live", DIM, pb.L2)
    rng = np.random.default_rng(11)
    base = qt.rand_vectors(rng, 100, DIM, scale=0.5)
    server.upsert("live", [item(i, base[i]) for i in range(100)])
    for j in range(40):
        v = np.zeros(DIM, dtype=np.float32)
        v[j % DIM] = 30.0 + j
        id_ = 1000 + j
        server.upsert("live", [item(id_, v)])
        h = server.search_vectors("live", [v], k=1).results[0].hits
        assert len(h) == 1 and h[0].id == id_ and abs(h[0].score) < 1e-3, (j, h)
    # replacement moves the item: found at the new place, not at the old one
    old = base[5]
    new = np.full(DIM, -40.0, dtype=np.float32)
    server.upsert("live", [item(5, new)])
    h = server.search_vectors("live", [new], k=1).results[0].hits
    assert h[0].id == 5 and abs(h[0].score) < 1e-3
    h = server.search_vectors("live", [old], k=3).results[0].hits
    for x in h:
        if x.id == 5:
            assert x.score == pytest.approx(float(((old - new) ** 2).sum()), rel=1e-4)
    assert h[0].id != 5
    # a delete is visible at once
    for j in range(0, 40, 5):
        assert server.delete("live", [1000 + j]) == 1
        v = np.zeros(DIM, dtype=np.float32)
        v[j % DIM] = 30.0 + j
        h = server.search_vectors("live", [v], k=5).results[0].hits
        assert 1000 + j not in [x.id for x in h], (j, [x.id for x in h])


def test_hits_carry_attributes(server, coll):
    q = coll.queries(2)
    r = server.search_vectors(coll.name, q, k=20)
    for res in r.results:
        assert len(res.hits) == 20
        for h in res.hits:
            assert attrs_of(h) == expected_attrs(coll.attrs[h.id]), h.id
    r2 = server.search_vectors(coll.name, q, k=20, without_attributes=True)
    for a, b in zip(r.results, r2.results):
        assert [h.id for h in a.hits] == [h.id for h in b.hits]
        assert [h.score for h in a.hits] == [h.score for h in b.hits]
        assert all(len(h.attributes) == 0 for h in b.hits)
    # replaced attributes show up in hits at once
    top = r.results[0].hits[0].id
    server.upsert(coll.name, [item(top, coll.live[top], {"new": "attrs"})])
    h = server.search_vectors(coll.name, q[:1], k=1).results[0].hits[0]
    assert h.id == top and attrs_of(h) == expected_attrs({"new": "attrs"})


@pytest.mark.parametrize("metric", [pb.L2, pb.COSINE], ids=lambda m: METRIC_IDS[m])
def test_identical_after_restart(server, metric):
    c = Coll(server, "r", metric, n=300)
    c.delete(c.ids[::10])
    qs = c.queries(8)
    req = pb.SearchRequest(collection="r", k=25,
                           queries=[pb.Query(vector=pb.Vector(values=q.tolist())) for q in qs]
                           + [pb.Query(id=c.ids[1]), pb.Query(id=c.ids[2])])

    def run():
        r = server.search.Search(req)
        return [[(h.id, h.score, tuple(sorted(attrs_of(h).items()))) for h in res.hits]
                for res in r.results]

    before = run()
    exp = c.expected(qs, 25)
    r = server.search.Search(req)
    for qi in range(8):
        assert_hits_match(r.results[qi], exp[qi], what="q%d" % qi)
    server.restart()
    assert run() == before
    server.restart(kill=True)
    assert run() == before


def test_hit_attributes_of_every_kind_match_get(server):
    """Hits are encoded by a hand-written wire encoder: every attribute kind,
    edge values included, must decode exactly as Get returns it."""
    server.create("kinds", 3, pb.L2)
    attrs = [
        {"s": "", "i": 0, "d": 0.0, "b": False, "l": []},
        {"s": "héllo ✓ quoted\"\n\t", "i": -1, "d": -1.5e300, "b": True, "l": ["", "x", "ü" * 300]},
        {"i": -(2 ** 63), "big": 2 ** 63 - 1, "tiny": 5e-324, "inf": float("inf")},
        {"k" * 256: "long key", "long": "v" * 60000},
        {},
    ]
    server.upsert("kinds", [item(i, [float(i), 0.0, 1.0], a) for i, a in enumerate(attrs)])
    r = server.search_vectors("kinds", [[0.0, 0.0, 1.0]], k=len(attrs))
    hits = r.results[0].hits
    assert sorted(h.id for h in hits) == list(range(len(attrs)))
    got = server.get("kinds", [h.id for h in hits], with_vectors=False)
    by_id = {it.id: it for it in got.items}
    for h in hits:
        assert attrs_of(h) == attrs_of(by_id[h.id]) == expected_attrs(attrs[h.id]), h.id
    assert [h.score for h in hits] == sorted(h.score for h in hits)
    assert hits[0].id == 0 and hits[0].score == 0.0
