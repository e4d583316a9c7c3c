"""Helpers that start a Quiver cluster's pieces from a test: NATS JetStream, etcd, quiverd nodes.

    from cluster_lib import Nats, Etcd, ClusterNode, Cluster, cluster_factory

    def test_x(cluster_factory):
        c = cluster_factory(nodes=4, nats=3)      # started; wait_ready() already passed
        c.nodes[0].create("c", 8)                 # each node is a quiver_testlib.Server
        c.nats.kill(c.nats.stream_leader("..."))  # kill -9 the stream's leader
        c.nats.restart(i)

Everything runs on free loopback ports chosen at run time (never fixed ones), under one
base folder (a temporary one unless given): nats1..3/, etcd/, node1..N/. Indices given
to methods are 0-based (nats.kill(0) kills nats1, server_name "n1").

No process outlives the test: Cluster is a context manager and the cluster_factory
fixture stops everything at the end of the test, atexit kills whatever is left, and a
watchdog process (one per Python process) kills what this module started when the
Python process dies without running atexit (kill -9 of pytest, a ctest timeout). A
test that kill -9s a process itself should still call the object's method for it
(kill / stop), so the pid is forgotten before the kernel can reuse it.

Also: free_port(s), pid_running, live_pids, kill_all, nats_request (one request over
NATS's text protocol: JetStream API calls, publishes) and Nats.add_stream / publish /
js_api, require_cluster_quiverd (fail a test when quiverd has no cluster flags; the
fixture calls it when it starts nodes).

Engines: nats-server 2.9 (Debian nats-server), etcd 3.4 (Debian etcd-server); paths from
$QUIVER_NATS_SERVER / $QUIVER_ETCD, else found on PATH (and /usr/sbin).
"""
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quiver_testlib as qt  # noqa: E402
from quiver_testlib import pb, health_pb2  # noqa: E402

try:
    import pytest
except ImportError:  # usable outside pytest (a script, an interactive session)
    pytest = None

NATS_READY_TIMEOUT = 30.0
ETCD_READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0          # SIGTERM, then SIGKILL after this many seconds


# ------------------------------------------------------------------ binaries
def _which(env, name):
    p = os.environ.get(env)
    if p:
        return p
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/usr/bin", "/sbin"]:
        c = os.path.join(d, name)
        if os.access(c, os.X_OK):
            return c
    return None


def nats_server_binary():
    return _which("QUIVER_NATS_SERVER", "nats-server")


def etcd_binary():
    return _which("QUIVER_ETCD", "etcd")


def _require(path, name, package):
    if path and os.access(path, os.X_OK):
        return path
    msg = "%s not found: tools/deps.sh installs it (Debian package %s)" % (name, package)
    if pytest is not None:
        pytest.fail(msg, pytrace=False)
    raise RuntimeError(msg)


def require_cluster_quiverd(binary=None):
    """The quiverd binary (default: $QUIVERD); a test fails (pytest) or RuntimeError when it
    lacks the cluster flags."""
    binary = binary or qt.QUIVERD
    if not quiverd_has_cluster_flags(binary):
        msg = ("%s has no cluster mode (no --cluster-etcd in its --help): build quiverd with "
               "issue 18's cluster flags (set QUIVERD)" % binary)
        if pytest is not None:
            pytest.fail(msg, pytrace=False)
        raise RuntimeError(msg)
    return binary


def quiverd_has_cluster_flags(binary=None):
    """True when quiverd's --help lists the cluster flags (--cluster-etcd)."""
    binary = binary or qt.QUIVERD
    try:
        r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--cluster-etcd" in (r.stdout + r.stderr)


# --------------------------------------------------------------------- ports
def free_ports(n):
    """n distinct free loopback TCP ports (each bound to port 0 by the kernel, all held
    until all are chosen, then released for the caller to bind)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port():
    return free_ports(1)[0]


# ------------------------------------------------- processes that never outlive us
def _start_time(pid):
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None if gone: with the
    pid it identifies a process, so a reused pid is never mistaken for ours."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
        return s[s.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


_WATCHDOG = r"""
import os, signal, sys
def st(pid):
    try:
        s = open("/proc/%d/stat" % pid).read()
        return s[s.rindex(")") + 2:].split()[19]
    except Exception:
        return None
