"""Issue 8, first parts: strings checked on the wire (UTF-8, NUL), duplicate map keys,
limits on what an item may carry, reply budgets decided before the reply is built, Get
answering a repeated id once. Requests that Python's protobuf would refuse to build are
sent as hand-made bytes on a raw channel method."""
import time

import grpc
import numpy as np

import quiver_testlib as qt
from quiver_testlib import SC, expect_error, pb

UPSERT = "/quiver.v1.Items/Upsert"
CREATE = "/quiver.v1.Collections/Create"
GET = "/quiver.v1.Items/Get"


def raw(server, method):
    ident = lambda b: b  # noqa: E731
    return server.channel.unary_unary(method, request_serializer=ident,
                                      response_deserializer=ident)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_bytes(num, payload):
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def rss_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_invalid_utf8_and_nul_refused_with_the_field(server):
    server.create("s", 4)
    good = pb.UpsertRequest(collection="s", items=[
        qt.item(1, [1, 0, 0, 0], {"lang": "en"}),
        qt.item(2, [0, 1, 0, 0], {"tags": ["aaaa", "ZZZZ"]}),
    ]).SerializeToString()
    up = raw(server, UPSERT)
    # a string value that is not UTF-8
    bad = good.replace(b"en", b"\xff\xfe")
    expect_error(lambda: up(bad, timeout=10), SC.INVALID_ARGUMENT,
                 'items[0].attributes["lang"].string_value', "not valid UTF-8", "0xff")
    # one element of a string list: a lone continuation byte, an overlong form
    for junk in (b"\x80AAA", b"\xc0\xafAA", b"\xed\xa0\x80A"):
        bad = good.replace(b"ZZZZ", junk)
        expect_error(lambda: up(bad, timeout=10), SC.INVALID_ARGUMENT,
                     'items[1].attributes["tags"].string_list.values[1]', "UTF-8")
    # a key
    bad = good.replace(b"lang", b"la\xffg")
    expect_error(lambda: up(bad, timeout=10), SC.INVALID_ARGUMENT,
                 "items[0].attributes", ".key", "UTF-8")
    # an embedded NUL is refused, not cut off
    expect_error(lambda: server.upsert("s", [qt.item(3, [0, 0, 1, 0], {"lang": "e\x00n"})]),
                 SC.INVALID_ARGUMENT, 'items[0].attributes["lang"].string_value', "NUL", "offset 1")
    expect_error(lambda: server.upsert("s", [qt.item(3, [0, 0, 1, 0], {"la\x00ng": "x"})]),
                 SC.INVALID_ARGUMENT, "NUL")
    # a collection name
    req = pb.CreateCollectionRequest(name="abcd", dim=3).SerializeToString()
    expect_error(lambda: raw(server, CREATE)(req.replace(b"abcd", b"ab\xe2\x82"), timeout=10),
                 SC.INVALID_ARGUMENT, "name", "UTF-8")
    # nothing of a refused request was written; valid multi-byte UTF-8 goes through
    assert server.describe("s").count == 0
    assert server.upsert("s", [qt.item(4, [1, 1, 0, 0], {"lang": "日本語 ü 😀"})]) == 1
    got = server.get("s", [4]).items[0]
    assert got.attributes["lang"].string_value == "日本語 ü 😀"
    # a Search and a Get of the collection still decode everywhere
    res = server.search_vectors("s", [[1, 1, 0, 0]], k=5)
    assert res.results[0].hits[0].attributes["lang"].string_value == "日本語 ü 😀"


def test_duplicate_keys_last_wins_stored_once(server):
    server.create("d", 2)
    a = pb.Item(id=9, vector=[1, 0])
    a.attributes["k"].string_value = "first"
    a.attributes["other"].int_value = 5
    b = pb.Item()
    b.attributes["k"].string_value = "second"
    item_bytes = a.SerializeToString() + b.SerializeToString()  # two "k" entries on the wire
    assert item_bytes.count(b"\x0a\x01k") == 2
    req = pb.UpsertRequest(collection="d").SerializeToString() + field_bytes(2, item_bytes)
    raw(server, UPSERT)(req, timeout=10)
    reply = raw(server, GET)(pb.GetItemsRequest(collection="d", ids=[9]).SerializeToString(),
                             timeout=10)
    assert reply.count(b"\x0a\x01k") == 1, reply       # stored (and answered) once
    got = pb.GetItemsResponse.FromString(reply).items[0]
    assert got.attributes["k"].string_value == "second"
    assert got.attributes["other"].int_value == 5


