"""kill -9 during concurrent writes: no acknowledged write is lost, no batch is half applied."""
import threading
import time

import numpy as np

import quiver_testlib as qt
from quiver_testlib import bits, f32, item, pb

DIM = 16
BATCH = 20
THREADS = 8
RUN_SECONDS = 2.0
CYCLES = 3
COLL = "crash"


class Writer(threading.Thread):
    """Upserts batches until stopped or until a call fails. A batch is 'acked' only after
    Upsert returned OK; a batch whose call failed or never returned is 'in flight'."""

    def __init__(self, addr, tid, cycle, stop):
        super().__init__(daemon=True)
        self.addr, self.tid, self.cycle, self.stop = addr, tid, cycle, stop
        self.acked = []       # list of (ids, vectors)
        self.inflight = []    # batches whose outcome the client does not know
        self.errors = []
        self.failures = []    # (monotonic time, code, details) of failed calls
        self.rng = np.random.default_rng(1000 * cycle + tid)

    def run(self):
        try:
            ch = qt.make_channel(self.addr)
        except Exception as e:  # server already gone
            self.errors.append(repr(e))
            return
        stub = qt.pbg.ItemsStub(ch)
        seq = 0
        try:
            while not self.stop.is_set():
                base = ((self.cycle * 100 + self.tid) << 32) + seq * BATCH
                seq += 1
                ids = [base + j for j in range(BATCH)]
                vecs = qt.rand_vectors(self.rng, BATCH, DIM)
                req = pb.UpsertRequest(collection=COLL, items=[
                    item(i, v, {"t": self.tid, "c": self.cycle}) for i, v in zip(ids, vecs)])
                batch = (ids, vecs)
                self.inflight.append(batch)
                try:
                    rep = stub.Upsert(req, timeout=20)
                except qt.grpc.RpcError as e:
                    self.errors.append("%s %s" % (e.code(), e.details()))
                    self.failures.append((time.monotonic(), e.code(), e.details()))
                    break  # the outcome of this batch is unknown: it stays in flight
                if rep.upserted != BATCH:
                    self.errors.append("upserted=%d for a batch of %d" % (rep.upserted, BATCH))
                self.inflight.pop()
                self.acked.append(batch)
        finally:
            ch.close()


def get_all(server, ids, with_vectors=True):
    found = {}
    ids = list(ids)
    for lo in range(0, len(ids), 2000):
        chunk = ids[lo:lo + 2000]
        r = server.get(COLL, chunk, with_vectors=with_vectors)
        assert len(r.items) + len(r.missing_ids) == len(chunk)
        for it in r.items:
            found[it.id] = it
    return found


def test_kill9_under_concurrent_writes(server):
    server.create(COLL, DIM, pb.L2)
    present = {}     # id -> vector: acked, or from an in-flight batch that turned out applied
    absent = set()   # ids of in-flight batches that turned out not applied
    stats = []
    for cycle in range(CYCLES):
        stop = threading.Event()
        writers = [Writer(server.addr, t, cycle, stop) for t in range(THREADS)]
        for w in writers:
            w.start()
        # writers busy for RUN_SECONDS, and at least one batch acknowledged
        end = time.time() + RUN_SECONDS
        while time.time() < end or (not any(w.acked for w in writers) and time.time() < end + 60):
            time.sleep(0.05)
        killed_at = time.monotonic()
        server.kill()          # kill -9 while the writers are busy
        stop.set()
        for w in writers:
            w.join(60)
            assert not w.is_alive(), "writer thread hung"
        bad = [e for w in writers for e in w.errors if e.startswith("upserted=")]
        assert not bad, bad
        # only the kill may fail a call: a failure before it, or with another status than
        # a lost connection, is a bug, not a batch "in flight"
        lost = (qt.grpc.StatusCode.UNAVAILABLE, qt.grpc.StatusCode.CANCELLED,
                qt.grpc.StatusCode.DEADLINE_EXCEEDED, qt.grpc.StatusCode.UNKNOWN,
                qt.grpc.StatusCode.INTERNAL)
        early = [(round(killed_at - t, 3), c, d) for w in writers for t, c, d in w.failures
                 if t < killed_at - 0.001 or c not in lost]
        assert not early, "calls failed before the kill or not for it: %s" % early
        acked = [b for w in writers for b in w.acked]
        inflight = [b for w in writers for b in w.inflight]
        assert len(acked) > 0, "no write acknowledged in %.1fs: %s" % (
            RUN_SECONDS, [w.errors for w in writers])
        server.start()          # same data folder

        # every acknowledged item is there with its exact vector (and attributes)
        for ids, vecs in acked:
            for i, v in zip(ids, vecs):
                present[i] = v
        found = get_all(server, present)
        missing = [i for i in present if i not in found]
        assert not missing, "cycle %d: %d acknowledged items lost, e.g. %s" % (
            cycle, len(missing), missing[:5])
        for i, v in present.items():
            assert np.array_equal(bits(f32(found[i].vector)), bits(v)), (cycle, i)
        # in-flight batches are all or nothing
        n_applied = 0
        for ids, vecs in inflight:
            f = get_all(server, ids)
            assert len(f) in (0, len(ids)), "cycle %d: in-flight batch partially applied: %d of %d" % (
                cycle, len(f), len(ids))
            if f:
                n_applied += 1
                for i, v in zip(ids, vecs):
                    assert np.array_equal(bits(f32(f[i].vector)), bits(v)), (cycle, i)
                    present[i] = v
            else:
                absent.update(ids)
        # nothing resurrected from earlier cycles' unapplied batches
        assert not get_all(server, absent, with_vectors=False), "an unapplied batch appeared later"
        # the count is exactly what we found: nothing else was written
        d = server.describe(COLL)
        assert d.count == len(present), (cycle, d.count, len(present))
        stats.append((len(acked), len(inflight), n_applied))

        # searches see the recovered items
        sample = list(present.items())[:: max(1, len(present) // 25)][:25]
        r = server.search_vectors(COLL, [v for _, v in sample], k=1)
        for (i, v), res in zip(sample, r.results):
            assert res.hits and res.hits[0].id == i and res.hits[0].score < 1e-3, (i, res)
    print("per cycle (acked batches, in-flight batches, in-flight applied):", stats)


def test_kill9_keeps_deletes_and_replacements(server):
    rng = np.random.default_rng(5)
    server.create(COLL, DIM, pb.COSINE)
    vecs = qt.rand_vectors(rng, 200, DIM)
    server.upsert(COLL, [item(i, vecs[i], {"v": 1}) for i in range(200)])
    server.delete(COLL, list(range(0, 200, 3)))
    new = qt.rand_vectors(rng, 10, DIM)
    server.upsert(COLL, [item(100 + j, new[j], {"v": 2}) for j in range(10)])
    before = {it.id: (bits(f32(it.vector)).tolist(), qt.attrs_of(it))
              for it in server.get(COLL, range(200)).items}
    q = qt.rand_vectors(rng, 3, DIM)
    res_before = [[(h.id, h.score) for h in r.hits] for r in server.search_vectors(COLL, q, k=15).results]
    server.kill()
    server.start()
    after = {it.id: (bits(f32(it.vector)).tolist(), qt.attrs_of(it))
             for it in server.get(COLL, range(200)).items}
    assert after == before
    assert server.describe(COLL).count == len(before)
    res_after = [[(h.id, h.score) for h in r.hits] for r in server.search_vectors(COLL, q, k=15).results]
    assert res_after == res_before
