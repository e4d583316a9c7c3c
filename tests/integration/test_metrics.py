"""Prometheus metrics of a real quiverd (--metrics-listen, issue 11).

After real traffic (creates, upserts, searches, failing calls, an IVF rebuild) the /metrics
text is parsed here, independently of the server, and checked against what the test did
and against Describe: calls by method and status code, histogram consistency (cumulative
buckets, +Inf == _count), write-path counters, per-collection gauges, process gauges and
build info. `promtool check metrics` (Debian's prometheus package) must accept the text,
and a real Prometheus server scraping the quiverd must return a metric through its HTTP API
(/api/v1/query). Tests needing promtool or prometheus skip when the binary is missing.
"""
import json
import math
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

import quiver_testlib as qt
from quiver_testlib import SC, expect_error, pb

ARGS = ["--metrics-listen", "127.0.0.1:0"]
PHASES = ["queued", "sampling", "training", "adding", "saving", "catching_up", "done"]
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


# ------------------------------------------------------------------ helpers
def metrics_port(srv, timeout=10.0):
    """The port from quiverd's log line 'metrics on http://HOST:PORT/metrics'."""
    deadline = time.time() + timeout
    while True:
        m = re.search(r"metrics on http://\S+?:(\d+)/metrics", srv.stderr_text())
        if m:
            return int(m.group(1))
        if time.time() > deadline:
            raise AssertionError("no 'metrics on http://...' line in quiverd's log:\n"
                                 + srv.stderr_text())
        time.sleep(0.05)


