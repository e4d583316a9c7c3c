"""Health, server reflection (v1alpha and v1), unknown methods, process behaviour."""
import importlib
import os
import signal
import subprocess
import sys

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

import quiver_testlib as qt
from quiver_testlib import SC, expect_error, health_pb2, pb, rpb

SERVING = health_pb2.HealthCheckResponse.SERVING
QUIVER_SERVICES = ["quiver.v1.Collections", "quiver.v1.Items", "quiver.v1.Search", "quiver.v1.Admin"]


def test_health_check(server):
    for svc in [""] + QUIVER_SERVICES:
        r = server.health.Check(health_pb2.HealthCheckRequest(service=svc))
        assert r.status == SERVING, (svc, r)
    expect_error(lambda: server.health.Check(health_pb2.HealthCheckRequest(service="no.such.Service")),
                 SC.NOT_FOUND)


def test_health_watch(server):
    w = server.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    first = next(w)
    assert first.status == SERVING
    w.cancel()
    with pytest.raises(grpc.RpcError) as ei:
        next(w)
    assert ei.value.code() == SC.CANCELLED
    w2 = server.health.Watch(health_pb2.HealthCheckRequest(service="quiver.v1.Search"), timeout=30)
    assert next(w2).status == SERVING
    w2.cancel()
    # the server is fine after the cancellations
    assert server.health.Check(health_pb2.HealthCheckRequest()).status == SERVING


def _reflect(channel, reqs, path, req_cls, resp_cls):
    mc = channel.stream_stream(path, request_serializer=req_cls.SerializeToString,
                               response_deserializer=resp_cls.FromString)
    return list(mc(iter(reqs), timeout=30))


def _check_reflection(channel, path, mod):
    res = _reflect(channel, [
        mod.ServerReflectionRequest(list_services=""),
        mod.ServerReflectionRequest(file_containing_symbol="quiver.v1.Search"),
        mod.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
        mod.ServerReflectionRequest(file_containing_symbol="quiver.v1.Items"),
    ], path, mod.ServerReflectionRequest, mod.ServerReflectionResponse)
    assert len(res) == 4, res
    svcs = {s.name for s in res[0].list_services_response.service}
    for want in QUIVER_SERVICES + ["grpc.health.v1.Health"]:
        assert want in svcs, (want, sorted(svcs))

    def files(r):
        assert r.WhichOneof("message_response") == "file_descriptor_response", r
        return [descriptor_pb2.FileDescriptorProto.FromString(b)
                for b in r.file_descriptor_response.file_descriptor_proto]

    fds = files(res[1])
    main = [f for f in fds if f.name == "quiver/v1/quiver.proto"]
    assert main, [f.name for f in fds]
    fd = main[0]
    assert fd.package == "quiver.v1"
    assert sorted(s.name for s in fd.service) == ["Admin", "Collections", "Items", "Search"]
    search = next(s for s in fd.service if s.name == "Search")
    assert [m.name for m in search.method] == ["Search", "Recommend", "RecommendBatch"]
    assert search.method[0].input_type == ".quiver.v1.SearchRequest"
    assert search.method[1].input_type == ".quiver.v1.RecommendRequest"
    assert search.method[1].output_type == ".quiver.v1.Hits"
    assert "SearchRequest" in [m.name for m in fd.message_type]
    assert res[2].WhichOneof("message_response") == "error_response", res[2]
    assert res[2].error_response.error_code == SC.NOT_FOUND.value[0], res[2]
    assert any(f.name == "quiver/v1/quiver.proto" for f in files(res[3]))
    return fds