def test_attribute_limits_per_item(make_server):
    s = make_server(["--max-attr-keys", "8", "--max-attr-bytes", "1K"])
    s.create("a", 2)
    expect_error(lambda: s.upsert("a", [qt.item(1, [1, 0]),
                                        qt.item(2, [0, 1], {"k%d" % i: i for i in range(9)})]),
                 SC.INVALID_ARGUMENT, "items[1].attributes", "9 keys", "limit of 8")
    expect_error(lambda: s.upsert("a", [qt.item(1, [1, 0], {"big": "x" * 2000})]),
                 SC.INVALID_ARGUMENT, "items[0].attributes", "1024")
    assert s.describe("a").count == 0     # nothing half-applied
    assert s.upsert("a", [qt.item(1, [1, 0], {"k%d" % i: "v" * 50 for i in range(8)})]) == 1
    # defaults: 256 keys, 64 KiB
    d = make_server()
    d.create("a", 2)
    assert d.upsert("a", [qt.item(1, [1, 0], {"k%d" % i: i for i in range(256)})]) == 1
    expect_error(lambda: d.upsert("a", [qt.item(2, [1, 0], {"k%d" % i: i for i in range(257)})]),
                 SC.INVALID_ARGUMENT, "257 keys")
    assert d.upsert("a", [qt.item(3, [1, 0], {"s": "y" * 60000})]) == 1
    expect_error(lambda: d.upsert("a", [qt.item(4, [1, 0], {"s": "y" * 40000, "t": "z" * 30000})]),
                 SC.INVALID_ARGUMENT, "65536")


def test_search_reply_budget(make_server):
    s = make_server(["--max-reply", "256K"])
    s.create("r", 8)
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((2000, 8)).astype(np.float32)
    for a in range(0, 2000, 500):
        s.upsert("r", [qt.item(a + i, v, {"blob": "q" * 400}) for i, v in enumerate(vecs[a:a + 500])])
    qs = vecs[:4]
    # asked for more than the budget can ever hold: refused before searching
    expect_error(lambda: s.search_vectors("r", list(vecs[:40]), k=1000), SC.RESOURCE_EXHAUSTED,
                 "--max-reply", "smaller k")
    # the hits fit, their attributes do not: refused, saying what to reduce
    expect_error(lambda: s.search_vectors("r", list(qs), k=500), SC.RESOURCE_EXHAUSTED,
                 "--max-reply", "without_attributes")
    r = s.search_vectors("r", list(qs), k=500, without_attributes=True)
    assert [len(x.hits) for x in r.results] == [500] * 4
    r = s.search_vectors("r", list(qs), k=100)
    assert all(h.attributes["blob"].string_value == "q" * 400 for h in r.results[0].hits)
    assert s.alive()


def test_get_repeated_ids_answered_once_and_budget(make_server):
    s = make_server(["--max-reply", "1M"])
    s.create("g", 4)
    s.upsert("g", [qt.item(i, [i, 1, 0, 0], {"blob": "b" * 2000}) for i in range(1, 1001)])
    r = s.get("g", [5, 7, 5, 99999, 5, 7])
    assert [it.id for it in r.items] == [5, 7]
    assert list(r.missing_ids) == [99999]
    # one large item named 100,000 times: answered once, no memory blow-up
    before = rss_kb(s.proc.pid)
    r = s.get("g", [3] * 100000)
    assert [it.id for it in r.items] == [3]
    assert rss_kb(s.proc.pid) - before < 100 * 1024, (before, rss_kb(s.proc.pid))
    # 1,000 distinct items of 2 KB: over 1 MB, refused before the reply is built
    expect_error(lambda: s.get("g", range(1, 1001)), SC.RESOURCE_EXHAUSTED, "--max-reply",
                 "fewer ids")
    assert len(s.get("g", range(1, 301)).items) == 300


def peak_rss_mb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0


def flood(server, coll, payload, n, timeout):
    """n concurrent Upsert calls of the same serialized request; returns (ok, errors)."""
    import concurrent.futures as cf
    up = raw(server, UPSERT)
    ok, errs = 0, []
    with cf.ThreadPoolExecutor(n) as ex:
        futs = [ex.submit(up, payload, timeout=timeout) for _ in range(n)]
        for f in futs:
            try:
                f.result()
                ok += 1
            except grpc.RpcError as e:
                errs.append((e.code(), e.details()))
    return ok, errs