def http_get(url, method="GET", timeout=10):
    """(status, headers, body text); HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode("utf-8", "replace")


def scrape(port):
    st, hdr, body = http_get("http://127.0.0.1:%d/metrics" % port)
    assert st == 200, (st, body)
    assert hdr["Content-Type"].startswith("text/plain; version=0.0.4"), hdr["Content-Type"]
    return body


_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$')


def _unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(s[i + 1], "\\" + s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


class Exposition:
    """The text format parsed: types, helps and samples [(name, {labels}, value)]."""

    def __init__(self, text):
        self.text = text
        self.types, self.helps, self.samples = {}, {}, []
        for ln in text.splitlines():
            if not ln.strip():
                continue
            if ln.startswith("# TYPE "):
                _, _, name, typ = ln.split(" ", 3)
                assert name not in self.types, "TYPE of %s twice" % name
                self.types[name] = typ
                continue
            if ln.startswith("# HELP "):
                _, _, name, hlp = ln.split(" ", 3)
                self.helps[name] = hlp
                continue
            assert not ln.startswith("#"), ln
            m = _SAMPLE.match(ln)
            assert m, "not a sample line: %r" % ln
            labels = {}
            if m.group(2):
                inner = m.group(2)[1:-1]
                pos = 0
                while pos < len(inner):
                    lm = _LABEL.match(inner, pos)
                    assert lm, "bad labels in %r" % ln
                    labels[lm.group(1)] = _unescape(lm.group(2))
                    pos = lm.end()
            self.samples.append((m.group(1), labels, float(m.group(3))))

    def find(self, name, **labels):
        return [(lb, v) for n, lb, v in self.samples
                if n == name and all(lb.get(k) == str(x) for k, x in labels.items())]

    def value(self, name, **labels):
        f = self.find(name, **labels)
        assert len(f) == 1, "%s%s: %d samples %s" % (name, labels, len(f), f)
        return f[0][1]

    def value_or(self, name, default, **labels):
        f = self.find(name, **labels)
        return f[0][1] if f else default

    def family_of(self, sample_name):
        for suf in ("_bucket", "_sum", "_count"):
            base = sample_name[:-len(suf)] if sample_name.endswith(suf) else None
            if base and self.types.get(base) == "histogram":
                return base
        return sample_name

    def histograms(self, name):
        """{frozenset(labels without le): (buckets [(le, cum)], sum, count)}"""
        out = {}
        for n, lb, v in self.samples:
            if n not in (name + "_bucket", name + "_sum", name + "_count"):
                continue
            key = frozenset((k, x) for k, x in lb.items() if k != "le")
            h = out.setdefault(key, {"b": [], "sum": None, "count": None})
            if n.endswith("_bucket"):
                h["b"].append((float(lb["le"]), v))
            elif n.endswith("_sum"):
                h["sum"] = v
            else:
                h["count"] = v
        return {k: (h["b"], h["sum"], h["count"]) for k, h in out.items()}


def check_histogram(expo, name):
    """Every series of histogram `name`: le ascending ending at +Inf, cumulative counts
    non-decreasing, +Inf == _count, _sum present and not negative. Returns the series."""
    assert expo.types.get(name) == "histogram", (name, expo.types.get(name))
    hs = expo.histograms(name)
    assert hs, "no series of %s" % name
    for key, (buckets, s, c) in hs.items():
        les = [le for le, _ in buckets]
        assert les == sorted(les) and les[-1] == math.inf, (name, key, les)
        cums = [x for _, x in buckets]
        assert all(a <= b for a, b in zip(cums, cums[1:])), (name, key, cums)
        assert c is not None and s is not None, (name, key)
        assert cums[-1] == c, "%s %s: +Inf bucket %s != _count %s" % (name, dict(key), cums[-1], c)
        assert s >= 0, (name, key, s)
    return hs


def rpc(service, method):
    return {"service": service, "method": method}


def wait_for(fn, timeout=10.0, what="condition"):
    """Poll fn() until it returns a true value (the call's accounting runs when the server
    frees the call, which can be just after the client has its reply)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except AssertionError as e:
            last = e
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s: %s" % (what, last))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def traffic(srv, rng):
    """Creates, upserts, searches and failing calls; returns the expected call counts."""
    srv.create("m1", 8, pb.L2)
    vecs = rng.standard_normal((150, 8)).astype(np.float32)
    for i in range(3):
        srv.upsert("m1", [qt.item(i * 50 + j, vecs[i * 50 + j]) for j in range(50)])
    for i in range(5):
        srv.search_vectors("m1", vecs[i:i + 2], k=5)
    expect_error(lambda: srv.search_vectors("nope", [vecs[0]]), SC.NOT_FOUND)
    expect_error(lambda: srv.create("bad", 0), SC.INVALID_ARGUMENT)
    expect_error(lambda: srv.create("m1", 8), SC.ALREADY_EXISTS)
    srv.describe("m1")
    return {("Collections", "Create", "OK"): 1, ("Collections", "Create", "INVALID_ARGUMENT"): 1,
            ("Collections", "Create", "ALREADY_EXISTS"): 1, ("Items", "Upsert", "OK"): 3,
            ("Search", "Search", "OK"): 5, ("Search", "Search", "NOT_FOUND"): 1,
            ("Collections", "Describe", "OK"): 1}


