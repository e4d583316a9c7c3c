"""A hostile client against a live quiverd: mutated (bit flips, truncations, splices,
random bytes) and oversized requests to every RPC. quiverd must answer each with a status
(never crash, never hang), keep its memory bounded, and keep serving the collection
correctly afterwards."""
import random

import grpc
import numpy as np

import quiver_testlib as qt
from quiver_testlib import SC, pb

METHODS = {
    "/quiver.v1.Collections/Create": pb.CreateCollectionRequest(
        name="hx", dim=4, metric=pb.COSINE, index=pb.IndexSpec(kind="ivf_pq_fs", nlist=4, pq_m=2)),
    "/quiver.v1.Collections/Describe": pb.DescribeCollectionRequest(name="h"),
    "/quiver.v1.Collections/List": pb.ListCollectionsRequest(),
    "/quiver.v1.Items/Upsert": pb.UpsertRequest(collection="h", items=[
        qt.item(100007, [1, 2, 3, 4], {"lang": "en", "tags": ["a", "b"], "n": 3, "p": 1.5, "ok": True})]),
    "/quiver.v1.Items/Get": pb.GetItemsRequest(collection="h", ids=[1, 2, 3], with_vectors=True),
    "/quiver.v1.Items/Delete": pb.DeleteItemsRequest(collection="h", ids=[999]),
    "/quiver.v1.Search/Search": pb.SearchRequest(collection="h", k=10, nprobe=2, queries=[
        pb.Query(vector=pb.Vector(values=[1, 0, 0, 0])), pb.Query(id=3)]),
}
OK_CODES = {SC.OK, SC.INVALID_ARGUMENT, SC.NOT_FOUND, SC.ALREADY_EXISTS, SC.RESOURCE_EXHAUSTED,
            SC.FAILED_PRECONDITION}


def mutate(rng, b):
    b = bytearray(b)
    op = rng.randrange(5)
    if op == 0 and b:                       # bit flips
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1 and b:                     # truncation
        b = b[:rng.randrange(len(b))]
    elif op == 2:                           # random bytes spliced in
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    elif op == 3 and b:                     # a length prefix inflated
        i = rng.randrange(len(b))
        b[i] = 0xff
    else:                                   # noise
        b = bytearray(rng.randrange(256) for _ in range(rng.randrange(64)))
    return bytes(b)


def test_mutated_requests_to_every_rpc(server):
    server.create("h", 4, pb.COSINE)
    x = np.random.default_rng(1).standard_normal((300, 4)).astype(np.float32)
    server.upsert("h", [qt.item(i, v, {"w": "x%d" % i}) for i, v in enumerate(x)])
    ident = lambda b: b  # noqa: E731
    calls = {m: server.channel.unary_unary(m, request_serializer=ident, response_deserializer=ident)
             for m in METHODS}
    rng = random.Random(8)
    seen = {}
    for _ in range(1500):
        m = rng.choice(list(METHODS))
        body = mutate(rng, METHODS[m].SerializeToString())
        try:
            calls[m](body, timeout=10)
            code = SC.OK
        except grpc.RpcError as e:
            code = e.code()
            assert e.details(), (m, body, code)
        assert code in OK_CODES, (m, body, code)
        seen[code] = seen.get(code, 0) + 1
    print("statuses: %s" % {k.name: v for k, v in seen.items()})
    assert server.alive()
    # the collection still answers correctly (exact search: its own vectors first; the
    # mutated upserts carry ids far from 0..299, bit flips of 100007)
    for i in (0, 17, 123):
        r = server.search_vectors("h", [x[i]], k=1).results[0].hits
        assert r and r[0].id == i, (i, r)


def test_oversized_requests(make_server):
    s = make_server(["--max-message", "1M"])
    s.create("o", 8)
    big = pb.UpsertRequest(collection="o", items=[
        qt.item(i, [0.5] * 8, {"s": "y" * 1000}) for i in range(1500)])   # ~1.6 MB
    qt.expect_error(lambda: s.items.Upsert(big, timeout=20), SC.RESOURCE_EXHAUSTED)
    many = pb.GetItemsRequest(collection="o", ids=list(range(100001)))
    qt.expect_error(lambda: s.items.Get(many, timeout=20), SC.RESOURCE_EXHAUSTED, "100000")
    qs = pb.SearchRequest(collection="o", k=1, queries=[pb.Query(id=1)] * 10001)
    qt.expect_error(lambda: s.search.Search(qs, timeout=20), SC.RESOURCE_EXHAUSTED, "10000")
    assert s.upsert("o", [qt.item(1, [1] * 8)]) == 1
    assert s.alive()


def test_mutated_streams_and_health(server):
    """The streaming RPCs (Import, RebuildIndex, reflection) and health get mutated
    messages too."""
    server.create("h", 4, pb.COSINE)
    x = np.random.default_rng(2).standard_normal((200, 4)).astype(np.float32)
    server.upsert("h", [qt.item(i, v) for i, v in enumerate(x)])
    ident = lambda b: b  # noqa: E731
    imp = server.channel.stream_unary("/quiver.v1.Items/Import", request_serializer=ident,
                                      response_deserializer=ident)
    reb = server.channel.unary_stream("/quiver.v1.Admin/RebuildIndex", request_serializer=ident,
                                      response_deserializer=ident)
    hc = server.channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=ident,
                                    response_deserializer=ident)
    refl = server.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=ident, response_deserializer=ident)
    up = pb.UpsertRequest(collection="h", items=[qt.item(500000, [1, 0, 0, 0], {"a": "b"})]
                          ).SerializeToString()
    rb = pb.RebuildIndexRequest(collection="h", index=pb.IndexSpec(kind="ivf_flat", nlist=4)
                                ).SerializeToString()
    hreq = qt.health_pb2.HealthCheckRequest(service="").SerializeToString()
    rreq = qt.rpb.ServerReflectionRequest(list_services="*").SerializeToString()
    rng = random.Random(9)
    for n in range(300):
        kind = n % 4
        try:
            if kind == 0:
                imp(iter([up, mutate(rng, up), up]), timeout=10)
            elif kind == 1:
                for _ in reb(mutate(rng, rb), timeout=30):
                    pass
            elif kind == 2:
                hc(mutate(rng, hreq), timeout=10)
            else:
                for _ in refl(iter([mutate(rng, rreq)]), timeout=10):
                    pass
        except grpc.RpcError as e:
            assert e.code() in OK_CODES | {SC.CANCELLED}, (kind, e.code(), e.details())
    assert server.alive()
    r = server.search_vectors("h", [x[3]], k=1).results[0].hits
    assert r and r[0].id == 3