def big_upsert(coll, n_items, dim, base=0):
    rng = np.random.default_rng(base)
    v = rng.standard_normal((n_items, dim)).astype(np.float32)
    return pb.UpsertRequest(collection=coll, items=[
        pb.Item(id=base + i, vector=v[i].tolist()) for i in range(n_items)]).SerializeToString()


def test_upsert_flood_bounded_by_the_write_queue(make_server):
    """96 concurrent upserts of 8 MB each with a writer slowed to 500 ms a batch (a test
    hook standing for a slow disk, so that writes pile up): every one acknowledged; with
    the default queue budget quiverd's peak RSS stays under 1.5 GB and below what it takes
    with the budget lifted (every request taken in at once)."""
    import os
    payload = big_upsert("f", 2000, 1024)
    assert len(payload) > 8e6
    peaks = {}
    for label, args in (("bounded", []), ("unbounded", ["--max-queued-writes", "64G"])):
        os.environ["QUIVER_TEST_WRITER_DELAY_MS"] = "500"
        try:
            s = make_server(["--unsafe-nosync"] + args)
        finally:
            del os.environ["QUIVER_TEST_WRITER_DELAY_MS"]
        s.create("f", 1024)
        ok, errs = flood(s, "f", payload, 96, timeout=600)
        assert ok == 96 and not errs, errs[:3]
        assert s.describe("f").count == 2000
        peaks[label] = peak_rss_mb(s.proc.pid)
        asan = "libasan" in open("/proc/%d/maps" % s.proc.pid).read()
        s.kill()
    print("peak RSS (MB), 96 x %.1f MB in flight: %s" % (len(payload) / 2**20, peaks))
    # measured 2026-11-30: bounded 1.03-1.17 GB, unbounded 1.35-1.51 GB; the queue's
    # budget is not all of it (gRPC keeps the messages of calls not yet taken)
    if not asan:  # ASan's shadow and quarantine add memory of their own
        assert peaks["bounded"] < 1536, peaks
    assert peaks["bounded"] < peaks["unbounded"], peaks


def test_write_queue_deadline_gives_resource_exhausted(make_server):
    """A full queue (1 MB budget, a writer slowed to 300 ms a batch through a test hook, as
    a slow disk would) and short deadlines: calls that cannot be queued in time fail with
    RESOURCE_EXHAUSTED (or DEADLINE_EXCEEDED while gRPC still holds them back), never
    half-applied; the ones acknowledged are there; writes resume afterwards."""
    import concurrent.futures as cf
    import os
    os.environ["QUIVER_TEST_WRITER_DELAY_MS"] = "300"
    try:
        s = make_server(["--max-queued-writes", "1M"])
    finally:
        del os.environ["QUIVER_TEST_WRITER_DELAY_MS"]
    s.create("q", 256)
    reqs = [big_upsert("q", 1000, 256, base=1000 * i) for i in range(12)]  # ~1 MB each
    up = raw(s, UPSERT)
    acked, codes, msgs = [], [], []
    with cf.ThreadPoolExecutor(12) as ex:
        futs = [ex.submit(up, r, timeout=1.0) for r in reqs]
        for i, f in enumerate(futs):
            try:
                f.result()
                acked.append(i)
            except grpc.RpcError as e:
                codes.append(e.code())
                msgs.append(e.details())
    print("acked %d, refused %s" % (len(acked), {c.name: codes.count(c) for c in set(codes)}))
    assert set(codes) <= {SC.RESOURCE_EXHAUSTED, SC.DEADLINE_EXCEEDED}, set(codes)
    exhausted = [m for c, m in zip(codes, msgs) if c == SC.RESOURCE_EXHAUSTED]
    assert exhausted, "no write was refused for want of room: %s" % set(codes)
    assert all("--max-queued-writes" in m for m in exhausted), exhausted
    assert s.alive()
    # whatever was acknowledged is there entirely; nothing else is half there
    qt.wait_for(lambda: s.describe("q").count >= 1000 * len(acked), 30,
                "the %d acknowledged writes of 1000 items counted" % len(acked))
    count = s.describe("q").count
    assert count % 1000 == 0 and count >= 1000 * len(acked), (count, acked)
    # room again: writes go through
    assert s.items.Upsert(pb.UpsertRequest.FromString(reqs[0]), timeout=60).upserted == 1000


