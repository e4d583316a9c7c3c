"""Items service: Upsert/Import/Get/Delete, attributes, validation, all-or-nothing, restart."""
import math

import numpy as np
import pytest

import quiver_testlib as qt
from quiver_testlib import SC, attrs_of, bits, expect_error, expected_attrs, f32, item, pb

RNG_SEED = 7


@pytest.fixture
def coll(server):
    server.create("c", 4, pb.L2)
    return "c"


def test_upsert_get_order_missing_and_vectors(server, coll):
    vecs = {1: [0.5, -1.25, 3.0, 1e-3], 2: [1.0, 2.0, 3.0, 4.0], 3: [-0.0, 0.0, 7.5, -2.5]}
    attrs = {1: {"name": "one"}, 2: {"name": "two", "n": 2}, 3: {}}
    n = server.upsert(coll, [item(i, vecs[i], attrs[i]) for i in (1, 2, 3)])
    assert n == 3
    assert server.describe(coll).count == 3

    r = server.get(coll, [3, 1, 99, 2, 12345], with_vectors=True)
    assert [it.id for it in r.items] == [3, 1, 2]
    assert sorted(r.missing_ids) == [99, 12345]
    for it in r.items:
        assert np.array_equal(bits(f32(it.vector)), bits(f32(vecs[it.id]))), (it.id, list(it.vector))
        assert attrs_of(it) == expected_attrs(attrs[it.id])

    r = server.get(coll, [2, 1], with_vectors=False)
    assert [it.id for it in r.items] == [2, 1]
    assert all(len(it.vector) == 0 for it in r.items), [list(it.vector) for it in r.items]
    assert attrs_of(r.items[0]) == expected_attrs(attrs[2])
    assert list(r.missing_ids) == []

    r = server.get(coll, [7, 8], with_vectors=True)
    assert len(r.items) == 0 and list(r.missing_ids) == [7, 8]


ALL_KINDS = {
    "s": "hello world",
    "unicode": "\u65e5\u672c\u8a9e \u00e9\u00e8 \U0001F600",
    "i_pos": 42,
    "i_neg": -7,
    "i_max": (1 << 63) - 1,
    "i_min": -(1 << 63),
    "d": 3.141592653589793,
    "d_neg_small": -1.0e-300,
    "d_big": 1.7976931348623157e308,
    "b_true": True,
    "b_false": False,
    "list": ["a", "bb", "", "\u00fc"],
    "one": ["single"],
}


def test_attribute_kinds_round_trip(server, coll):
    server.upsert(coll, [item(10, [1, 2, 3, 4], ALL_KINDS), item(11, [0, 0, 0, 1], {"k": "v"})])
    for wv in (False, True):
        r = server.get(coll, [10, 11], with_vectors=wv)
        got = attrs_of(r.items[0])
        exp = expected_attrs(ALL_KINDS)
        assert got == exp
        # doubles must be bit-exact, not just close
        assert got["d"][1].hex() == ALL_KINDS["d"].hex()
        assert got["d_neg_small"][1].hex() == ALL_KINDS["d_neg_small"].hex()
        assert attrs_of(r.items[1]) == expected_attrs({"k": "v"})


def test_attribute_zero_values_round_trip(server, coll):
    """Values equal to the proto3 defaults are still set in the oneof and must come back."""
    zero = {"empty_s": "", "zero_i": 0, "zero_d": 0.0, "false": False, "empty_list": []}
    server.upsert(coll, [item(1, [1, 1, 1, 1], zero)])
    got = attrs_of(server.get(coll, [1]).items[0])
    assert got == expected_attrs(zero)


def test_upsert_replaces_vector_and_attributes(server, coll):
    server.upsert(coll, [item(7, [1, 1, 1, 1], {"a": 1, "b": "x"}), item(8, [2, 2, 2, 2], {"z": 1})])
    assert server.upsert(coll, [item(7, [9, 8, 7, 6], {"c": True})]) == 1
    r = server.get(coll, [7, 8])
    assert list(r.items[0].vector) == [9, 8, 7, 6]
    assert attrs_of(r.items[0]) == expected_attrs({"c": True})
    assert list(r.items[1].vector) == [2, 2, 2, 2]
    assert attrs_of(r.items[1]) == expected_attrs({"z": 1})
    assert server.describe(coll).count == 2
    # replacing with no attributes clears them
    server.upsert(coll, [item(7, [0, 0, 0, 5])])
    r = server.get(coll, [7])
    assert list(r.items[0].vector) == [0, 0, 0, 5] and attrs_of(r.items[0]) == {}
    assert server.describe(coll).count == 2


def test_cosine_get_returns_normalised_vector(server):
    server.create("cos", 3, pb.COSINE)
    server.upsert("cos", [item(1, [3, 4, 0]), item(2, [0, 0, -10])])
    r = server.get("cos", [1, 2])
    np.testing.assert_allclose(list(r.items[0].vector), [0.6, 0.8, 0.0], atol=1e-6)
    np.testing.assert_allclose(list(r.items[1].vector), [0, 0, -1], atol=1e-6)


