"""Build hook: the protobuf messages of quiver.v1 are generated from the project's
proto/quiver/v1/quiver.proto when the package is built, so the client never drifts from
the API (no generated code is committed). Needs `protoc` >= 3.20 (Debian:
protobuf-compiler) or grpc_tools. The proto is looked up in $QUIVER_PROTO_DIR, then
../../proto (a checkout of the Quiver repository), then ./proto (an sdist).

The generated module registers its file in a private descriptor pool, not protobuf's
default one, so it can live in one process with other copies of quiver.v1 (the raw stubs
of build/py, another version of this client) without "duplicate file" errors."""
import os
import shutil
import subprocess
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = "quiver/v1/quiver.proto"


def proto_root():
    for d in (os.environ.get("QUIVER_PROTO_DIR"), os.path.join(HERE, "..", "..", "proto"),
              os.path.join(HERE, "proto")):
        if d and os.path.isfile(os.path.join(d, PROTO)):
            return os.path.normpath(d)
    sys.exit("quiver-client: %s not found (set QUIVER_PROTO_DIR to the folder holding it)" % PROTO)


def protoc_cmd():
    exe = shutil.which("protoc")
    if exe:
        return [exe]
    try:
        import grpc_tools  # noqa: F401
        return [sys.executable, "-m", "grpc_tools.protoc"]
    except ImportError:
        sys.exit("quiver-client: protoc not found (Debian: apt-get install protobuf-compiler)")


def generate(out_dir):
    """Writes quiver_pb2.py and quiver_pb2.pyi into out_dir (the package quiver_client._pb)."""
    root = proto_root()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = protoc_cmd() + ["-I" + root, "--python_out=" + tmp, "--pyi_out=" + tmp, PROTO]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("quiver-client: %s failed:\n%s" % (" ".join(cmd), r.stderr))
        gen = os.path.join(tmp, "quiver", "v1")
        with open(os.path.join(gen, "quiver_pb2.py")) as f:
            py = f.read()
        # one private pool; the module's own name in the package
        for old, new in (("_descriptor_pool.Default()", "_descriptor_pool.DescriptorPool()"),
                         ("'quiver.v1.quiver_pb2'", "'quiver_client._pb.quiver_pb2'")):
            if py.count(old) != 1:
                sys.exit("quiver-client: unexpected protoc output (%r appears %d times); "
                         "protoc >= 3.20 is needed" % (old, py.count(old)))
            py = py.replace(old, new)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "quiver_pb2.py"), "w") as f:
            f.write(py)
        shutil.copyfile(os.path.join(gen, "quiver_pb2.pyi"), os.path.join(out_dir, "quiver_pb2.pyi"))


class BuildPy(build_py):
    def run(self):
        if not getattr(self, "editable_mode", False):  # no stale modules from earlier builds
            shutil.rmtree(os.path.join(self.build_lib, "quiver_client"), ignore_errors=True)
        super().run()
        if getattr(self, "editable_mode", False):
            generate(os.path.join(HERE, "quiver_client", "_pb"))
        else:
            generate(os.path.join(self.build_lib, "quiver_client", "_pb"))

    def get_outputs(self, include_bytecode=True):
        outs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            d = os.path.join(self.build_lib, "quiver_client", "_pb")
            outs += [os.path.join(d, "quiver_pb2.py"), os.path.join(d, "quiver_pb2.pyi")]
        return outs


setup(cmdclass={"build_py": BuildPy})
