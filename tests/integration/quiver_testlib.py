"""Shared helpers for Quiver's integration tests (imported by conftest.py and the tests).

Environment (all optional; defaults are computed relative to this file):
  QUIVERD     path of the quiverd binary          (default <repo>/build/quiverd)
  QUIVER_PY   folder of generated Python stubs     (default <repo>/build/py; generated
              into a temporary folder with protoc when the stubs are not there)
  QUIVER_DATA folder of the data sets              (default <repo>/../shared/data)
  QUIVER_BIN  the cmake build folder               (default <repo>/build)
  QUIVER_GRPC_PROTO  root of the grpc-proto files  (default /usr/share/grpc-proto)

Run with Debian's interpreter (/usr/bin/python3): it has python3-grpcio and protobuf.
"""
import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("QUIVER_BIN") or os.path.join(REPO, "build")
QUIVERD = os.environ.get("QUIVERD") or os.path.join(BUILD, "quiverd")
# the test build of quiverd (fault injection from QUIVER_TEST_* variables,
# which quiverd itself ignores); Server picks it while such a variable is set
QUIVERD_TEST = os.environ.get("QUIVERD_TEST") or os.path.join(BUILD, "quiverd-test")
DATA = os.environ.get("QUIVER_DATA") or os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
GRPC_PROTO = os.environ.get("QUIVER_GRPC_PROTO") or "/usr/share/grpc-proto"
PROTO_DIR = os.path.join(REPO, "proto")

RPC_TIMEOUT = 30.0          # default deadline of every RPC made through Server stubs
START_TIMEOUT = 60.0        # seconds to wait for "listening on port N"
MAX_MSG = 64 << 20
CHANNEL_OPTIONS = [("grpc.max_send_message_length", MAX_MSG),
                   ("grpc.max_receive_message_length", MAX_MSG)]

_tmpdirs = []


def _tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


@atexit.register
def _cleanup_tmpdirs():
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


