"""The cluster's engines through cluster_lib (no quiverd): a 3-node NATS JetStream cluster
and one etcd start on free loopback ports, answer their health endpoints, survive
kill -9 / restart of a NATS server and SIGSTOP / SIGCONT of etcd, and leave no process
behind."""
import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quiver_testlib as qt  # noqa: E402
import cluster_lib as cl  # noqa: E402


def _attach(request, procs):
    cl._attach(request, procs)


def test_nats_etcd_start_fail_and_stop(request, tmp_path):
    started = []
    nats = etcd = None
    try:
        nats = cl.Nats(str(tmp_path), n=3, start=False)
        etcd = cl.Etcd(str(tmp_path), start=False)
        _attach(request, nats.procs + [etcd.proc])
        nats.start()
        etcd.start()
        started = [p for p in nats.pids + [etcd.pid]]
        assert len(set(started)) == 4 and all(cl.pid_running(p) for p in started)
        nats.wait_ready()
        etcd.wait_ready()

        # every NATS server: healthy with JetStream, one meta leader seen by all
        leaders = set()
        for i in range(3):
            code, body = nats.healthz(i, js_enabled_only=True)
            assert code == 200 and '"ok"' in body, (i, code, body)
            assert nats.healthz(i)[0] == 200
            j = nats.jsz(i)
            assert j["config"]["store_dir"].startswith(os.path.join(str(tmp_path), "nats%d" % (i + 1)))
            assert j["meta_cluster"]["cluster_size"] == 3
            leaders.add(j["meta_cluster"]["leader"])
        assert len(leaders) == 1 and leaders <= set(nats.names), leaders
        assert nats.varz(0)["max_payload"] == 8 << 20
        assert etcd.healthy()

        # an R3 stream: a write, its leader, dedup by Nats-Msg-Id
        nats.add_stream("QV_T", ["quiver.t.0"], replicas=3)
        assert nats.publish("quiver.t.0", b"a", msg_id="m1")["seq"] == 1
        dup = nats.publish("quiver.t.0", b"a", msg_id="m1")
        assert dup["seq"] == 1 and dup.get("duplicate"), dup
        leader = qt.wait_for(lambda: nats.stream_leader("QV_T") is not None and [nats.stream_leader("QV_T")],
                             15, "a leader of stream QV_T")[0]

        # kill -9 a NATS server (the stream's leader): the other two elect a new one and
        # take writes; the killed one restarts on its ports and store and catches up
        old_pid = nats.pids[leader]
        assert nats.kill(leader) == -signal.SIGKILL
        assert not cl.pid_running(old_pid)
        new = qt.wait_for(lambda: [nats.stream_leader("QV_T")]
                          if nats.stream_leader("QV_T") not in (None, leader) else None,
                          20, "a new leader of QV_T after kill -9 of %s" % nats.names[leader])[0]
        assert new != leader
        assert nats.publish("quiver.t.0", b"b", msg_id="m2", timeout=10)["seq"] == 2
        nats.restart(leader)
        started.append(nats.pids[leader])
        assert nats.healthz(leader)[0] == 200
        qt.wait_for(lambda: any(
            (sd.get("state") or {}).get("last_seq") == 2
            for sd in nats._stream_details(leader) if sd.get("name") == "QV_T"),
            20, "the restarted server catching up to seq 2")

        # etcd paused: /health does not answer; resumed: healthy again
        etcd.pause()
        assert not etcd.healthy(timeout=0.5)
        assert cl.pid_running(etcd.pid)
        etcd.resume()
        etcd.wait_ready(15)
        # etcd stopped and started again on the same port and data
        assert etcd.stop() in (0, -signal.SIGTERM)   # etcd re-raises SIGTERM after its shutdown
        assert not etcd.healthy(timeout=0.5)
        etcd.start()
        started.append(etcd.pid)
        etcd.wait_ready()
    finally:
        if nats is not None:
            nats.stop()
        if etcd is not None:
            etcd.stop()

    # nothing left: every pid this test started is gone, and the module tracks none
    left = [p for p in started if cl.pid_running(p)]
    assert not left, "processes left behind: %s" % left
    assert cl.live_pids() == []
    assert not etcd.alive() and not any(nats.alive(i) for i in range(3))


def test_cluster_context_engines_only(tmp_path):
    """Cluster(nodes=0) starts the engines alone, and its exit stops them even when the
    body raises."""
    pids = []
    with pytest.raises(RuntimeError, match="boom"):
        with cl.Cluster(nodes=0, nats=1, base_dir=str(tmp_path)) as c:
            pids = c.pids()
            assert len(pids) == 2 and all(cl.pid_running(p) for p in pids)
            assert c.nats.healthz(0, js_enabled_only=True)[0] == 200
            assert c.etcd.healthy()
            assert sorted(os.listdir(str(tmp_path))) == ["etcd", "nats1"]
            raise RuntimeError("boom")
    assert pids and not any(cl.pid_running(p) for p in pids)
    assert cl.live_pids() == []


def test_watchdog_kills_orphans(tmp_path):
    """A Python process that dies by kill -9 (no atexit) leaves nothing behind: the
    watchdog kills what it started."""
    import subprocess
    import time
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import cluster_lib as cl\n"
            "n = cl.Nats(%r, n=1)\n"
            "print(n.pids[0], flush=True)\n"
            "import time; time.sleep(60)\n") % (os.path.dirname(os.path.abspath(__file__)),
                                                str(tmp_path))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    pid = None
    try:
        line = p.stdout.readline()
        assert line.strip(), "child printed nothing"
        pid = int(line)
        assert cl.pid_running(pid)
        p.kill()
        p.wait()
        qt.wait_for(lambda: not cl.pid_running(pid), 10,
                    "nats-server %d killed by the watchdog" % pid)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if pid is not None and cl.pid_running(pid):   # the watchdog failed: clean up
            os.kill(pid, signal.SIGKILL)