def test_requested_rebuild_cancels_an_automatic_one(make_server):
    """An explicit RebuildIndex while an automatic rebuild of the same collection runs:
    the automatic one is cancelled and the requested one runs (two explicit ones still
    conflict: test_index_lifecycle.test_second_concurrent_rebuild_rejected). Tried on
    fresh collections until the request lands while the automatic build runs."""
    s = make_server(["--auto-ivf-min", "20000"])
    rng = np.random.default_rng(8)
    for attempt in range(5):
        name = "a%d" % attempt
        s.create(name, 32, pb.L2)
        x = rng.standard_normal((60000, 32)).astype(np.float32)
        for a in range(0, len(x), 5000):
            s.upsert(name, [pb.Item(id=a + i, vector=v.tolist()) for i, v in enumerate(x[a:a + 5000])])
        qt.wait_for(lambda: s.describe(name).index.rebuilding, 60,
                    "an automatic rebuild of %s to start" % name, interval=0.01)
        msgs = list(s.admin.RebuildIndex(pb.RebuildIndexRequest(
            collection=name, index=pb.IndexSpec(kind="ivf_sq8", nlist=64)), timeout=300))
        assert msgs and msgs[-1].phase == "done", [m.phase for m in msgs]
        d = s.describe(name)
        assert (d.index.kind, d.index.nlist, d.index.rebuilding) == ("ivf_sq8", 64, False), d.index
        r = s.search_vectors(name, [x[7]], k=1, nprobe=64)
        assert r.results[0].hits[0].id == 7
        log = open(s._logs[-1], "rb").read().decode("utf-8", "replace")
        if "collection %s: requested index rebuild (ivf_sq8, nlist 64) cancels the automatic one" \
                % name in log:
            assert "collection %s: index rebuild cancelled" % name in log, log
            return
        # the automatic build ended just before the request: try again
    raise AssertionError("the request never met a running automatic rebuild")


def test_rebuilds_queue_beyond_max_rebuilds(make_server):
    """--max-rebuilds 1: a second collection's requested rebuild waits in phase
    "queued" until the first has finished, then runs; cancelling a queued one works."""
    import threading
    s = make_server(["--max-rebuilds", "1", "--no-auto-rebuild"])
    rng = np.random.default_rng(9)
    for name in ("r1", "r2", "r3"):
        s.create(name, 64, pb.L2, kind="flat")
        x = rng.standard_normal((40000, 64)).astype(np.float32)
        for a in range(0, len(x), 10000):
            s.upsert(name, [pb.Item(id=a + i, vector=v.tolist()) for i, v in enumerate(x[a:a + 10000])])
    phases = {}

    def run(name):
        # r1 trains 1024 lists (several seconds of k-means): long enough that r2's call
        # reaches the queue while r1 still runs, even on a loaded machine
        nlist = 1024 if name == "r1" else 256
        phases[name] = [m.phase for m in s.admin.RebuildIndex(pb.RebuildIndexRequest(
            collection=name, index=pb.IndexSpec(kind="ivf_flat", nlist=nlist)), timeout=300)]

    t1 = threading.Thread(target=run, args=("r1",))
    t1.start()
    qt.wait_for(lambda: s.describe("r1").index.phase not in ("", "queued"), 30,
                lambda: "r1's rebuild to run (index %s)" % s.describe("r1").index, interval=0.005)
    t2 = threading.Thread(target=run, args=("r2",))
    t2.start()
    qt.wait_for(lambda: s.describe("r2").index.phase == "queued", 30,
                lambda: "r2's rebuild queued (index %s)" % s.describe("r2").index, interval=0.005)
    assert s.describe("r1").index.rebuilding
    # a third one, cancelled while it is queued
    call = s.admin.RebuildIndex(pb.RebuildIndexRequest(
        collection="r3", index=pb.IndexSpec(kind="ivf_flat", nlist=256)), timeout=300)
    first = next(call)
    assert first.phase == "queued", first
    call.cancel()
    t1.join()
    t2.join()
    assert phases["r1"][-1] == "done" and "queued" not in phases["r1"], phases
    assert phases["r2"][0] == "queued" and phases["r2"][-1] == "done", phases
    assert s.describe("r2").index.kind == "ivf_flat"
    qt.wait_for(lambda: not s.describe("r3").index.rebuilding, 30, "r3's cancelled rebuild to end")
    d3 = s.describe("r3").index
    assert d3.kind == "flat" and not d3.rebuilding, d3