def protoc_python(protos, out_dir=None):
    """Generate Python + gRPC stubs with protoc.

    protos: list of (source path, import path under the staging root), e.g.
    ("/usr/share/grpc-proto/grpc/health/v1/health.proto", "grpc_health/v1/health.proto").
    Files are staged under one root so that the generated modules land in
    grpc_health/... instead of grpc/... (which the real grpc package would shadow).
    Returns the output folder."""
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    if not protoc or not os.path.exists(plugin):
        raise RuntimeError("protoc / grpc_python_plugin not found; install protobuf-compiler "
                           "and protobuf-compiler-grpc, or point QUIVER_PY at generated stubs")
    stage = _tmpdir("quiver-proto-")
    out = out_dir or _tmpdir("quiver-py-")
    for src, rel in protos:
        dst = os.path.join(stage, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
    cmd = [protoc, "-I" + stage, "--python_out=" + out, "--grpc_python_out=" + out,
           "--plugin=protoc-gen-grpc_python=" + plugin] + [rel for _, rel in protos]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("protoc failed: %s\n%s" % (" ".join(cmd), r.stderr))
    return out


def _stubs_dir():
    d = os.environ.get("QUIVER_PY") or os.path.join(BUILD, "py")
    need = ["quiver/v1/quiver_pb2.py", "quiver/v1/quiver_pb2_grpc.py",
            "grpc_health/v1/health_pb2.py", "grpc_health/v1/health_pb2_grpc.py",
            "grpc_reflection/v1alpha/reflection_pb2.py",
            "grpc_reflection/v1alpha/reflection_pb2_grpc.py"]
    if all(os.path.exists(os.path.join(d, n)) for n in need):
        return d
    return protoc_python([
        (os.path.join(PROTO_DIR, "quiver/v1/quiver.proto"), "quiver/v1/quiver.proto"),
        (os.path.join(GRPC_PROTO, "grpc/health/v1/health.proto"), "grpc_health/v1/health.proto"),
        (os.path.join(GRPC_PROTO, "grpc/reflection/v1alpha/reflection.proto"),
         "grpc_reflection/v1alpha/reflection.proto"),
    ])


STUBS = _stubs_dir()
if STUBS not in sys.path:
    sys.path.insert(0, STUBS)

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from quiver.v1 import quiver_pb2 as pb  # noqa: E402
from quiver.v1 import quiver_pb2_grpc as pbg  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2 as rpb, reflection_pb2_grpc as rpbg  # noqa: E402

SC = grpc.StatusCode
METRICS = [pb.L2, pb.INNER_PRODUCT, pb.COSINE]
MAX_ID = (1 << 63) - 1


# --------------------------------------------------------------------- stubs
class _Method:
    """A stub method with a default deadline."""

    def __init__(self, m, timeout):
        self._m, self._timeout = m, timeout

    def _kw(self, kw):
        kw.setdefault("timeout", self._timeout)
        return kw

    def __call__(self, *a, **kw):
        return self._m(*a, **self._kw(kw))

    def with_call(self, *a, **kw):
        return self._m.with_call(*a, **self._kw(kw))

    def future(self, *a, **kw):
        return self._m.future(*a, **self._kw(kw))


class _Stub:
    def __init__(self, stub, timeout=RPC_TIMEOUT):
        self._stub, self._timeout = stub, timeout

    def __getattr__(self, name):
        return _Method(getattr(self._stub, name), self._timeout)


def make_channel(addr):
    ch = grpc.insecure_channel(addr, options=CHANNEL_OPTIONS)
    grpc.channel_ready_future(ch).result(timeout=15)
    return ch


# -------------------------------------------------------------------- server
class ServerError(Exception):
    pass


class Server:
    """One quiverd process on a data folder. restart() keeps the folder."""

    def __init__(self, data_dir, log_dir, args=(), binary=None):
        # the test build while a QUIVER_TEST_* hook is set, else quiverd
        hooked = any(k.startswith("QUIVER_TEST_") for k in os.environ)
        self.binary = binary or (QUIVERD_TEST if hooked else QUIVERD)
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.args = list(args)
        self.proc = None
        self.channel = None
        self.port = None
        self.addr = None
        self.starts = 0
        self.stdout_lines = []
        self.last_returncode = None
        self._logs = []

    # --- process
    def start(self):
        if not os.path.exists(self.binary):
            raise ServerError("quiverd binary not found at %s (set QUIVERD / QUIVERD_TEST or build "
                              "the project)" % self.binary)
        os.makedirs(self.data_dir, exist_ok=True)
        self.starts += 1
        log = os.path.join(self.log_dir, "quiverd-%d.stderr" % self.starts)
        self._logs.append(log)
        cmd = [self.binary, "--listen", "127.0.0.1:0", "--data", self.data_dir] + self.args
        self._errf = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._errf)
        self.stdout_lines = []
        first = threading.Event()

        def pump(proc=self.proc, lines=self.stdout_lines):
            for raw in proc.stdout:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                first.set()
            first.set()

        pumper = threading.Thread(target=pump, daemon=True)
        pumper.start()
        deadline = time.time() + START_TIMEOUT
        while not self.stdout_lines and time.time() < deadline:
            first.wait(0.1)
            if self.proc.poll() is not None:
                pumper.join(5)  # it has exited: the pump reads what it printed, to EOF
                break
        if not self.stdout_lines:
            rc = self.proc.poll()
            self.kill()
            raise ServerError("quiverd did not print 'listening on port N' (exit code %s); "
                              "cmd: %s\n--- stderr ---\n%s" % (rc, " ".join(cmd), self.stderr_text()))
        m = re.fullmatch(r"listening on port (\d+)", self.stdout_lines[0])
        if not m:
            self.kill()
            raise ServerError("first stdout line of quiverd is %r, expected 'listening on port N'"
                              "\n--- stderr ---\n%s" % (self.stdout_lines[0], self.stderr_text()))
        self.port = int(m.group(1))
        assert 0 < self.port < 65536, self.port
        self.addr = "127.0.0.1:%d" % self.port
        self.channel = make_channel(self.addr)
        self.collections = _Stub(pbg.CollectionsStub(self.channel))
        self.items = _Stub(pbg.ItemsStub(self.channel))
        self.search = _Stub(pbg.SearchStub(self.channel))
        self.admin = _Stub(pbg.AdminStub(self.channel))
        self.health = _Stub(health_pb2_grpc.HealthStub(self.channel))
        self.reflection = _Stub(rpbg.ServerReflectionStub(self.channel))
        return self

    def _close_channel(self):
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signal the server and wait for it; returns the exit code."""
        self._close_channel()
        if self.proc is None:
            return self.last_returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._finish()
            raise ServerError("quiverd did not exit within %ss of signal %s\n--- stderr ---\n%s"
                              % (timeout, sig, self.stderr_text()))
        self._finish()
        return rc

    def _finish(self):
        self.last_returncode = self.proc.returncode
        self.proc = None
        try:
            self._errf.close()
        except Exception:
            pass

    def kill(self):
        """kill -9, wait."""
        self._close_channel()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self._finish()

    def restart(self, kill=False):
        """Stop (SIGTERM, clean exit required; or kill -9) and start again on the same folder."""
        if kill:
            self.kill()
        else:
            rc = self.stop()
            if rc != 0:
                raise ServerError("quiverd exited with %s on SIGTERM (expected 0)\n--- stderr ---\n%s"
                                  % (rc, self.stderr_text()))
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self, limit=20000):
        out = []
        for i, p in enumerate(self._logs):
            try:
                with open(p, "rb") as f:
                    t = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            out.append("[run %d] %s" % (i + 1, t))
        s = "\n".join(out)
        return s if len(s) <= limit else "...(truncated)...\n" + s[-limit:]

    # --- convenience
    # (timeout: the RPC deadline in seconds; None = RPC_TIMEOUT)
    @staticmethod
    def _t(timeout):
        return RPC_TIMEOUT if timeout is None else timeout

    def create(self, name, dim, metric=pb.L2, kind=None, timeout=None, **index):
        spec = pb.IndexSpec(kind=kind, **index) if (kind is not None or index) else None
        req = pb.CreateCollectionRequest(name=name, dim=dim, metric=metric)
        if spec is not None:
            req.index.CopyFrom(spec)
        return self.collections.Create(req, timeout=self._t(timeout))

    def describe(self, name, timeout=None):
        return self.collections.Describe(pb.DescribeCollectionRequest(name=name),
                                         timeout=self._t(timeout))

    def upsert(self, coll, items, timeout=None):
        return self.items.Upsert(pb.UpsertRequest(collection=coll, items=items),
                                 timeout=self._t(timeout)).upserted

    def get(self, coll, ids, with_vectors=True, timeout=None):
        return self.items.Get(pb.GetItemsRequest(collection=coll, ids=list(ids),
                                                 with_vectors=with_vectors), timeout=self._t(timeout))

    def delete(self, coll, ids, timeout=None):
        return self.items.Delete(pb.DeleteItemsRequest(collection=coll, ids=list(ids)),
                                 timeout=self._t(timeout)).deleted

    def search_vectors(self, coll, vectors, k=10, timeout=None, **kw):
        """kw: other SearchRequest fields (nprobe, min_recall, without_attributes)."""
        qs = [pb.Query(vector=pb.Vector(values=[float(x) for x in v])) for v in vectors]
        return self.search.Search(pb.SearchRequest(collection=coll, queries=qs, k=k, **kw),
                                  timeout=self._t(timeout))


# ------------------------------------------------------------------- helpers
class WaitTimeout(AssertionError):
    """wait_for's deadline passed: the message names what was awaited."""