pids = {}
for line in sys.stdin:
    w = line.split()
    if len(w) == 3 and w[0] == "+":
        pids[int(w[1])] = w[2]
    elif len(w) == 2 and w[0] == "-":
        pids.pop(int(w[1]), None)
# stdin closed: the test process exited (or died); kill what it left
for pid, t in pids.items():
    if st(pid) == t:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
"""

_lock = threading.RLock()
_live = {}                # pid -> (Popen, start time): every process this module started
_watchdog = None


def _track(proc):
    """Remember a started process: atexit and the watchdog kill it if it is still ours."""
    global _watchdog
    t = _start_time(proc.pid)
    if t is None:
        return
    with _lock:
        _live[proc.pid] = (proc, t)
        try:
            if _watchdog is None or _watchdog.poll() is not None:
                _watchdog = subprocess.Popen(
                    [sys.executable, "-c", _WATCHDOG], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True)
                for pid, (_, st) in _live.items():
                    _watchdog.stdin.write(("+ %d %s\n" % (pid, st)).encode())
            else:
                _watchdog.stdin.write(("+ %d %s\n" % (proc.pid, t)).encode())
            _watchdog.stdin.flush()
        except (OSError, ValueError):
            pass


def _untrack(pid):
    with _lock:
        if _live.pop(pid, None) is None:
            return
        try:
            if _watchdog is not None and _watchdog.poll() is None:
                _watchdog.stdin.write(("- %d\n" % pid).encode())
                _watchdog.stdin.flush()
        except (OSError, ValueError):
            pass


def live_pids():
    """Pids of the processes this module started that are still running (and ours)."""
    with _lock:
        return sorted(pid for pid, (p, t) in _live.items()
                      if p.poll() is None and _start_time(pid) == t)


def pid_running(pid):
    """True while the pid names a process that is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
        return s[s.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return False


@atexit.register
def kill_all():
    """Kill -9 every process this module started and still runs (also the atexit hook)."""
    global _watchdog
    with _lock:
        for pid, (p, t) in list(_live.items()):
            if p.poll() is None and _start_time(pid) == t:
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        p.send_signal(sig)
                    except OSError:
                        pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
            _live.pop(pid, None)
        if _watchdog is not None:
            try:
                _watchdog.stdin.close()      # EOF: it exits (nothing left to kill)
                _watchdog.wait(5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
            _watchdog = None


class Proc:
    """One engine process (nats-server, etcd): started with its stdout and stderr in a
    log file; stop() = SIGTERM then SIGKILL; kill(sig) sends any signal. It has data_dir
    and stderr_text() like quiver_testlib.Server, so conftest.py's report hook can show
    its log when a test fails (add it to request.node._quiver_servers)."""

    def __init__(self, name, cmd, data_dir, log_path):
        self.name = name
        self.cmd = list(cmd)
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc = None
        self.starts = 0
        self.last_returncode = None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def start(self):
        if self.alive():
            raise RuntimeError("%s is already running (pid %d)" % (self.name, self.proc.pid))
        self._reap()
        os.makedirs(self.data_dir, exist_ok=True)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(b"=== start %d: %s\n" % (self.starts, " ".join(self.cmd).encode()))
            log.flush()
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        _track(self.proc)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _reap(self):
        if self.proc is not None and self.proc.poll() is not None:
            self.last_returncode = self.proc.returncode
            _untrack(self.proc.pid)
            self.proc = None

    def kill(self, sig=signal.SIGKILL, wait=None):
        """Send sig (default SIGKILL). Waits for the exit when sig ends it for sure
        (SIGKILL) or when wait is true; returns the exit code then, else None."""
        if self.proc is None:
            return self.last_returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        if wait is None:
            wait = sig == signal.SIGKILL
        if not wait:
            return None
        if sig == signal.SIGKILL:
            self.proc.wait()
        else:
            self.proc.wait(STOP_TIMEOUT)
        rc = self.proc.returncode
        self._reap()
        return rc

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM (SIGCONT first, should it be paused), SIGKILL after timeout; returns
        the exit code."""
        if self.proc is None:
            return self.last_returncode
        if self.proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    self.proc.send_signal(sig)
                except OSError:
                    pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self._reap()
        return rc

    def pause(self):
        self.kill(signal.SIGSTOP, wait=False)

    def resume(self):
        self.kill(signal.SIGCONT, wait=False)

    def stderr_text(self, limit=20000):
        try:
            with open(self.log_path, "rb") as f:
                t = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return t if len(t) <= limit else "...(truncated)...\n" + t[-limit:]


def http_get(url, timeout=2.0):
    """(status, body text) of a GET; (None, error text) when no answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (OSError, ValueError) as e:   # URLError, timeouts, refused
        return None, str(e)


def http_json(url, timeout=2.0):
    """The JSON document at url, or None when there is no answer or no JSON."""
    code, body = http_get(url, timeout)
    if code is None:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


# ---------------------------------------------------------------------- NATS
class NatsError(Exception):
    pass


def nats_request(url, subject, payload=b"", timeout=5.0, headers=None):
    """One request over NATS's text protocol (no client library needed): connect to url
    ("nats://host:port"), subscribe an inbox, PUB (or HPUB with headers, a dict) subject
    with payload, return the first reply's payload (bytes). JetStream's API is such
    requests: "$JS.API.STREAM.CREATE.<name>", "$JS.API.STREAM.INFO.<name>", and a
    publish to a stream's subject replies with its PubAck JSON. Raises NatsError
    ("503 no responders", a -ERR, a timeout)."""
    if isinstance(payload, str):
        payload = payload.encode()
    hostport = url.split("://", 1)[-1].split(",")[0]
    host, port = hostport.rsplit(":", 1)
    inbox = "_INBOX.cl%d%d" % (os.getpid(), int(time.monotonic() * 1e6))
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        f = s.makefile("rb")

        def line():
            s.settimeout(max(0.01, deadline - time.monotonic()))
            ln = f.readline()
            if not ln:
                raise NatsError("connection closed by %s" % url)
            return ln.rstrip(b"\r\n")

        info = line()
        if not info.startswith(b"INFO "):
            raise NatsError("unexpected greeting %r" % info[:80])
        out = [b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}',
               b"SUB " + inbox.encode() + b" 1"]
        if headers:
            hdr = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), str(v).encode())
                                            for k, v in headers.items()) + b"\r\n"
            out.append(b"HPUB %s %s %d %d" % (subject.encode(), inbox.encode(), len(hdr),
                                             len(hdr) + len(payload)))
            out.append(hdr + payload)
        else:
            out.append(b"PUB %s %s %d" % (subject.encode(), inbox.encode(), len(payload)))
            out.append(payload)
        s.sendall(b"\r\n".join(out) + b"\r\n")
        try:
            while True:
                ln = line()
                if ln == b"PING":
                    s.sendall(b"PONG\r\n")
                elif ln.startswith(b"-ERR"):
                    raise NatsError(ln.decode("utf-8", "replace"))
                elif ln.startswith(b"MSG ") or ln.startswith(b"HMSG "):
                    w = ln.split()
                    size = int(w[-1])
                    hsize = int(w[-2]) if w[0] == b"HMSG" else 0
                    body = b""
                    while len(body) < size + 2:
                        s.settimeout(max(0.01, deadline - time.monotonic()))
                        chunk = f.read(size + 2 - len(body))
                        if not chunk:
                            raise NatsError("connection closed by %s" % url)
                        body += chunk
                    hdr, data = body[:hsize], body[hsize:size]
                    if hdr.startswith(b"NATS/1.0 503"):
                        raise NatsError("503 no responders for %s" % subject)
                    return data
        except socket.timeout:
            raise NatsError("no reply to %s within %.1f s" % (subject, timeout))