def test_delete(server, coll):
    server.upsert(coll, [item(i, [i, 0, 0, 0]) for i in range(1, 11)])
    assert server.delete(coll, [2, 4, 99]) == 2
    r = server.get(coll, range(1, 11), with_vectors=False)
    assert [it.id for it in r.items] == [1, 3, 5, 6, 7, 8, 9, 10]
    assert sorted(r.missing_ids) == [2, 4]
    assert server.describe(coll).count == 8
    assert server.delete(coll, [2]) == 0
    assert server.delete(coll, [1, 3, 5, 6, 7, 8, 9, 10]) == 8
    assert server.describe(coll).count == 0
    # re-insert a deleted id
    server.upsert(coll, [item(4, [4, 4, 4, 4], {"back": True})])
    r = server.get(coll, [4])
    assert list(r.items[0].vector) == [4, 4, 4, 4] and attrs_of(r.items[0]) == expected_attrs({"back": True})
    assert server.describe(coll).count == 1


def test_import_stream(server):
    server.create("imp", 8, pb.INNER_PRODUCT)
    rng = np.random.default_rng(RNG_SEED)
    vecs = qt.rand_vectors(rng, 250, 8)
    sizes = [1, 50, 99, 100]

    def gen():
        start = 0
        for s in sizes:
            yield pb.UpsertRequest(collection="imp", items=[
                item(1000 + i, vecs[i], {"i": i}) for i in range(start, start + s)])
            start += s

    rep = server.items.Import(gen())
    assert rep.upserted == sum(sizes)
    assert server.describe("imp").count == sum(sizes)
    r = server.get("imp", [1000 + i for i in range(sum(sizes))])
    assert len(r.items) == sum(sizes) and list(r.missing_ids) == []
    got = np.array([list(it.vector) for it in r.items], dtype=np.float32)
    assert np.array_equal(bits(got), bits(vecs[:sum(sizes)]))
    assert [attrs_of(it)["i"] for it in r.items] == [("int_value", i) for i in range(sum(sizes))]


def test_import_bad_message_mid_stream(server):
    """Each message is applied atomically as it arrives: the good first one stays,
    the bad second one writes nothing."""
    server.create("imp", 2, pb.L2)
    msgs = [pb.UpsertRequest(collection="imp", items=[item(1, [1, 1]), item(2, [2, 2])]),
            pb.UpsertRequest(collection="imp", items=[item(3, [3, 3]), item(4, [4, 4, 4])])]
    expect_error(lambda: server.items.Import(iter(msgs)), SC.INVALID_ARGUMENT, "vector")
    r = server.get("imp", [1, 2, 3, 4], with_vectors=False)
    assert [it.id for it in r.items] == [1, 2]
    assert server.describe("imp").count == 2


def test_import_unknown_collection(server):
    expect_error(lambda: server.items.Import(iter([pb.UpsertRequest(
        collection="no_such_imp", items=[item(1, [1, 2])])])), SC.NOT_FOUND, "no_such_imp")


def test_wrong_dimension(server, coll):
    det = expect_error(lambda: server.upsert(coll, [item(1, [1, 2, 3, 4]), item(2, [1, 2, 3])]),
                       SC.INVALID_ARGUMENT, "items[1]", "vector", "3", "4")
    assert '"c"' in det or "c" in det.split(), det
    expect_error(lambda: server.upsert(coll, [item(1, [1, 2, 3, 4, 5])]),
                 SC.INVALID_ARGUMENT, "items[0]", "vector", "5")
    expect_error(lambda: server.upsert(coll, [item(1, [])]), SC.INVALID_ARGUMENT, "items[0]", "vector")
    assert server.describe(coll).count == 0


@pytest.mark.parametrize("bad,word", [(float("nan"), "nan"), (float("inf"), "inf"),
                                      (float("-inf"), "inf")])
def test_non_finite(server, coll, bad, word):
    expect_error(lambda: server.upsert(coll, [item(1, [1, 2, 3, 4]), item(5, [0, bad, 0, 0])]),
                 SC.INVALID_ARGUMENT, "items[1]", "vector", word)
    assert server.describe(coll).count == 0
    r = server.get(coll, [1, 5])
    assert len(r.items) == 0


def test_empty_batches(server, coll):
    expect_error(lambda: server.items.Upsert(pb.UpsertRequest(collection=coll)),
                 SC.INVALID_ARGUMENT, "items")
    expect_error(lambda: server.items.Delete(pb.DeleteItemsRequest(collection=coll)),
                 SC.INVALID_ARGUMENT, "ids")
    expect_error(lambda: server.items.Get(pb.GetItemsRequest(collection=coll)),
                 SC.INVALID_ARGUMENT, "ids")


