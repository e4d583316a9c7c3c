"""fsync is on by default (and off only with --unsafe-nosync), seen as the system calls
quiverd makes when it commits; the LMDB map filling up is RESOURCE_EXHAUSTED with
nothing half-written."""
import os
import subprocess
import time

import numpy as np
import pytest

import quiver_testlib as qt
from quiver_testlib import SC, pb


def traced_by(pid, tracer):
    """Is every thread of process pid traced by process tracer (its TracerPid)?"""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except FileNotFoundError:
        return False
    for t in tids:
        try:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                st = f.read()
        except FileNotFoundError:   # a thread that just ended
            continue
        if "\nTracerPid:\t%d\n" % tracer not in st:
            return False
    return bool(tids)


def syncs_during_upsert(s):
    """Number of fsync/fdatasync calls quiverd makes while one Upsert commits."""
    strace = qt.require_tool("strace", "strace")
    log = s.data_dir + ".strace"
    p = subprocess.Popen([strace, "-f", "-qq", "-e", "trace=fsync,fdatasync", "-o", log,
                          "-p", str(s.proc.pid)], stderr=subprocess.PIPE)
    qt.wait_for(lambda: p.poll() is not None or traced_by(s.proc.pid, p.pid), 30,
                "strace to attach to every thread of quiverd %d" % s.proc.pid)
    if p.poll() is not None:
        pytest.skip("strace cannot attach here: %s" % p.stderr.read().decode())
    s.upsert("d", [qt.item(int(time.time() * 1000) % 100000, [1, 2, 3, 4])])
    # no wait needed: the reply follows the commit's fsync, which returned only once
    # strace had seen it (the thread stops at the call's exit until strace resumes it);
    # on SIGTERM strace detaches and flushes its log
    p.terminate()
    p.wait(10)
    with open(log) as f:
        return sum(1 for line in f if "sync(" in line)


def test_fsync_on_by_default(make_server):
    s = make_server()
    s.create("d", 4)
    n = syncs_during_upsert(s)
    assert n >= 1, "no fsync/fdatasync while an upsert committed"
    u = make_server(["--unsafe-nosync"])
    u.create("d", 4)
    assert syncs_during_upsert(u) == 0


def test_map_full(make_server):
    s = make_server(["--map-size", "4M"])
    s.create("m", 128)
    rng = np.random.default_rng(13)
    acked, err = 0, None
    for b in range(100):
        x = rng.standard_normal((500, 128)).astype(np.float32)
        try:
            s.upsert("m", [pb.Item(id=b * 500 + i, vector=v.tolist()) for i, v in enumerate(x)])
            acked += 1
        except qt.grpc.RpcError as e:
            err = e
            break
    assert err is not None, "a 4 MB map never filled up"
    assert err.code() == SC.RESOURCE_EXHAUSTED and "--map-size" in err.details(), err.details()
    assert s.describe("m").count == acked * 500
    assert len(s.search_vectors("m", [np.zeros(128)], k=3).results[0].hits) == 3
    s.restart()
    assert s.describe("m").count == acked * 500
