"""The read path's contract, on every RPC that returns hits: attributes come with each hit
unless the request says without_attributes (then the hit's map is empty), and the hit's
vector (Hit.vector) is set when, and only when, the request says with_vectors.

RPCs: Search (one query and a batch, by vector and by stored id, plain and composed with a
filter, exclude_ids, group_by, MMR and fusion), Recommend (each strategy, examples by id
and by vector, composed), RecommendBatch (several requests, attributes and vectors asked
per request). Collections: L2, INNER_PRODUCT and COSINE. A hit's attributes must be what
was upserted for its id (items without attributes included); its vector the upserted one,
bit for bit, or on a COSINE collection the stored unit vector: the upserted one
normalised, and bit for bit what Items/Get returns.
"""
import numpy as np
import pytest

import quiver_testlib as qt
from quiver_testlib import F, any_of, eq, in_range, item, pb, to_filter

DIM = 8
N = 240
K = 8
METRIC_NAMES = {pb.L2: "L2", pb.INNER_PRODUCT: "IP", pb.COSINE: "COSINE"}


class Coll:
    """A flat collection of N items with varied attributes (every 10th item has none)."""

    def __init__(self, server, metric):
        self.server, self.metric = server, metric
        self.name = "read_%s" % METRIC_NAMES[metric].lower()
        rng = np.random.default_rng(20 + int(metric))
        self.ids = [1000 + 7 * j for j in range(N)]
        # not unit vectors: a COSINE collection stores them normalised
        vecs = qt.rand_vectors(rng, N, DIM, scale=3.0)
        self.upserted = dict(zip(self.ids, vecs))
        self.attrs = {}
        for j, i in enumerate(self.ids):
            if j % 10 == 3:
                self.attrs[i] = {}
                continue
            a = {"cat": "c%d" % (j % 4), "n": int(rng.integers(0, 100)), "g": j % 6,
                 "price": float(j) + 0.25, "live": bool(j % 3), "tags": ["t", "u%d" % (j % 5)],
                 "name": "item-%d" % i}
            if j % 7 == 2:
                del a["g"]
            self.attrs[i] = a
        server.create(self.name, DIM, metric, kind="flat")
        for lo in range(0, N, 100):
            server.upsert(self.name, [item(i, self.upserted[i], self.attrs[i])
                                      for i in self.ids[lo:lo + 100]])
        got = server.get(self.name, self.ids, with_vectors=True).items
        self.stored = {it.id: qt.f32(it.vector) for it in got}
        assert sorted(self.stored) == self.ids
        self.queries = qt.rand_vectors(rng, 4, DIM, scale=3.0)

    def expected_vector(self, id_):
        v = self.upserted[id_]
        if self.metric == pb.COSINE:
            return qt.normalize(v)
        return v


@pytest.fixture(scope="module", params=sorted(METRIC_NAMES), ids=lambda m: METRIC_NAMES[m])
def coll(request, module_server):
    return Coll(module_server, request.param)


def check_hits(c, hits, with_attrs, with_vectors, what):
    """Every hit carries exactly what was asked for."""
    assert len(hits.hits) > 0, "%s: no hits" % what
    for h in hits.hits:
        w = "%s, hit id %d" % (what, h.id)
        assert h.id in c.attrs, "%s: not an id of the collection" % w
        got = qt.attrs_of(h)
        if with_attrs:
            assert got == qt.expected_attrs(c.attrs[h.id]), \
                "%s: attributes %s, upserted %s" % (w, got, c.attrs[h.id])
        else:
            assert got == {}, "%s: attributes %s with without_attributes" % (w, got)
        if not with_vectors:
            assert not h.HasField("vector"), "%s: a vector that was not asked for" % w
            continue
        assert h.HasField("vector"), "%s: no vector with with_vectors" % w
        v = qt.f32(h.vector.values)
        assert v.shape == (DIM,), "%s: vector of %d floats, dim %d" % (w, v.size, DIM)
        if c.metric == pb.COSINE:
            np.testing.assert_allclose(v, c.expected_vector(h.id), rtol=1e-5, atol=1e-6,
                                       err_msg="%s: not the upserted vector normalised" % w)
            assert np.array_equal(qt.bits(v), qt.bits(c.stored[h.id])), \
                "%s: vector %s, Get returns %s" % (w, v, c.stored[h.id])
        else:
            assert np.array_equal(qt.bits(v), qt.bits(c.upserted[h.id])), \
                "%s: vector %s, upserted %s" % (w, v, c.upserted[h.id])