def test_unknown_collection(server):
    for fn in (lambda: server.upsert("nope_items", [item(1, [1])]),
               lambda: server.get("nope_items", [1]),
               lambda: server.delete("nope_items", [1])):
        expect_error(fn, SC.NOT_FOUND, "nope_items")


def test_id_range(server, coll):
    det = expect_error(lambda: server.upsert(coll, [item(1 << 63, [1, 2, 3, 4])]),
                       SC.INVALID_ARGUMENT, "id", "9223372036854775808")
    assert "items[0]" in det, det
    expect_error(lambda: server.upsert(coll, [item(5, [1, 2, 3, 4]), item((1 << 64) - 1, [1, 2, 3, 4])]),
                 SC.INVALID_ARGUMENT, "items[1]", "18446744073709551615")
    assert server.describe(coll).count == 0
    # the largest allowed id works
    assert server.upsert(coll, [item(qt.MAX_ID, [1, 2, 3, 4])]) == 1
    r = server.get(coll, [qt.MAX_ID])
    assert [it.id for it in r.items] == [qt.MAX_ID] and list(r.items[0].vector) == [1, 2, 3, 4]
    assert server.delete(coll, [qt.MAX_ID]) == 1


def test_batch_all_or_nothing(server, coll):
    server.upsert(coll, [item(100, [1, 1, 1, 1], {"orig": True})])
    batch = [item(101, [1, 2, 3, 4]), item(100, [5, 5, 5, 5], {"new": 1}), item(102, [1, 2, 3, 4]),
             item(103, [1, 2, 3]), item(104, [4, 3, 2, 1])]
    expect_error(lambda: server.upsert(coll, batch), SC.INVALID_ARGUMENT, "items[3]")
    r = server.get(coll, [100, 101, 102, 103, 104])
    assert [it.id for it in r.items] == [100]
    assert list(r.items[0].vector) == [1, 1, 1, 1]
    assert attrs_of(r.items[0]) == expected_attrs({"orig": True})
    assert sorted(r.missing_ids) == [101, 102, 103, 104]
    assert server.describe(coll).count == 1
    # a NaN at the end of a batch, too
    batch = [item(200 + i, [i, i, i, i]) for i in range(20)] + [item(300, [math.nan, 0, 0, 0])]
    expect_error(lambda: server.upsert(coll, batch), SC.INVALID_ARGUMENT, "items[20]")
    assert len(server.get(coll, [200 + i for i in range(20)] + [300]).items) == 0
    assert server.describe(coll).count == 1
    # after all those rejections the server still takes good writes
    assert server.upsert(coll, [item(105, [0, 0, 0, 0])]) == 1
    assert server.describe(coll).count == 2


def test_restart_keeps_items_exactly(server):
    rng = np.random.default_rng(RNG_SEED)
    dim = 24
    server.create("keep", dim, pb.L2)
    server.create("keep_cos", dim, pb.COSINE)
    vecs = qt.rand_vectors(rng, 300, dim)
    vecs[0, :6] = [-0.0, 1e-30, -1e18, 1e18, 1.0000001, 0.1]
    attrs = {i: {"i": i, "s": "item-%d" % i, "f": i / 7.0, "odd": bool(i % 2),
                 "tags": ["t%d" % (i % 3), "x"]} for i in range(300)}
    ids = [i * 1000003 for i in range(300)]
    for lo in range(0, 300, 100):
        server.upsert("keep", [item(ids[i], vecs[i], attrs[i]) for i in range(lo, lo + 100)])
    server.upsert("keep_cos", [item(ids[i], vecs[i]) for i in range(1, 50)])
    cos_before = {it.id: bits(f32(it.vector)) for it in server.get("keep_cos", ids[1:50]).items}
    # replace some, delete some
    vecs[5] = qt.rand_vectors(rng, 1, dim)[0]
    attrs[5] = {"replaced": "yes"}
    server.upsert("keep", [item(ids[5], vecs[5], attrs[5])])
    deleted = {ids[i] for i in (7, 8, 299)}
    assert server.delete("keep", sorted(deleted)) == 3

    def check():
        r = server.get("keep", ids)
        assert sorted(r.missing_ids) == sorted(deleted)
        want = [i for i in range(300) if ids[i] not in deleted]
        assert [it.id for it in r.items] == [ids[i] for i in want]
        for it, i in zip(r.items, want):
            assert np.array_equal(bits(f32(it.vector)), bits(vecs[i])), (i, list(it.vector), vecs[i])
            assert attrs_of(it) == expected_attrs(attrs[i]), i
        assert server.describe("keep").count == 297
        c = server.get("keep_cos", ids[1:50])
        assert {it.id: bits(f32(it.vector)).tolist() for it in c.items} == \
            {k: v.tolist() for k, v in cos_before.items()}

    check()
    server.restart()
    check()
    server.restart(kill=True)
    check()