class Nats:
    """A JetStream cluster of n nats-server processes (n = 3, or 1 for development) on
    loopback, configured as in CLUSTER-ENGINES.md: max_payload 8MB, file store under
    base_dir/natsI/jetstream, cluster routes between all (n > 1), monitoring on .http[i].

    .urls        ["nats://127.0.0.1:P", ...] (client URLs, one per server)
    .url         the same joined by commas (what --cluster-nats takes)
    .names       server names ["n1", "n2", "n3"]
    .kill(i, sig=SIGKILL)   signal server i; waits for the exit on SIGKILL
    .stop(i=None)           SIGTERM (SIGKILL after a timeout) server i, or all
    .start(i=None) / .restart(i, kill=False)   same ports, same store
    .pause(i) / .resume(i)  SIGSTOP / SIGCONT
    .wait_ready(timeout, servers=None)  every running server (or those given) answers
                 /healthz and sees a JetStream meta leader
    .meta_leader() index of the meta leader, or None
    .stream_leader(stream) index of the server leading that stream, or None
    .stream_info(stream)   the stream's detail from /jsz (config, state, cluster)
    """

    def __init__(self, base_dir, n=3, cluster_name=None, max_payload="8MB", binary=None,
                 start=True, ready_timeout=NATS_READY_TIMEOUT, extra_config=""):
        if n < 1:
            raise ValueError("n must be >= 1")
        self.binary = _require(binary or nats_server_binary(), "nats-server", "nats-server")
        self.base_dir = os.path.abspath(base_dir)
        self.n = n
        ports = free_ports(3 * n)
        self.ports = ports[0:n]
        self.cluster_ports = ports[n:2 * n]
        self.http_ports = ports[2 * n:3 * n]
        self.names = ["n%d" % (i + 1) for i in range(n)]
        # a name of its own: should a port of this cluster be reused by another test's
        # NATS server, the two refuse each other's routes
        self.cluster_name = cluster_name or "qv%d" % self.cluster_ports[0]
        self.urls = ["nats://127.0.0.1:%d" % p for p in self.ports]
        self.url = ",".join(self.urls)
        self.http = ["http://127.0.0.1:%d" % p for p in self.http_ports]
        self.procs = []
        for i in range(n):
            d = os.path.join(self.base_dir, "nats%d" % (i + 1))
            os.makedirs(d, exist_ok=True)
            conf = os.path.join(d, "nats.conf")
            with open(conf, "w") as f:
                f.write(self._config(i, d, self.cluster_name, max_payload, extra_config))
            self.procs.append(Proc(self.names[i], [self.binary, "-c", conf], d,
                                   os.path.join(d, "nats.log")))
        if start:
            self.start()
            self.wait_ready(ready_timeout)

    def _config(self, i, d, cluster_name, max_payload, extra):
        c = ["server_name: %s" % self.names[i],
             "listen: 127.0.0.1:%d" % self.ports[i],
             "http: 127.0.0.1:%d" % self.http_ports[i],
             "max_payload: %s" % max_payload,
             'jetstream { store_dir: "%s", max_memory_store: 256MB, max_file_store: 8GB }'
             % os.path.join(d, "jetstream")]
        if self.n > 1:
            routes = ", ".join("nats-route://127.0.0.1:%d" % p for p in self.cluster_ports)
            c.append("cluster { name: %s, listen: 127.0.0.1:%d, routes: [%s] }"
                     % (cluster_name, self.cluster_ports[i], routes))
        if extra:
            c.append(extra)
        return "\n".join(c) + "\n"

    def _idx(self, i):
        return range(self.n) if i is None else [i]

    def start(self, i=None):
        for j in self._idx(i):
            if not self.procs[j].alive():
                self.procs[j].start()
        return self

    def stop(self, i=None, timeout=STOP_TIMEOUT):
        for j in self._idx(i):
            self.procs[j].stop(timeout)

    def kill(self, i, sig=signal.SIGKILL):
        return self.procs[i].kill(sig)

    def pause(self, i):
        self.procs[i].pause()

    def resume(self, i):
        self.procs[i].resume()

    def restart(self, i, kill=False, wait=True, timeout=NATS_READY_TIMEOUT):
        """Stop server i (SIGTERM, or kill -9), start it on the same ports and store, and
        (wait) until it is healthy and sees a meta leader."""
        if kill:
            self.procs[i].kill()
        else:
            self.procs[i].stop()
        self.procs[i].start()
        if wait:
            self.wait_ready(timeout, servers=[i])

    def alive(self, i):
        return self.procs[i].alive()

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    # --- monitoring
    def healthz(self, i, js_enabled_only=False):
        """(HTTP status, body) of server i's /healthz (None when it does not answer)."""
        q = "?js-enabled-only=true" if js_enabled_only else ""
        return http_get(self.http[i] + "/healthz" + q)

    def jsz(self, i, streams=False, timeout=2.0):
        q = "?accounts=true&streams=true&config=true" if streams else ""
        return http_json(self.http[i] + "/jsz" + q, timeout)

    def varz(self, i):
        return http_json(self.http[i] + "/varz")

    def _running(self):
        return [i for i in range(self.n) if self.procs[i].alive()]

    def meta_leader(self):
        """Index of the JetStream meta leader as the running servers see it, or None."""
        for i in self._running():
            j = self.jsz(i)
            name = ((j or {}).get("meta_cluster") or {}).get("leader")
            if self.n == 1 and j is not None and j.get("config") is not None:
                return 0
            if name in self.names:
                return self.names.index(name)
        return None

    def _ready(self, i):
        code, _ = self.healthz(i)
        if code != 200:
            return False
        if self.n == 1:
            return True
        j = self.jsz(i)
        return bool(((j or {}).get("meta_cluster") or {}).get("leader"))

    def wait_ready(self, timeout=NATS_READY_TIMEOUT, servers=None):
        servers = self._running() if servers is None else list(servers)

        def ok():
            for i in servers:
                if not self.procs[i].alive():
                    raise RuntimeError("nats-server %s exited (code %s)\n--- log ---\n%s" % (
                        self.names[i], self.procs[i].proc.poll(), self.procs[i].stderr_text()))
            return all(self._ready(i) for i in servers)

        qt.wait_for(ok, timeout, lambda: "NATS servers %s ready (healthz, meta leader); "
                    "states: %s" % ([self.names[i] for i in servers],
                                    [(self.names[i], self.healthz(i)) for i in servers]),
                    interval=0.1)
        return self

    def _stream_details(self, i):
        j = self.jsz(i, streams=True)
        out = []
        for acc in (j or {}).get("account_details") or []:
            out.extend(acc.get("stream_detail") or [])
        return out

    def stream_info(self, stream):
        """The stream's entry in /jsz?streams=true (keys name, config, state, cluster)
        from a running server that holds it (its leader's view first), or None."""
        found = None
        for i in self._running():
            for sd in self._stream_details(i):
                if sd.get("name") == stream:
                    if ((sd.get("cluster") or {}).get("leader")) == self.names[i]:
                        return sd
                    found = found or sd
        return found

    def stream_leader(self, stream):
        """Index (0-based) of the server that leads the stream's Raft group, or None
        while it has none (or no running server holds the stream). A server's own claim
        counts first; else the leader the other running servers report."""
        seen = {}
        for i in self._running():
            for sd in self._stream_details(i):
                if sd.get("name") != stream:
                    continue
                name = (sd.get("cluster") or {}).get("leader")
                if self.n == 1:
                    return 0
                if name == self.names[i]:
                    return i
                if name in self.names:
                    seen[name] = seen.get(name, 0) + 1
        for name, _ in sorted(seen.items(), key=lambda kv: -kv[1]):
            j = self.names.index(name)
            if self.procs[j].alive():
                return j
        return None

    def logs(self):
        return {self.names[i]: self.procs[i].stderr_text() for i in range(self.n)}

    # --- requests (NATS text protocol; no client library needed)
    def request(self, subject, payload=b"", timeout=5.0, headers=None, i=None):
        """nats_request to server i, or to the first running server that answers."""
        servers = [i] if i is not None else self._running()
        err = None
        for j in servers:
            try:
                return nats_request(self.urls[j], subject, payload, timeout, headers)
            except (OSError, NatsError) as e:
                err = e
        raise NatsError("no running NATS server answered %s: %s" % (subject, err))

    def js_api(self, what, body=None, timeout=5.0):
        """A JetStream API call ("STREAM.INFO.name", ...): the reply's JSON; raises
        NatsError when it holds an error."""
        r = json.loads(self.request("$JS.API." + what,
                                    json.dumps(body).encode() if body is not None else b"",
                                    timeout))
        if r.get("error"):
            raise NatsError("%s: %s" % (what, r["error"]))
        return r

    def add_stream(self, name, subjects, replicas=None, timeout=10.0, **config):
        """Create a file-stored stream (replicas default: the cluster's size)."""
        cfg = {"name": name, "subjects": list(subjects), "storage": "file",
               "num_replicas": replicas or self.n}
        cfg.update(config)
        return self.js_api("STREAM.CREATE." + name, cfg, timeout)

    def publish(self, subject, payload, msg_id=None, timeout=5.0):
        """A JetStream publish: the PubAck ({"stream", "seq", "duplicate"?})."""
        r = json.loads(self.request(subject, payload, timeout,
                                    headers={"Nats-Msg-Id": msg_id} if msg_id else None))
        if r.get("error"):
            raise NatsError("publish to %s: %s" % (subject, r["error"]))
        return r