def test_rebuild_cancelled_at_once_is_never_lost(make_server):
    """RebuildIndex calls cancelled right after they are made: whatever the moment the
    cancel reaches quiverd (before, during or after the handler starts the rebuild), no
    rebuild runs to the end."""
    import os
    # quiverd waits 300 ms between a RebuildIndex call's start and the rebuild's, so
    # that the cancel lands in that window
    os.environ["QUIVER_TEST_REBUILD_START_DELAY_MS"] = "300"
    try:
        s = make_server(["--no-auto-rebuild"])
    finally:
        del os.environ["QUIVER_TEST_REBUILD_START_DELAY_MS"]
    s.create("c", 32, pb.L2, kind="flat")
    x = np.random.default_rng(10).standard_normal((30000, 32)).astype(np.float32)
    for a in range(0, len(x), 10000):
        s.upsert("c", [pb.Item(id=a + i, vector=v.tolist()) for i, v in enumerate(x[a:a + 10000])])
    for attempt in range(4):
        call = s.admin.RebuildIndex(pb.RebuildIndexRequest(
            collection="c", index=pb.IndexSpec(kind="ivf_flat", nlist=64)), timeout=120)
        # deliberate timing, not a wait: the cancel is meant to land somewhere in the
        # 300 ms window (before, during or after the handler starts the rebuild)
        time.sleep(0.1)
        call.cancel()
        qt.wait_for(lambda: not s.describe("c").index.rebuilding, 60,
                    "the cancelled rebuild to end (attempt %d)" % attempt)
        d = s.describe("c").index
        assert d.kind == "flat" and not d.rebuilding, (attempt, d)


def test_startup_removes_orphans_and_checks_the_whole_spec(make_server, tmp_path):
    """Start-up removes index files of collections that no longer exist, and does not
    load a file whose parameters differ from the collection's spec (a crash between
    committing a new spec and renaming the new file leaves exactly that)."""
    import glob
    import os
    import shutil
    s = make_server(["--no-auto-rebuild"])
    s.create("keep", 16, pb.L2, kind="flat")
    x = np.random.default_rng(11).standard_normal((5000, 16)).astype(np.float32)
    s.upsert("keep", [pb.Item(id=i, vector=v.tolist()) for i, v in enumerate(x)])
    list(s.admin.RebuildIndex(pb.RebuildIndexRequest(
        collection="keep", index=pb.IndexSpec(kind="ivf_flat", nlist=32)), timeout=120))
    ixdir = os.path.join(s.data_dir, "indexes")
    files = glob.glob(os.path.join(ixdir, "*.qvi"))
    assert len(files) == 1, files
    keep_file = files[0]
    f32 = str(tmp_path / "nlist32.qvi")
    shutil.copyfile(keep_file, f32)
    list(s.admin.RebuildIndex(pb.RebuildIndexRequest(
        collection="keep", index=pb.IndexSpec(kind="ivf_flat", nlist=64)), timeout=120))
    assert s.describe("keep").index.nlist == 64
    assert s.stop() == 0
    orphan = os.path.join(ixdir, "4242.qvi")
    shutil.copyfile(keep_file, orphan)
    shutil.copyfile(f32, keep_file)   # the nlist-32 file under the nlist-64 spec
    s.start()
    log = open(s._logs[-1], "rb").read().decode("utf-8", "replace")
    assert not os.path.exists(orphan), os.listdir(ixdir)
    assert "removed %s: no collection has id 4242 (dropped)" % orphan in log, log
    assert "collection keep: index file not used: it holds ivf_flat nlist 32" in log, log
    assert "spec is ivf_flat nlist 64" in log, log
    ii = s.describe("keep").index
    assert ii.nlist != 32, ii
    assert s.describe("keep").count == 5000