# ---------------------------------------------------------------------- Search
def qv(v):
    return pb.Query(vector=pb.Vector(values=[float(x) for x in v]))


def qid(i):
    return pb.Query(id=int(i))


# name -> (SearchRequest fields for collection c, number of result lists)
SEARCH_CASES = {
    "one_vector": lambda c: (dict(queries=[qv(c.queries[0])]), 1),
    "batch_vectors": lambda c: (dict(queries=[qv(v) for v in c.queries[:3]]), 3),
    "one_id": lambda c: (dict(queries=[qid(c.ids[5])]), 1),
    "batch_ids_and_vectors": lambda c: (
        dict(queries=[qid(c.ids[5]), qv(c.queries[1]), qid(c.ids[13]), qid(c.ids[3])]), 4),
    "filter": lambda c: (dict(queries=[qv(c.queries[0]), qid(c.ids[8])],
                              filter=to_filter(F(must=[any_of("cat", "c1", "c2")],
                                                 must_not=[in_range("n", hi=10)]))), 2),
    "exclude_and_threshold": lambda c: (
        dict(queries=[qv(c.queries[2])], exclude_ids=c.ids[:40],
             score_threshold=pb.Threshold(value=1e9 if c.metric == pb.L2 else -1e9)), 1),
    "group_by": lambda c: (dict(queries=[qv(c.queries[0]), qid(c.ids[20])], group_by="g",
                                group_size=2), 2),
    "mmr": lambda c: (dict(queries=[qv(c.queries[1]), qid(c.ids[30])],
                           mmr=pb.Mmr(diversity=0.5, candidates=40)), 2),
    "fusion_rrf": lambda c: (dict(queries=[qv(c.queries[0]), qv(c.queries[1]), qid(c.ids[9])],
                                  fusion=pb.RRF), 1),
    "fusion_max_score": lambda c: (dict(queries=[qv(c.queries[2]), qid(c.ids[40])],
                                        fusion=pb.MAX_SCORE), 1),
    "composed": lambda c: (dict(queries=[qv(c.queries[3]), qid(c.ids[50])],
                                filter=to_filter(F(must_not=[eq("cat", "c3")])),
                                exclude_ids=c.ids[50:60], group_by="cat", group_size=3,
                                mmr=pb.Mmr(diversity=0.3), fusion=pb.RRF, rrf_k=10), 1),
}


def run_search(c, case, with_attrs, with_vectors):
    fields, n_lists = SEARCH_CASES[case](c)
    req = pb.SearchRequest(collection=c.name, k=K, without_attributes=not with_attrs,
                           with_vectors=with_vectors, **fields)
    r = c.server.search.Search(req)
    assert len(r.results) == n_lists, "%s: %d result lists, expected %d" % (case, len(r.results), n_lists)
    for qi, hits in enumerate(r.results):
        check_hits(c, hits, with_attrs, with_vectors, "Search %s, list %d (attributes %s, vectors %s)"
                   % (case, qi, with_attrs, with_vectors))
    return r


@pytest.mark.parametrize("with_attrs", [True, False], ids=["attributes", "without_attributes"])
@pytest.mark.parametrize("case", sorted(SEARCH_CASES))
def test_search(coll, case, with_attrs):
    """Attributes when asked and not otherwise; no vector when not asked."""
    run_search(coll, case, with_attrs, False)


@pytest.mark.parametrize("with_attrs", [True, False], ids=["attributes", "without_attributes"])
@pytest.mark.parametrize("case", sorted(SEARCH_CASES))
def test_search_with_vectors(coll, case, with_attrs):
    """with_vectors: every hit carries its stored vector, attributes as asked; the hits are
    the ones the same search without vectors returns."""
    r = run_search(coll, case, with_attrs, True)
    plain = run_search(coll, case, with_attrs, False)
    assert [[h.id for h in x.hits] for x in r.results] == [[h.id for h in x.hits] for x in plain.results]