# -------------------------------------------------------------------- tests
def test_metrics_after_traffic(make_server):
    srv = make_server(args=ARGS)
    port = metrics_port(srv)
    expected = traffic(srv, np.random.default_rng(11))

    def counts_match():
        e = Exposition(scrape(port))
        for (svc, meth, code), n in expected.items():
            got = e.value_or("quiver_rpc_requests_total", 0, service="quiver.v1." + svc,
                             method=meth, code=code)
            assert got == n, "%s/%s %s: %s calls counted, %s made" % (svc, meth, code, got, n)
        return e

    e = wait_for(counts_match, what="call counts")
    assert e.types["quiver_rpc_requests_total"] == "counter"
    # codes are gRPC names; every served method starts at OK 0; nothing but what we did
    for lb, v in e.find("quiver_rpc_requests_total"):
        assert lb["code"] in {c.name for c in SC}, lb
        if lb["service"].startswith("quiver.v1"):
            key = (lb["service"][len("quiver.v1."):], lb["method"], lb["code"])
            assert v == expected.get(key, 0), (key, v)
    assert e.value("quiver_rpc_requests_total", service="grpc.health.v1.Health", method="Check",
                   code="OK") == 0

    # latency histograms: consistent, and _count = calls of the method
    hs = check_histogram(e, "quiver_rpc_duration_seconds")
    for (svc, meth) in [("Items", "Upsert"), ("Search", "Search"), ("Collections", "Create")]:
        key = frozenset(rpc("quiver.v1." + svc, meth).items())
        buckets, s, c = hs[key]
        n = sum(v for (sv, m, _), v in expected.items() if (sv, m) == (svc, meth))
        assert c == n, (svc, meth, c, n)
        assert 0 < s < 60 * n, (svc, meth, s)
    assert all(v == 0 for _, v in e.find("quiver_rpc_in_flight", service="quiver.v1.Search"))

    # write path: three upserts of 50 items, one create (and the duplicate create, which
    # the writer refuses inside its transaction), each in a group commit
    assert e.value("quiver_items_written_total") == 150
    commits = e.value("quiver_group_commits_total")
    assert 1 <= commits <= 5, commits
    for name in ("quiver_commit_duration_seconds", "quiver_commit_batch_writes"):
        (buckets, s, c), = check_histogram(e, name).values()
        assert c == commits, (name, c, commits)
    (_, writes, _), = e.histograms("quiver_commit_batch_writes").values()
    assert 4 <= writes <= 5, writes  # create + 3 upserts (+ the duplicate create)
    assert e.value("quiver_write_queue_bytes") == 0
    assert e.value("quiver_write_pending_bytes") == 0
    assert e.value("quiver_lmdb_map_size_bytes") == 1 << 40  # the default --map-size
    used = e.value("quiver_lmdb_used_bytes")
    assert 4096 <= used <= os.path.getsize(os.path.join(srv.data_dir, "data.mdb")), used

    # the collection, against Describe
    d = srv.describe("m1")
    assert e.value("quiver_collections") == 1
    assert e.value("quiver_collection_items", collection="m1") == d.count == 150
    assert e.value("quiver_collection_dimensions", collection="m1") == 8
    (lb, v), = e.find("quiver_collection_info", collection="m1")
    assert v == 1 and lb["kind"] == d.index.kind == "flat" and lb["metric"] == "l2", lb
    assert e.value("quiver_collection_nlist", collection="m1") == 0
    assert e.value("quiver_collection_calibrated_recall", collection="m1") == 1
    assert e.value("quiver_collection_rebuilding", collection="m1") == 0
    assert not e.find("quiver_collection_rebuild_phase")

    # process and build
    assert e.value("process_resident_memory_bytes") > 1 << 20
    assert 3 < e.value("process_open_fds") < e.value("process_max_fds")
    assert abs(e.value("process_start_time_seconds") - time.time()) < 600
    (lb, v), = e.find("quiver_build_info")
    assert v == 1
    assert re.fullmatch(r"\d+\.\d+\.\d+", lb["version"]), lb
    assert re.fullmatch(r"\d+\.\d+.*", lb["faiss_version"]), lb
    assert lb["git_revision"] and lb["simd_level"] and lb["blas_core"], lb
    # every family has HELP and TYPE, every sample belongs to a declared family
    for n, _, _ in e.samples:
        fam = e.family_of(n)
        assert fam in e.types and fam in e.helps, "sample %s without TYPE/HELP" % n
        assert fam.startswith(("quiver_", "process_")), fam