def test_failed_index_update_forces_a_rebuild(make_server):
    """An index update that fails after its commit (forced here through a test hook) is
    not left silent: it is logged and the index is rebuilt from LMDB, even with
    --no-auto-rebuild, after which the acknowledged write is found."""
    import os
    os.environ["QUIVER_TEST_FAIL_INDEX_UPDATE"] = "2"
    try:
        s = make_server(["--no-auto-rebuild"])
    finally:
        del os.environ["QUIVER_TEST_FAIL_INDEX_UPDATE"]
    s.create("u", 4, pb.L2)
    assert s.upsert("u", [qt.item(1, [1, 0, 0, 0])]) == 1
    assert s.upsert("u", [qt.item(2, [0, 1, 0, 0])]) == 1      # its index update fails
    qt.wait_for(lambda: "rebuilding the index from LMDB" in s.stderr_text(), 30,
                "the log line 'rebuilding the index from LMDB'")

    def found_2():
        hits = s.search_vectors("u", [[0, 1, 0, 0]], k=1).results[0].hits
        return hits and hits[0].id == 2
    qt.wait_for(found_2, 30, "item 2 found by a search after the rebuild")
    log = open(s._logs[-1], "rb").read().decode("utf-8", "replace")
    assert "collection u: index update failed" in log, log
    assert "collection u: rebuilding the index from LMDB after a failed update" in log, log


def test_release_quiverd_ignores_test_hooks(tmp_path):
    """The hooks are compiled into quiverd-test only: the production quiverd started with
    QUIVER_TEST_FAIL_INDEX_UPDATE=1 fails no index update (nothing about it in its log),
    and every acknowledged write is found at once."""
    import os
    os.environ["QUIVER_TEST_FAIL_INDEX_UPDATE"] = "1"
    try:
        s = qt.Server(str(tmp_path / "data"), str(tmp_path), ["--no-auto-rebuild"],
                      binary=qt.QUIVERD)
        s.start()
    finally:
        del os.environ["QUIVER_TEST_FAIL_INDEX_UPDATE"]
    try:
        s.create("u", 4, pb.L2)
        for i in range(1, 4):
            assert s.upsert("u", [qt.item(i, [i, 0, 0, 0])]) == 1
            hits = s.search_vectors("u", [[i, 0, 0, 0]], k=1).results[0].hits
            assert hits and hits[0].id == i
        assert "index update failed" not in s.stderr_text()
    finally:
        s.kill()


def test_huge_search_reply_refused_with_bounded_memory(make_server):
    """The search that used to abort quiverd: many `id` queries with a large k over items
    with large attributes, about 50 KB of request asking for gigabytes of reply. Refused
    with RESOURCE_EXHAUSTED before building anything; quiverd's memory barely moves."""
    s = make_server(["--max-k", "100000"])
    s.create("h", 4)
    for a in range(0, 3000, 500):
        s.upsert("h", [qt.item(a + i, [i % 7, i % 5, 1, 0], {"blob": "z" * 20000})
                       for i in range(500)])
    before = rss_kb(s.proc.pid)
    req = pb.SearchRequest(collection="h", k=100000, queries=[pb.Query(id=i % 3000)
                                                               for i in range(10000)])
    assert len(req.SerializeToString()) < 60000
    expect_error(lambda: s.search.Search(req, timeout=60), SC.RESOURCE_EXHAUSTED, "--max-reply")
    # k within the budget's reach but attributes far beyond it
    req2 = pb.SearchRequest(collection="h", k=3000, queries=[pb.Query(id=i) for i in range(20)])
    expect_error(lambda: s.search.Search(req2, timeout=60), SC.RESOURCE_EXHAUSTED,
                 "without_attributes")
    assert rss_kb(s.proc.pid) - before < 200 * 1024, (before, rss_kb(s.proc.pid))
    assert s.alive()
    r = s.search.Search(pb.SearchRequest(collection="h", k=3, queries=[pb.Query(id=5)]), timeout=30)
    assert len(r.results[0].hits) == 3


def test_index_file_of_another_collection_is_not_loaded(make_server):
    """An index file under another collection's id (a restored backup, a stray copy) is
    refused with the reason and the collection rebuilt from LMDB."""
    import glob
    import os
    import shutil
    s = make_server(["--no-auto-rebuild"])
    rng = np.random.default_rng(14)
    for name in ("a", "b"):
        s.create(name, 8, pb.L2, kind="flat")
        x = rng.standard_normal((3000, 8)).astype(np.float32)
        s.upsert(name, [pb.Item(id=i, vector=v.tolist()) for i, v in enumerate(x)])
        list(s.admin.RebuildIndex(pb.RebuildIndexRequest(
            collection=name, index=pb.IndexSpec(kind="ivf_flat", nlist=16)), timeout=120))
    files = sorted(glob.glob(os.path.join(s.data_dir, "indexes", "*.qvi")))
    assert len(files) == 2, files
    assert s.stop() == 0
    shutil.copyfile(files[0], files[1])   # b's file is now a's
    s.start()
    log = open(s._logs[-1], "rb").read().decode("utf-8", "replace")
    assert "index file not used" in log and "belongs to collection" in log, log
    assert s.describe("b").count == 3000
    r = s.search_vectors("b", [x[5]], k=1)
    assert r.results[0].hits[0].id == 5