def test_reflection_v1alpha(server):
    fds = _check_reflection(server.channel,
                            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", rpb)
    # the reflected descriptors are enough to call the service dynamically (like grpcurl)
    pool = descriptor_pool.DescriptorPool()
    for fd in fds:
        pool.Add(fd)
    from google.protobuf import message_factory
    m = pool.FindServiceByName("quiver.v1.Collections").methods_by_name["Create"]
    get = getattr(message_factory, "GetMessageClass", None)
    fac = message_factory.MessageFactory(pool)
    Req = get(m.input_type) if get else fac.GetPrototype(m.input_type)
    Rep = get(m.output_type) if get else fac.GetPrototype(m.output_type)
    call = server.channel.unary_unary("/quiver.v1.Collections/Create",
                                      request_serializer=Req.SerializeToString,
                                      response_deserializer=Rep.FromString)
    rep = call(Req(name="dyn", dim=3, metric=1), timeout=30)
    assert rep.name == "dyn" and rep.dim == 3
    assert server.describe("dyn").dim == 3


def _v1_module():
    """Stubs for grpc.reflection.v1, generated with protoc (skip when impossible)."""
    try:
        return importlib.import_module("grpc_reflection.v1.reflection_pb2")
    except ImportError:
        pass
    src = os.path.join(qt.GRPC_PROTO, "grpc/reflection/v1/reflection.proto")
    if not os.path.exists(src):
        pytest.skip("no %s to build reflection v1 stubs from" % src)
    try:
        out = qt.protoc_python([(src, "grpc_reflection/v1/reflection.proto")])
    except RuntimeError as e:
        pytest.skip("cannot generate reflection v1 stubs: %s" % e)
    sys.path.insert(0, out)
    import grpc_reflection
    # grpc_reflection is a namespace package: let it find the new portion
    if hasattr(grpc_reflection, "__path__") and os.path.join(out, "grpc_reflection") not in list(
            grpc_reflection.__path__):
        try:
            grpc_reflection.__path__.append(os.path.join(out, "grpc_reflection"))
        except AttributeError:
            pass
    importlib.invalidate_caches()
    return importlib.import_module("grpc_reflection.v1.reflection_pb2")


def test_reflection_v1(server):
    mod = _v1_module()
    assert mod.DESCRIPTOR.package == "grpc.reflection.v1"
    _check_reflection(server.channel, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", mod)


def test_unknown_method_unimplemented(server):
    for path in ("/quiver.v1.Search/NoSuchMethod", "/quiver.v1.Nope/Search", "/no.such.Service/X"):
        call = server.channel.unary_unary(path)
        expect_error(lambda: call(b"", timeout=10), SC.UNIMPLEMENTED)
    # still serving
    assert server.health.Check(health_pb2.HealthCheckRequest()).status == SERVING


def test_garbage_request_bytes(server):
    """Bytes that are not a valid message must give an error status, not a crash."""
    call = server.channel.unary_unary("/quiver.v1.Collections/Create")
    try:
        call(b"\xff\xff\xff\xff\x0f\x0a\x99", timeout=10)
    except grpc.RpcError as e:
        assert e.code() in (SC.INVALID_ARGUMENT, SC.INTERNAL), (e.code(), e.details())
    else:
        pytest.fail("garbage request accepted")
    assert server.alive()
    assert server.health.Check(health_pb2.HealthCheckRequest()).status == SERVING


def test_help():
    if not os.path.exists(qt.QUIVERD):
        pytest.fail("quiverd not found at %s" % qt.QUIVERD)
    r = subprocess.run([qt.QUIVERD, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    out = r.stdout + r.stderr
    for flag in ("--listen", "--data", "--threads"):
        assert flag in out, (flag, out)


def test_bad_flag_fails():
    if not os.path.exists(qt.QUIVERD):
        pytest.fail("quiverd not found at %s" % qt.QUIVERD)
    # usage errors exit 2 with a message naming the flag; a crash (negative status)
    # or any other code is a failure
    for args, names in ((["--no-such-flag"], "no-such-flag"), (["--threads", "0"], "--threads"),
                        (["--max-reply", "12Q"], "--max-reply"),
                        (["--max-queued-writes", "x"], "--max-queued-writes"),
                        (["--max-rebuilds", "0"], "--max-rebuilds")):
        r = subprocess.run([qt.QUIVERD] + args, capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert names in r.stderr, (args, r.stderr)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_clean_exit(make_server, sig):
    s = make_server(["--threads", "2"])
    s.create("x", 2, pb.L2)
    s.upsert("x", [qt.item(1, [1, 2])])
    # a Watch stream left open (on its own channel) must not keep the server from exiting
    ch = qt.make_channel(s.addr)
    w = qt.health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(), timeout=60)
    assert next(w).status == SERVING
    port = s.port
    try:
        rc = s.stop(sig, timeout=30)
        # the open stream ends with a status (server draining: UNAVAILABLE), not a hang
        with pytest.raises(grpc.RpcError) as ei:
            next(w)
        assert ei.value.code() == SC.UNAVAILABLE, (ei.value.code(), ei.value.details())
    finally:
        ch.close()
    assert rc == 0, "exit code %s on %s" % (rc, sig)
    assert s.stdout_lines == ["listening on port %d" % port], s.stdout_lines
    s.start()
    assert s.describe("x").count == 1


def test_startup_log_names_faiss_simd_and_blas(server):
    """The start-up line names the BLAS core and the SIMD level FAISS dispatches to."""
    with open(server._logs[-1], "rb") as f:
        first = f.read().decode("utf-8", "replace").splitlines()[0]
    import re
    m = re.search(r"BLAS core (\S+), FAISS (\d+)\.(\d+) SIMD (\S+) \((chosen at run time|compiled in)\)",
                  first)
    assert m, first
    assert (int(m.group(2)), int(m.group(3))) >= (1, 15), first
    assert m.group(4) in ("NONE", "AVX2", "AVX512", "AVX512_SPR", "ARM_NEON", "ARM_SVE"), first
    assert m.group(5) == "chosen at run time", first  # FAISS_OPT_LEVEL=dd