def wait_for(cond, timeout, what, interval=0.02):
    """Polls cond() until it returns a true value, and returns that value. Past `timeout`
    seconds raises WaitTimeout naming `what` (a string, or a function called then, so
    that it can describe the state at that moment) and cond's last value. Use it where a
    test waits for something to happen, never a fixed sleep: a sleep is too short on a
    slow machine and too long on a fast one."""
    t0 = time.monotonic()
    while True:
        last = cond()
        if last:
            return last
        waited = time.monotonic() - t0
        if waited > timeout:
            desc = what() if callable(what) else what
            raise WaitTimeout("timed out after %.1f s waiting for %s (last: %r)"
                              % (waited, desc, last))
        time.sleep(interval)


def require_tool(name, package):
    """Path of a program that tools/deps.sh installs; a missing one fails the test (it is
    a broken set-up, not a reason to skip)."""
    import pytest
    p = shutil.which(name)
    if not p:
        pytest.fail("%s not found: tools/deps.sh installs it (Debian package %s)"
                    % (name, package), pytrace=False)
    return p


def require_built(path):
    """Path of a program this project builds; a missing one fails the test."""
    import pytest
    if not os.access(path, os.X_OK):
        pytest.fail("%s is not built (cmake --build %s)" % (path, BUILD), pytrace=False)
    return path


def expect_error(fn, code, *substrings):
    """Call fn(), require an RpcError with `code` whose details contain every substring.
    Substrings may be tuples meaning 'one of these'. Returns the details."""
    try:
        r = fn()
    except grpc.RpcError as e:
        det = e.details() or ""
        assert e.code() == code, "expected %s, got %s %r" % (code, e.code(), det)
        for s in substrings:
            alts = s if isinstance(s, tuple) else (s,)
            assert any(a.lower() in det.lower() for a in alts), \
                "status %s message %r does not mention %r" % (code, det, s)
        return det
    raise AssertionError("expected %s, call succeeded: %r" % (code, r))


def item(id_, vec, attrs=None):
    it = pb.Item(id=id_, vector=[float(x) for x in vec])
    for k, v in (attrs or {}).items():
        it.attributes[k].CopyFrom(value(v))
    return it