# ---------------------------------------------------------------------- etcd
class Etcd:
    """One etcd member on loopback, data under base_dir/etcd/data.

    .url / .urls   "http://127.0.0.1:P" (client URL) / [url]
    .start() / .stop() / .restart(kill=False)  same ports, same data
    .kill(sig=SIGKILL)   .pause() / .resume()  (SIGSTOP / SIGCONT)
    .healthy(timeout)    /health says {"health":"true"}
    .wait_ready(timeout)
    """

    def __init__(self, base_dir, name="e0", binary=None, start=True,
                 ready_timeout=ETCD_READY_TIMEOUT, extra_args=()):
        self.binary = _require(binary or etcd_binary(), "etcd", "etcd-server")
        self.dir = os.path.join(os.path.abspath(base_dir), "etcd")
        self.name = name
        self.port, self.peer_port = free_ports(2)
        self.url = "http://127.0.0.1:%d" % self.port
        self.urls = [self.url]
        self.peer_url = "http://127.0.0.1:%d" % self.peer_port
        cmd = [self.binary, "--name", name, "--data-dir", os.path.join(self.dir, "data"),
               "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
               "--listen-peer-urls", self.peer_url,
               "--initial-advertise-peer-urls", self.peer_url,
               "--initial-cluster", "%s=%s" % (name, self.peer_url),
               "--initial-cluster-token", "qv%d" % self.peer_port,
               "--initial-cluster-state", "new"] + list(extra_args)
        self.proc = Proc("etcd", cmd, self.dir, os.path.join(self.dir, "etcd.log"))
        self.data_dir = self.dir
        if start:
            self.start()
            self.wait_ready(ready_timeout)

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        self.proc.start()
        return self

    def stop(self, timeout=STOP_TIMEOUT):
        return self.proc.stop(timeout)

    def kill(self, sig=signal.SIGKILL):
        return self.proc.kill(sig)

    def pause(self):
        self.proc.pause()

    def resume(self):
        self.proc.resume()

    def restart(self, kill=False, wait=True, timeout=ETCD_READY_TIMEOUT):
        if kill:
            self.proc.kill()
        else:
            self.proc.stop()
        self.proc.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def alive(self):
        return self.proc.alive()

    def healthy(self, timeout=1.0):
        j = http_json(self.url + "/health", timeout)
        return bool(j) and str(j.get("health")) == "true"

    def wait_ready(self, timeout=ETCD_READY_TIMEOUT):
        def ok():
            if not self.proc.alive():
                raise RuntimeError("etcd exited (code %s)\n--- log ---\n%s"
                                   % (self.proc.proc.poll(), self.proc.stderr_text()))
            return self.healthy()
        qt.wait_for(ok, timeout, "etcd %s healthy" % self.url, interval=0.1)
        return self

    def stderr_text(self, limit=20000):
        return self.proc.stderr_text(limit)