# ------------------------------------------------------------------- Recommend
def ex(x, weight=0.0):
    if isinstance(x, (int, np.integer)):
        return pb.Example(id=int(x), weight=weight)
    return pb.Example(vector=pb.Vector(values=[float(v) for v in x]), weight=weight)


# name -> RecommendRequest fields for collection c
RECOMMEND_CASES = {
    "average_ids": lambda c: dict(positive=[ex(c.ids[1]), ex(c.ids[2])], strategy=pb.AVERAGE_VECTOR),
    "average_vector_and_negative": lambda c: dict(positive=[ex(c.queries[0])], negative=[ex(c.ids[4])],
                                                  strategy=pb.AVERAGE_VECTOR),
    "best_score": lambda c: dict(positive=[ex(c.ids[6]), ex(c.queries[1])], negative=[ex(c.ids[7])],
                                 strategy=pb.BEST_SCORE),
    "sum_scores": lambda c: dict(positive=[ex(c.ids[10]), ex(c.ids[11], 2.0)], negative=[ex(c.queries[2])],
                                 strategy=pb.SUM_SCORES),
    "composed": lambda c: dict(positive=[ex(c.ids[12]), ex(c.queries[3])], strategy=pb.BEST_SCORE,
                               filter=to_filter(F(must=[eq("live", True)])), exclude_ids=c.ids[100:140],
                               group_by="g", group_size=2),
}


def recommend_request(c, case, with_attrs, with_vectors):
    return pb.RecommendRequest(collection=c.name, k=K, without_attributes=not with_attrs,
                               with_vectors=with_vectors, **RECOMMEND_CASES[case](c))


def run_recommend(c, case, with_attrs, with_vectors):
    hits = c.server.search.Recommend(recommend_request(c, case, with_attrs, with_vectors))
    check_hits(c, hits, with_attrs, with_vectors, "Recommend %s (attributes %s, vectors %s)"
               % (case, with_attrs, with_vectors))
    return hits


@pytest.mark.parametrize("with_attrs", [True, False], ids=["attributes", "without_attributes"])
@pytest.mark.parametrize("case", sorted(RECOMMEND_CASES))
def test_recommend(coll, case, with_attrs):
    run_recommend(coll, case, with_attrs, False)


@pytest.mark.parametrize("with_attrs", [True, False], ids=["attributes", "without_attributes"])
@pytest.mark.parametrize("case", sorted(RECOMMEND_CASES))
def test_recommend_with_vectors(coll, case, with_attrs):
    hits = run_recommend(coll, case, with_attrs, True)
    plain = run_recommend(coll, case, with_attrs, False)
    assert [h.id for h in hits.hits] == [h.id for h in plain.hits]


# -------------------------------------------------------------- RecommendBatch
def run_batch(c, flags):
    """One RecommendBatch of every Recommend case, request i asking for flags[i % len]
    = (attributes, vectors); each answer checked, and its ids against Recommend's."""
    cases = sorted(RECOMMEND_CASES)
    asked = [(case, flags[i % len(flags)]) for i, case in enumerate(cases + cases)]
    reqs = [recommend_request(c, case, a, v) for case, (a, v) in asked]
    r = c.server.search.RecommendBatch(pb.RecommendBatchRequest(requests=reqs))
    assert len(r.results) == len(reqs), "%d answers to %d requests" % (len(r.results), len(reqs))
    for i, ((case, (a, v)), hits) in enumerate(zip(asked, r.results)):
        check_hits(c, hits, a, v, "RecommendBatch request %d (%s, attributes %s, vectors %s)" % (i, case, a, v))
        single = c.server.search.Recommend(recommend_request(c, case, False, False))
        assert [h.id for h in hits.hits] == [h.id for h in single.hits], \
            "RecommendBatch request %d (%s): ids differ from Recommend's" % (i, case)


def test_recommend_batch_without_attributes(coll):
    run_batch(coll, [(False, False)])


def test_recommend_batch_attributes_per_request(coll):
    run_batch(coll, [(True, False), (False, False), (False, False), (True, False)])


def test_recommend_batch_vectors_per_request(coll):
    run_batch(coll, [(True, True), (False, False), (False, True), (True, False)])