def value(v):
    """Python value -> quiver.v1.Value."""
    if isinstance(v, pb.Value):
        return v
    if isinstance(v, bool):
        return pb.Value(bool_value=v)
    if isinstance(v, int):
        return pb.Value(int_value=v)
    if isinstance(v, float):
        return pb.Value(double_value=v)
    if isinstance(v, str):
        return pb.Value(string_value=v)
    if isinstance(v, (list, tuple)):
        return pb.Value(string_list=pb.StringList(values=list(v)))
    raise TypeError(type(v))


def attrs_of(msg):
    """map<string, Value> -> {key: (kind, python value)} for exact comparison."""
    out = {}
    for k, v in msg.attributes.items():
        kind = v.WhichOneof("kind")
        val = getattr(v, kind) if kind else None
        if kind == "string_list":
            val = list(val.values)
        out[k] = (kind, val)
    return out


def expected_attrs(d):
    return attrs_of(pb.Item(attributes={k: value(v) for k, v in d.items()}))


def f32(v):
    return np.asarray(list(v), dtype=np.float32)


def bits(v):
    """float32 array -> uint32 bit patterns (for bitwise equality, -0.0 and all)."""
    return np.ascontiguousarray(np.asarray(v, dtype=np.float32)).view(np.uint32)


def rand_vectors(rng, n, dim, scale=1.0):
    return (rng.standard_normal((n, dim)) * scale).astype(np.float32)


def normalize(x):
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / n