# ------------------------------------------------------------------ quiverd
class ClusterNode(qt.Server):
    """A quiver_testlib.Server started with the cluster flags:
        --listen 127.0.0.1:PORT --advertise 127.0.0.1:PORT --node-id ID
        --cluster-etcd URLS --cluster-nats URLS [--no-shards] [args...]
    The port is chosen once, up front (the advertised address must be known before the
    node starts and stays the same across restarts). Server.start puts --listen
    127.0.0.1:0 first; the later --listen wins (quiverd takes the last)."""

    def __init__(self, data_dir, log_dir, node_id, etcd_urls, nats_urls, args=(),
                 no_shards=False, port=None, binary=None):
        self.node_id = node_id
        self.etcd_urls = [etcd_urls] if isinstance(etcd_urls, str) else list(etcd_urls)
        self.nats_urls = [nats_urls] if isinstance(nats_urls, str) else list(nats_urls)
        self.no_shards = no_shards
        self.extra_args = list(args)
        self.fixed_port = port
        super().__init__(data_dir, log_dir, args=(), binary=binary)
        self._choose_port(port or free_port())

    def _choose_port(self, port):
        self.fixed_port = port
        self.advertise = "127.0.0.1:%d" % port
        self.args = ["--listen", self.advertise, "--advertise", self.advertise,
                     "--node-id", self.node_id,
                     "--cluster-etcd", ",".join(self.etcd_urls),
                     "--cluster-nats", ",".join(self.nats_urls)]
        if self.no_shards:
            self.args.append("--no-shards")
        self.args += self.extra_args

    def start(self):
        tries = 3 if self.starts == 0 else 1
        for attempt in range(tries):
            try:
                super().start()
                break
            except qt.ServerError as e:
                # the port chosen up front was taken meanwhile: before the node ever
                # ran (nothing has its address yet) choose another one
                if attempt + 1 < tries and "cannot listen on" in str(e):
                    self._choose_port(free_port())
                    continue
                raise
        _track(self.proc)
        if self.port != self.fixed_port:
            self.kill()
            raise qt.ServerError("quiverd %s listens on port %s, expected %s (--listen)"
                                 % (self.node_id, self.port, self.fixed_port))
        return self

    def _finish(self):
        if self.proc is not None:
            _untrack(self.proc.pid)
        super()._finish()

    def kill(self, sig=signal.SIGKILL):
        """kill -9 (or another signal and wait)."""
        if sig == signal.SIGKILL:
            return super().kill()
        return self.stop(sig)

    def health_serving(self, timeout=2.0):
        try:
            r = self.health.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except Exception:
            return False
        return r.status == health_pb2.HealthCheckResponse.SERVING

    def cluster_status(self, timeout=5.0):
        return self.admin.ClusterStatus(pb.ClusterStatusRequest(), timeout=timeout)