def test_unknown_method_and_in_flight(make_server):
    """A method quiverd does not serve is counted as unknown/UNIMPLEMENTED; a Health Watch
    stream stays in flight until the client cancels it."""
    srv = make_server(args=ARGS)
    port = metrics_port(srv)
    call = srv.channel.unary_unary("/quiver.v1.Nope/Nothing")
    expect_error(lambda: call(b"", timeout=10), SC.UNIMPLEMENTED)
    watch = srv.health.Watch(qt.health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert next(watch).status == qt.health_pb2.HealthCheckResponse.SERVING

    def check():
        e = Exposition(scrape(port))
        assert e.value_or("quiver_rpc_requests_total", 0, service="unknown", method="unknown",
                          code="UNIMPLEMENTED") == 1
        assert e.value("quiver_rpc_in_flight", service="grpc.health.v1.Health",
                       method="Watch") == 1
        return e

    e = wait_for(check, what="unknown method and watch in flight")
    check_histogram(e, "quiver_rpc_duration_seconds")
    watch.cancel()
    wait_for(lambda: Exposition(scrape(port)).value(
        "quiver_rpc_in_flight", service="grpc.health.v1.Health", method="Watch") == 0,
        what="watch leaving in flight")


def test_http_paths(make_server):
    srv = make_server(args=ARGS)
    port = metrics_port(srv)
    base = "http://127.0.0.1:%d" % port
    assert http_get(base + "/")[0] == 404
    assert http_get(base + "/metricsx")[0] == 404
    assert http_get(base + "/metrics", method="POST")[0] == 405
    st, hdr, body = http_get(base + "/metrics", method="HEAD")
    assert st == 200 and body == ""
    assert srv.alive()


def test_bad_metrics_address_refused(tmp_path):
    """A malformed address, or a port already taken, stops start-up with a message."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        for addr, why in [("nonsense", "HOST:PORT"), ("127.0.0.1:99999", "HOST:PORT"),
                          ("127.0.0.1:%d" % taken.getsockname()[1], "cannot serve metrics")]:
            r = subprocess.run([qt.QUIVERD, "--listen", "127.0.0.1:0", "--data",
                                str(tmp_path / "d"), "--metrics-listen", addr],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode != 0 and why in r.stderr, (addr, r.returncode, r.stderr)
            assert "listening on port" not in r.stdout
    finally:
        taken.close()


def test_ivf_collection_gauges(make_server):
    """After a rebuild to IVF, the gauges match Describe's IndexInfo (kind, nlist, default
    nprobe, trained_for, recall at the default nprobe); a scrape during the rebuild shows
    it running with its phase."""
    srv = make_server(args=ARGS + ["--no-auto-rebuild"])
    port = metrics_port(srv)
    rng = np.random.default_rng(5)
    n, dim = 20000, 32
    centers = rng.standard_normal((64, dim)).astype(np.float32)
    x = centers[rng.integers(0, 64, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    srv.create("ivf", dim, pb.L2)
    for s in range(0, n, 5000):
        srv.upsert("ivf", [qt.item(s + i, x[s + i]) for i in range(5000)], timeout=120)
    req = pb.RebuildIndexRequest(collection="ivf", index=pb.IndexSpec(kind="ivf_flat", nlist=64))
    during = []
    for msg in srv.admin.RebuildIndex(req, timeout=180):
        if msg.phase != "done" and not during:
            during.append(Exposition(scrape(port)))
    assert msg.phase == "done"
    if during:  # the rebuild can finish before the scrape reaches the engine
        e = during[0]
        if e.value("quiver_collection_rebuilding", collection="ivf") == 1:
            (lb, v), = e.find("quiver_collection_rebuild_phase", collection="ivf")
            assert v == 1 and lb["phase"] in PHASES, lb
            assert 0 <= e.value("quiver_collection_rebuild_steps_done", collection="ivf") <= \
                e.value("quiver_collection_rebuild_steps", collection="ivf")
    d = srv.describe("ivf").index
    e = Exposition(scrape(port))
    (lb, _), = e.find("quiver_collection_info", collection="ivf")
    assert lb["kind"] == d.kind == "ivf_flat", (lb, d.kind)
    assert e.value("quiver_collection_nlist", collection="ivf") == d.nlist == 64
    assert e.value("quiver_collection_default_nprobe", collection="ivf") == d.default_nprobe > 0
    assert e.value("quiver_collection_trained_for_items", collection="ivf") == d.trained_for == n
    assert e.value("quiver_collection_indexed_items", collection="ivf") == n
    at = [p.recall for p in d.recall_table if p.nprobe == d.default_nprobe]
    assert at, "no recall point at the default nprobe %d: %s" % (d.default_nprobe, d.recall_table)
    assert e.value("quiver_collection_calibrated_recall", collection="ivf") == \
        pytest.approx(at[0], abs=1e-6)
    assert e.value("quiver_collection_rebuilding", collection="ivf") == 0
    assert e.value_or("quiver_rpc_requests_total", 0, service="quiver.v1.Admin",
                      method="RebuildIndex", code="OK") in (0, 1)  # freed just after "done"
    check_histogram(e, "quiver_commit_batch_writes")


def test_attr_cache_gauge_and_restarts(make_server):
    """Hits' attributes served from memory (--attr-cache, filled by what searches read) are
    the ones written, after replacements and deletes, after a restart, with a cache too small
    for them (evicting as searches go, while writes replace items) and with the cache off
    (--attr-cache 0: the gauge stays 0); a bad size stops start-up naming the flag."""
    srv = make_server(args=ARGS)
    rng = np.random.default_rng(11)
    n, dim = 2000, 16
    x = rng.standard_normal((n, dim)).astype(np.float32)
    want = {i: {"n": i, "tag": "t%d" % (i % 7), "tags": ["a", "b%d" % i]} for i in range(n)}
    srv.create("ac", dim, pb.L2)
    srv.upsert("ac", [qt.item(i, x[i], want[i]) for i in range(n)], timeout=60)
    # replaced, emptied, deleted
    for i in range(0, 300, 3):
        want[i] = {"n": -i, "new": True}
    srv.upsert("ac", [qt.item(i, x[i], want[i]) for i in range(0, 300, 3)])
    for i in range(1, 300, 9):
        want[i] = {}
    srv.upsert("ac", [qt.item(i, x[i], want[i]) for i in range(1, 300, 9)])
    gone = list(range(2, 300, 30))
    assert srv.delete("ac", gone) == len(gone)
    for i in gone:
        del want[i]

    def check():
        q = x[rng.integers(0, n, 40)]
        r = srv.search_vectors("ac", q, k=50, timeout=60)
        seen = 0
        for res in r.results:
            for h in res.hits:
                assert h.id in want, h.id
                assert qt.attrs_of(h) == qt.expected_attrs(want[h.id]), (h.id, qt.attrs_of(h))
                seen += 1
        assert seen == 40 * 50

    def gauge():  # the port of this run's "metrics on" line (port 0: a new one each start)
        port = int(re.findall(r"metrics on http://\S+?:(\d+)/metrics", srv.stderr_text())[-1])
        return Exposition(scrape(port)).value("quiver_collection_attr_cache_bytes",
                                              collection="ac")

    assert gauge() == 0  # nothing read yet
    check()
    assert gauge() > 0
    check()  # again: from memory
    srv.restart()
    assert gauge() == 0
    check()
    check()
    assert gauge() > 0
    # a cache far smaller than the items read: entries are evicted and replaced by
    # every search, writes keep forgetting them, and every hit is still as written
    srv.args = ARGS + ["--attr-cache", "48K"]
    srv.restart()
    for rnd in range(6):
        check()
        assert 0 < gauge() <= 48 * 1024
        ids = [int(i) for i in rng.integers(300, n, 60)]
        for i in ids:
            want[i] = {"n": i, "round": rnd}
        srv.upsert("ac", [qt.item(i, x[i], want[i]) for i in ids])
        check()
    srv.args = ARGS + ["--attr-cache", "0"]
    srv.restart()
    check()
    check()
    assert gauge() == 0
    srv.stop()
    r = subprocess.run([qt.QUIVERD, "--listen", "127.0.0.1:0", "--data", srv.data_dir,
                        "--attr-cache", "lots"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--attr-cache lots" in r.stderr, (r.returncode, r.stderr)


def test_promtool_accepts(make_server):
    qt.require_tool(PROMTOOL, "prometheus")
    srv = make_server(args=ARGS)
    port = metrics_port(srv)
    traffic(srv, np.random.default_rng(3))
    srv.create("other.coll-2", 4, pb.COSINE)
    text = scrape(port)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        "promtool check metrics: rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr)


def test_prometheus_scrapes_quiverd(make_server, tmp_path):
    qt.require_tool(PROMETHEUS, "prometheus")
    srv = make_server(args=ARGS)
    port = metrics_port(srv)
    srv.create("scraped", 4, pb.L2)
    srv.upsert("scraped", [qt.item(i, [i, 0, 0, 1]) for i in range(7)])
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                   "scrape_configs:\n  - job_name: quiverd\n    scrape_interval: 1s\n"
                   "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % port)
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen([PROMETHEUS, "--config.file=%s" % cfg,
                             "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
                             "--web.listen-address=127.0.0.1:%d" % prom_port, "--log.level=warn"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(tmp_path))

    def query(q):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (prom_port, urllib.parse.urlencode({"query": q}))
        try:
            st, _, body = http_get(url, timeout=5)
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            return None
        if st != 200:
            return None
        r = json.loads(body)
        assert r["status"] == "success", r
        return r["data"]["result"]

    try:
        def items():
            assert prom.poll() is None, "prometheus exited: %s" % (tmp_path / "prometheus.log").read_text()
            res = query('quiver_collection_items{collection="scraped"}')
            return res if res else None

        res = wait_for(items, timeout=60, what="Prometheus to scrape quiverd")
        assert len(res) == 1 and float(res[0]["value"][1]) == 7, res
        assert res[0]["metric"]["job"] == "quiverd"
        assert res[0]["metric"]["instance"] == "127.0.0.1:%d" % port
        up = query('up{job="quiverd"}')
        assert up and float(up[0]["value"][1]) == 1, up
        ok = query('quiver_rpc_requests_total{service="quiver.v1.Items",method="Upsert",code="OK"}')
        assert ok and float(ok[0]["value"][1]) == 1, ok
        bi = query("quiver_build_info")
        assert bi and bi[0]["metric"]["version"], bi
        # a histogram quantile over the scraped buckets is a number
        p99 = query("histogram_quantile(0.99, sum by (le) (quiver_rpc_duration_seconds_bucket))")
        assert p99 is not None
        # every query of the Grafana dashboard is valid PromQL for this Prometheus
        _, exprs = dashboard_exprs()
        subst = {"$__rate_interval": "1m", "$__range": "5m", "$instance": ".*", "$collection": ".*"}
        for title, ex in exprs:
            for k, v in subst.items():
                ex = ex.replace(k, v)
            url = "http://127.0.0.1:%d/api/v1/query?%s" % (prom_port, urllib.parse.urlencode({"query": ex}))
            st, _, body = http_get(url, timeout=10)
            assert st == 200 and json.loads(body)["status"] == "success", (title, ex, st, body)
    finally:
        prom.terminate()
        try:
            prom.wait(20)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()


# ------------------------------------------------------------------- deploy/
DEPLOY = os.path.join(qt.REPO, "deploy")
_FAMILY_REF = re.compile(r"\b((?:quiver|process)_[a-z0-9_]+)")
CLUSTER_PREFIX = "quiver_cluster_"   # families a node serves in cluster mode only


def dashboard_exprs():
    with open(os.path.join(DEPLOY, "grafana-dashboard.json")) as f:
        dash = json.load(f)
    exprs = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                exprs.append((p["title"], t["expr"]))
    walk(dash["panels"])
    return dash, exprs


def family_name(ref):
    for suf in ("_bucket", "_sum", "_count"):
        if ref.endswith(suf):
            return ref[:-len(suf)]
    return ref


def test_dashboard_uses_served_metrics(make_server):
    """Every metric the Grafana dashboard queries is one quiverd declares, every panel has
    a data source, and the panels cover each family quiverd serves."""
    dash, exprs = dashboard_exprs()
    assert dash["uid"] and dash["panels"] and exprs
    srv = make_server(args=ARGS)
    e = Exposition(scrape(metrics_port(srv)))
    used = set()
    for title, ex in exprs:
        for ref in _FAMILY_REF.findall(ex):
            if ref.startswith(CLUSTER_PREFIX):
                continue  # served in cluster mode only: test_cluster_cli.py checks those
            fam = ref if ref in e.types else family_name(ref)
            assert fam in e.types, "panel %r queries %s, which quiverd does not serve" % (title, ref)
            if e.types[fam] == "histogram":
                assert ref != fam, "panel %r uses histogram %s without _bucket/_sum/_count" % (title, ref)
            used.add(fam)
    unused = {f for f in e.types if f.startswith("quiver_")} - used - {
        "quiver_collections", "quiver_collection_dimensions"}
    assert not unused, "families without a panel: %s" % sorted(unused)


def test_kubernetes_manifest():
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(DEPLOY, "kubernetes.yaml")) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Service", "StatefulSet"}, list(kinds)
    svc, sts = kinds["Service"], kinds["StatefulSet"]
    assert svc["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == svc["metadata"]["name"]
    tmpl = sts["spec"]["template"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= tmpl["metadata"]["labels"].items()
    ann = tmpl["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9090"
    c, = tmpl["spec"]["containers"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["grpc"]["port"] == 50051, probe
    args = " ".join(c["args"])
    for flag in ("--listen=0.0.0.0:50051", "--metrics-listen=0.0.0.0:9090", "--data=/data",
                 "--auth-keys=/etc/quiver/keys/api-keys"):
        assert flag in args, flag
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["data"]["mountPath"] == "/data"
    assert mounts["api-keys"]["readOnly"] and "subPath" not in mounts["api-keys"]
    vols = {v["name"]: v for v in tmpl["spec"]["volumes"]}
    assert vols["api-keys"]["secret"]["secretName"]
    claim, = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert tmpl["spec"]["securityContext"]["runAsNonRoot"] is True


def test_systemd_unit(tmp_path):
    with open(os.path.join(DEPLOY, "quiverd.service")) as f:
        unit = f.read()
    for directive in ("DynamicUser=yes", "StateDirectory=quiver", "ProtectSystem=strict",
                      "ProtectHome=yes", "NoNewPrivileges=yes", "PrivateTmp=yes",
                      "LimitNOFILE=", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID",
                      "--metrics-listen", "--data /var/lib/quiver"):
        assert directive in unit, directive
    sa = shutil.which("systemd-analyze")
    if not sa:
        pytest.skip("systemd-analyze not found")
    # verify checks that ExecStart's binary exists: point it at the one under test
    p = tmp_path / "quiverd.service"
    p.write_text(unit.replace("/usr/local/bin/quiverd", os.path.abspath(qt.QUIVERD)))
    r = subprocess.run([sa, "verify", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_dockerfile():
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        text = f.read()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(x.startswith("debian:bookworm") for x in froms), froms
    assert "tools/deps.sh" in text and "cmake -S . -B build" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("0", "root")), user
    assert re.search(r'^VOLUME /data', text, re.M)
    cmd = json.loads(re.search(r"^CMD (\[.*?\])\s*$", text, re.M | re.S).group(1).replace("\\\n", ""))
    assert cmd[cmd.index("--listen") + 1] == "0.0.0.0:50051"
    assert cmd[cmd.index("--metrics-listen") + 1] == "0.0.0.0:9090"