def test_drop_during_searches_rebuild_and_import(make_server):
    """Drop a collection while searches, a rebuild and an Import stream use it: every call
    ends with a status (OK before the drop, NOT_FOUND / CANCELLED after), quiverd stays up,
    the name can be created again, and a restart finds no trace of the dropped one."""
    import glob
    import os
    import threading
    s = make_server(["--no-auto-rebuild"])
    s.create("d", 32, pb.L2, kind="flat")
    rng = np.random.default_rng(15)
    x = rng.standard_normal((40000, 32)).astype(np.float32)
    for a in range(0, len(x), 10000):
        s.upsert("d", [pb.Item(id=a + i, vector=v.tolist()) for i, v in enumerate(x[a:a + 10000])])
    stop = threading.Event()
    codes = {"search": set(), "import": set(), "rebuild": set()}

    def searcher():
        while not stop.is_set():
            try:
                s.search_vectors("d", [x[rng.integers(40000)]], k=5, timeout=30)
                codes["search"].add(SC.OK)
            except grpc.RpcError as e:
                codes["search"].add(e.code())

    def importer():
        def gen():
            for b in range(1000):
                if stop.is_set():
                    return
                yield pb.UpsertRequest(collection="d", items=[
                    pb.Item(id=10**6 + b * 50 + i, vector=[0.1] * 32) for i in range(50)])
        try:
            s.items.Import(gen(), timeout=60)
            codes["import"].add(SC.OK)
        except grpc.RpcError as e:
            codes["import"].add(e.code())

    def rebuilder():
        try:
            list(s.admin.RebuildIndex(pb.RebuildIndexRequest(
                collection="d", index=pb.IndexSpec(kind="ivf_flat", nlist=128)), timeout=120))
            codes["rebuild"].add(SC.OK)
        except grpc.RpcError as e:
            codes["rebuild"].add(e.code())

    ts = [threading.Thread(target=f) for f in (searcher, searcher, importer, rebuilder)]
    for t in ts:
        t.start()
    qt.wait_for(lambda: s.describe("d").index.phase not in ("", "queued", "sampling"), 30,
                "the rebuild past sampling", interval=0.005)
    s.collections.Drop(pb.DropCollectionRequest(name="d"), timeout=30)
    qt.wait_for(lambda: SC.NOT_FOUND in codes["search"], 30,
                lambda: "a search after the drop answered NOT_FOUND (codes %s)" % codes)
    stop.set()
    for t in ts:
        t.join(60)
    assert not any(t.is_alive() for t in ts)
    assert s.alive()
    print(codes)
    assert codes["search"] <= {SC.OK, SC.NOT_FOUND}, codes
    assert SC.NOT_FOUND in codes["search"], codes
    assert codes["import"] <= {SC.OK, SC.NOT_FOUND}, codes
    assert codes["rebuild"] <= {SC.OK, SC.NOT_FOUND, SC.CANCELLED}, codes
    qt.expect_error(lambda: s.describe("d"), SC.NOT_FOUND)
    s.create("d", 8, pb.L2)
    assert s.describe("d").count == 0
    assert s.stop() == 0
    s.start()
    assert s.describe("d").count == 0 and s.describe("d").dim == 8
    files = glob.glob(os.path.join(s.data_dir, "indexes", "*.qvi"))
    assert len(files) <= 1, files


def searches_in_flight(s):
    """quiver_rpc_in_flight of Search/Search, from the /metrics of a quiverd started with
    --metrics-listen 127.0.0.1:0."""
    import re
    import urllib.request
    port = qt.wait_for(lambda: re.search(r"metrics on http://\S+?:(\d+)/metrics", s.stderr_text()), 10,
                       "quiverd's 'metrics on http://...' log line").group(1)
    with urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port, timeout=10) as r:
        text = r.read().decode()
    m = re.search(r'^quiver_rpc_in_flight\{service="quiver.v1.Search",method="Search"\} (\d+)$', text, re.M)
    assert m, "no quiver_rpc_in_flight for Search in /metrics"
    return int(m.group(1))