# ------------------------------------------------------------------ cluster
class Cluster:
    """NATS (nats servers; 3, or 1), one etcd, and `nodes` quiverd nodes (plus
    `route_nodes` started with --no-shards), all under base_dir (default: a temporary
    folder removed at exit). A context manager: everything is stopped on exit, also
    when the test fails.

    .nats (Nats)  .etcd (Etcd)  .nodes [ClusterNode]  .node(i)  .addrs
    .start() / .stop() / .kill_all()
    .wait_ready(timeout)  every node SERVING and its ClusterStatus lists all nodes alive
    .add_node(node_id=None, no_shards=False, args=()) -> started ClusterNode
    .status(i=0)   Admin.ClusterStatus of node i
    .servers()     every process object (nodes, NATS servers, etcd) for failure reports
    """

    def __init__(self, nodes=4, nats=3, base_dir=None, route_nodes=0, node_args=(),
                 binary=None, start_nodes=True):
        self.base_dir = os.path.abspath(base_dir or qt._tmpdir("quiver-cluster-"))
        self.n_nodes = nodes
        self.n_nats = nats
        self.n_route = route_nodes
        self.node_args = list(node_args)
        self.binary = binary
        self.start_nodes = start_nodes
        self.nats = None
        self.etcd = None
        self.nodes = []

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        if self.nats is None:
            self.nats = Nats(self.base_dir, n=self.n_nats, start=False)
            self.etcd = Etcd(self.base_dir, start=False)
        # all engines start at once, then wait together
        self.nats.start()
        self.etcd.start()
        self.nats.wait_ready()
        self.etcd.wait_ready()
        if self.start_nodes and not self.nodes:
            for _ in range(self.n_nodes):
                self.add_node()
            for _ in range(self.n_route):
                self.add_node(no_shards=True)
        return self

    def add_node(self, node_id=None, no_shards=False, args=(), start=True):
        node_id = node_id or "node%d" % (len(self.nodes) + 1)
        d = os.path.join(self.base_dir, node_id)
        os.makedirs(d, exist_ok=True)
        n = ClusterNode(os.path.join(d, "data"), d, node_id, self.etcd.urls, self.nats.urls,
                        args=self.node_args + list(args), no_shards=no_shards,
                        binary=self.binary)
        self.nodes.append(n)
        if start:
            n.start()
        return n

    def node(self, i):
        return self.nodes[i]

    @property
    def addrs(self):
        return [n.advertise for n in self.nodes]

    def status(self, i=0, timeout=5.0):
        return self.nodes[i].cluster_status(timeout)

    def wait_ready(self, timeout=60.0):
        """Every running node answers Health/Check SERVING, and its Admin.ClusterStatus
        is clustered and lists every node of this cluster alive."""
        want = {n.node_id for n in self.nodes if n.alive()}
        last = {}

        def ok():
            for n in self.nodes:
                if not n.alive():
                    continue
                if not n.health_serving():
                    last[n.node_id] = "not SERVING"
                    return False
                try:
                    st = n.cluster_status()
                except Exception as e:   # grpc.RpcError
                    last[n.node_id] = "ClusterStatus: %s" % e
                    return False
                alive = {x.id for x in st.nodes if x.alive}
                if not st.clustered or not want <= alive:
                    last[n.node_id] = "clustered %s, alive %s" % (st.clustered, sorted(alive))
                    return False
            return True

        qt.wait_for(ok, timeout, lambda: "cluster ready: nodes %s; last: %s"
                    % (sorted(want), last), interval=0.2)
        return self

    def servers(self):
        out = list(self.nodes)
        if self.nats is not None:
            out += self.nats.procs
        if self.etcd is not None:
            out.append(self.etcd.proc)
        return out

    def stop(self):
        """Stop everything (quiverd nodes first, SIGTERM then SIGKILL after a timeout;
        then etcd and NATS). Never raises for a process that will not stop: it is
        killed. The nodes are signalled together and drain in parallel."""
        for n in self.nodes:
            n._close_channel()      # an open channel would hold quiverd's drain
            if n.alive():
                for sig in (signal.SIGCONT, signal.SIGTERM):
                    try:
                        n.proc.send_signal(sig)
                    except OSError:
                        pass
        deadline = time.monotonic() + STOP_TIMEOUT
        for n in self.nodes:
            try:
                if n.proc is not None:
                    n.proc.wait(max(0.1, deadline - time.monotonic()))
                n.stop(timeout=1)      # collects the exit (SIGTERM only if still running)
            except Exception:
                n.kill()
        if self.etcd is not None:
            self.etcd.stop()
        if self.nats is not None:
            self.nats.stop()

    def kill_all(self):
        for n in self.nodes:
            n.kill()
        if self.etcd is not None:
            self.etcd.kill()
        if self.nats is not None:
            for i in range(self.nats.n):
                self.nats.kill(i)

    def pids(self):
        """Pids of every process of this cluster that has one now."""
        out = [n.proc.pid for n in self.nodes if n.proc is not None]
        if self.nats is not None:
            out += [p for p in self.nats.pids if p]
        if self.etcd is not None and self.etcd.pid:
            out.append(self.etcd.pid)
        return out