def brute_force(base_ids, base, queries, metric, k):
    """Exact top-k: returns list of (ids, scores) per query, computed in float64."""
    base = np.asarray(base, dtype=np.float64)
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    base_ids = np.asarray(base_ids)
    out = []
    if metric == pb.L2:
        d = ((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1)
        order = np.argsort(d, axis=1, kind="stable")
        for qi in range(len(queries)):
            o = order[qi, :k]
            out.append((base_ids[o].tolist(), d[qi, o].tolist(), dict(zip(base_ids.tolist(), d[qi]))))
        return out
    if metric == pb.COSINE:
        base, queries = normalize(base), normalize(queries)
    s = queries @ base.T
    order = np.argsort(-s, axis=1, kind="stable")
    for qi in range(len(queries)):
        o = order[qi, :k]
        out.append((base_ids[o].tolist(), s[qi, o].tolist(), dict(zip(base_ids.tolist(), s[qi]))))
    return out


def assert_hits_match(hits, expected, atol=1e-4, tie=2e-5, what=""):
    """hits: a quiver.v1.Hits; expected: (ids, scores, all_scores) from brute_force.
    Scores must match position by position within atol; ids must match except that two
    items whose exact scores tie (within `tie`) may swap."""
    exp_ids, exp_scores, all_scores = expected
    got_ids = [h.id for h in hits.hits]
    got_scores = [h.score for h in hits.hits]
    assert len(got_ids) == len(exp_ids), "%s: %d hits, expected %d (got %s, expected %s)" % (
        what, len(got_ids), len(exp_ids), got_ids, exp_ids)
    assert len(set(got_ids)) == len(got_ids), "%s: duplicate ids in hits %s" % (what, got_ids)
    np.testing.assert_allclose(got_scores, exp_scores, rtol=1e-5, atol=atol,
                               err_msg="%s: scores differ (ids got %s expected %s)"
                               % (what, got_ids, exp_ids))
    for i, (g, e) in enumerate(zip(got_ids, exp_ids)):
        if g != e:
            assert g in all_scores and abs(all_scores[g] - exp_scores[i]) <= tie, \
                "%s: hit %d is id %d (exact score %s), expected id %d (score %s); got %s expected %s" % (
                    what, i, g, all_scores.get(g), e, exp_scores[i], got_ids, exp_ids)


def fvecs(path, count=None):
    """Read the first `count` vectors of an .fvecs file."""
    with open(path, "rb") as f:
        d = int(np.frombuffer(f.read(4), dtype=np.int32)[0])
    n = -1 if count is None else count * (d + 1)
    a = np.fromfile(path, dtype=np.int32, count=n)
    return a.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()


def data_set(name):
    """Folder of a data set, or skip the test when it is missing."""
    import pytest
    p = os.path.join(DATA, name)
    if not os.path.isdir(p):
        pytest.skip("data set %s not found under %s (set QUIVER_DATA)" % (name, DATA))
    return p


# ------------------------------------------- issue 9: filters, similarities (ground truth)
# A filter is written in the tests as plain Python: F(must=[...], should=[...], must_not=[...])
# holding conditions eq / any_of / in_range / exists / has_id / nested. to_filter() turns it
# into a quiver.v1.Filter; filter_match() evaluates it here, independently of the server,
# over the attributes the test wrote (the ground truth).
def F(must=(), should=(), must_not=()):
    return {"must": list(must), "should": list(should), "must_not": list(must_not)}


def eq(key, v):
    return ("eq", key, v)


def any_of(key, *vs):
    return ("any", key, list(vs))


def in_range(key, lo=None, hi=None, lo_inc=True, hi_inc=True):
    """Numeric range; None = open bound."""
    return ("range", key, lo, lo_inc, hi, hi_inc)


def exists(key, present=True):
    return ("exists", key, present)


def has_id(*ids):
    return ("ids", [int(i) for i in ids])


def nested(f):
    return ("filter", f)


def to_condition(c):
    cd = pb.Condition()
    kind = c[0]
    if kind == "filter":
        cd.filter.CopyFrom(to_filter(c[1]))
    elif kind == "ids":
        cd.has_id.SetInParent()
        cd.has_id.ids.extend(c[1])
    else:
        fc = cd.field
        fc.SetInParent()
        fc.key = c[1]
        if kind == "eq":
            fc.equals.CopyFrom(value(c[2]))
        elif kind == "any":
            fc.any_of.SetInParent()
            fc.any_of.values.extend([value(v) for v in c[2]])
        elif kind == "range":
            _, _, lo, lo_inc, hi, hi_inc = c
            fc.range.SetInParent()
            if lo is not None:
                fc.range.lower.SetInParent()
                fc.range.lower.value = float(lo)
                fc.range.lower.inclusive = lo_inc
            if hi is not None:
                fc.range.upper.SetInParent()
                fc.range.upper.value = float(hi)
                fc.range.upper.inclusive = hi_inc
        elif kind == "exists":
            fc.exists = bool(c[2])
        else:
            raise ValueError(kind)
    return cd


def to_filter(f):
    if isinstance(f, pb.Filter):
        return f
    return pb.Filter(must=[to_condition(c) for c in f["must"]],
                     should=[to_condition(c) for c in f["should"]],
                     must_not=[to_condition(c) for c in f["must_not"]])


def _is_num(a):
    return isinstance(a, (int, float)) and not isinstance(a, bool)


def value_equals(v, a):
    """FieldCondition.equals: v (the test's value) against a (an item's attribute)."""
    if isinstance(v, bool):
        return isinstance(a, bool) and a == v
    if isinstance(v, str):
        return (isinstance(a, str) and a == v) or (isinstance(a, list) and v in a)
    if _is_num(v):
        return _is_num(a) and a == v      # Python compares int and float numerically
    raise TypeError(type(v))


def cond_match(c, id_, attrs):
    kind = c[0]
    if kind == "filter":
        return filter_match(c[1], id_, attrs)
    if kind == "ids":
        return id_ in c[1]
    key = c[1]
    if kind == "exists":
        return (key in attrs) == c[2]
    if key not in attrs:
        return False
    a = attrs[key]
    if kind == "eq":
        return value_equals(c[2], a)
    if kind == "any":
        return any(value_equals(v, a) for v in c[2])
    if kind == "range":
        _, _, lo, lo_inc, hi, hi_inc = c
        if not _is_num(a):
            return False
        if lo is not None and not (a >= lo if lo_inc else a > lo):
            return False
        if hi is not None and not (a <= hi if hi_inc else a < hi):
            return False
        return True
    raise ValueError(kind)


def filter_match(f, id_, attrs):
    if isinstance(f, tuple):
        return cond_match(f, id_, attrs)
    return (all(cond_match(c, id_, attrs) for c in f["must"])
            and (not f["should"] or any(cond_match(c, id_, attrs) for c in f["should"]))
            and not any(cond_match(c, id_, attrs) for c in f["must_not"]))


def similarity(a, b, metric):
    """Pairwise similarity in float64 (rows of a x rows of b): COSINE cosine, INNER_PRODUCT
    dot, L2 minus the squared distance."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if metric == pb.L2:
        return -((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    if metric == pb.COSINE:
        a, b = normalize(a), normalize(b)
    return a @ b.T


def ranked(ids, scores, k, ascending):
    """(ids, scores, all_scores) of the best k, the triple assert_hits_match wants."""
    ids = [int(i) for i in ids]
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores if ascending else -scores, kind="stable")[:k]
    return [ids[o] for o in order], [float(scores[o]) for o in order], dict(zip(ids, scores.tolist()))