def test_sigterm_drains_in_flight_calls_within_grace(make_server):
    """SIGTERM finishes the calls in flight (a long search returns its full answer: a
    drain, not a dropped connection), then exits 0; what outlives --grace-ms (a long
    rebuild stream) is cancelled so that the exit does not wait for it."""
    import signal
    s = make_server(["--grace-ms", "20000", "--no-auto-rebuild", "--metrics-listen", "127.0.0.1:0"])
    s.create("g", 128, pb.L2, kind="flat")
    rng = np.random.default_rng(16)
    x = rng.standard_normal((60000, 128)).astype(np.float32)
    for a in range(0, len(x), 10000):
        s.upsert("g", [pb.Item(id=a + i, vector=v.tolist()) for i, v in enumerate(x[a:a + 10000])])
    q = rng.standard_normal((10000, 128)).astype(np.float32)
    req = pb.SearchRequest(collection="g", k=10, without_attributes=True,
                           queries=[pb.Query(vector=pb.Vector(values=v.tolist())) for v in q])
    fut = s.search.Search.future(req, timeout=120)
    qt.wait_for(lambda: fut.done() or searches_in_flight(s) >= 1, 60, "the search taken in by quiverd")
    assert not fut.done(), "the search ended before the signal: make it longer"
    t0 = time.time()
    s.proc.send_signal(signal.SIGTERM)
    res = fut.result()             # raises if the call was dropped
    assert len(res.results) == 10000 and all(len(r.hits) == 10 for r in res.results)
    assert s.proc.wait(60) == 0
    print("drained a search in %.2f s" % (time.time() - t0))

    s2 = make_server(["--grace-ms", "300", "--no-auto-rebuild"])
    s2.create("r", 64, pb.L2, kind="flat")
    y = rng.standard_normal((150000, 64)).astype(np.float32)
    for a in range(0, len(y), 15000):
        s2.upsert("r", [pb.Item(id=a + i, vector=v.tolist()) for i, v in enumerate(y[a:a + 15000])])
    call = s2.admin.RebuildIndex(pb.RebuildIndexRequest(
        collection="r", index=pb.IndexSpec(kind="ivf_flat", nlist=2048)), timeout=300)
    first = next(call)
    assert first.phase in ("sampling", "training", "queued"), first
    t0 = time.time()
    s2.proc.send_signal(signal.SIGTERM)
    assert s2.proc.wait(60) == 0
    took = time.time() - t0
    try:
        phases = [m.phase for m in call]
        assert "done" not in phases, phases
    except grpc.RpcError as e:
        assert e.code() in (SC.CANCELLED, SC.UNAVAILABLE), (e.code(), e.details())
    assert took < 10, "shutdown took %.1f s with --grace-ms 300" % took


def rss_anon_mb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0


def test_memory_of_a_write_burst_is_given_back(make_server):
    """48 concurrent upserts of 8 MB each (of the same 2,000 items: 8 MB stored): once the
    writer has drained its queue and stayed idle a moment, quiverd gives the heap pages the
    requests held back to the system (malloc keeps them otherwise: measured 2026-12-07,
    RssAnon stayed near its peak, hundreds of MB for 8 MB of data)."""
    payload = big_upsert("f", 2000, 1024)
    s = make_server(["--unsafe-nosync"])
    s.create("f", 1024)
    before = rss_anon_mb(s.proc.pid)
    ok, errs = flood(s, "f", payload, 48, timeout=300)
    assert ok == 48 and not errs, errs[:3]
    peak = peak_rss_mb(s.proc.pid)
    asan = "libasan" in open("/proc/%d/maps" % s.proc.pid).read()
    t0, after = time.monotonic(), rss_anon_mb(s.proc.pid)
    while time.monotonic() - t0 < 10 and after > before + 100:
        time.sleep(0.2)
        after = rss_anon_mb(s.proc.pid)
    print("RssAnon before %.0f MB, peak RSS %.0f MB, %.1f s after the burst %.0f MB"
          % (before, peak, time.monotonic() - t0, after))
    assert peak > before + 150, (before, peak)  # the burst did take memory
    if not asan:  # ASan's allocator keeps freed memory in quarantine
        assert after < before + 100, (before, peak, after)
    assert s.describe("f").count == 2000