# ------------------------------------------------------------------ fixture
def _attach(request, procs):
    node = request.node
    if not hasattr(node, "_quiver_servers"):
        node._quiver_servers = []
    for p in procs:
        if p not in node._quiver_servers:
            node._quiver_servers.append(p)


if pytest is not None:
    @pytest.fixture
    def cluster_factory(request, tmp_path_factory):
        """cluster_factory(nodes=4, nats=3, route_nodes=0, node_args=(), wait=True,
        ready_timeout=60, start_nodes=True) -> a started Cluster (wait_ready passed
        when wait and it has nodes). Everything stops when the test ends; the logs of
        every process are attached to a failing test's report (conftest.py's hook).
        Use: `from cluster_lib import cluster_factory` in the test module."""
        made = []

        def make(nodes=4, nats=3, wait=True, ready_timeout=60.0, **kw):
            if nodes or kw.get("route_nodes"):
                require_cluster_quiverd(kw.get("binary"))
            c = Cluster(nodes=nodes, nats=nats,
                        base_dir=str(tmp_path_factory.mktemp("cluster")), **kw)
            made.append(c)
            try:
                c.start()
            finally:
                _attach(request, c.servers())
            if wait and c.nodes:
                c.wait_ready(ready_timeout)
            return c

        yield make
        for c in made:
            try:
                c.stop()
            except Exception:
                c.kill_all()
