"""pytest fixtures for the integration tests: a real quiverd on a fresh folder and port.

`server`      function scope: a fresh quiverd per test (restart() keeps its folder).
`make_server` function scope factory: make_server(args=[...]) -> started Server.
The server's stderr is attached to the report of any failing test.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quiver_testlib as qt  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        servers = getattr(item, "_quiver_servers", [])
        for i, s in enumerate(servers):
            rep.sections.append(("quiverd stderr #%d (%s)" % (i + 1, s.data_dir), s.stderr_text()))


def _new_server(request, tmp_path_factory, args=()):
    base = tmp_path_factory.mktemp("quiverd")
    s = qt.Server(str(base / "data"), str(base), args=args)
    node = request.node
    if not hasattr(node, "_quiver_servers"):
        node._quiver_servers = []
    node._quiver_servers.append(s)
    try:
        s.start()
    except qt.ServerError as e:
        s.kill()
        pytest.fail(str(e), pytrace=False)
    return s


@pytest.fixture(scope="module")
def module_server(request, tmp_path_factory):
    """One quiverd shared by a whole test module."""
    s = _new_server(request, tmp_path_factory)
    yield s
    s.kill()


@pytest.fixture
def make_server(request, tmp_path_factory):
    made = []

    def make(args=()):
        s = _new_server(request, tmp_path_factory, args)
        made.append(s)
        return s

    yield make
    for s in made:
        s.kill()


@pytest.fixture
def server(make_server):
    return make_server()


SKIP_EXIT = 77  # registered with ctest as SKIP_RETURN_CODE


def pytest_sessionfinish(session, exitstatus):
    """A file whose tests all skipped (a data set missing, no root for a mount...) exits
    77, which ctest reports as skipped instead of passed."""
    rep = session.config.pluginmanager.get_plugin("terminalreporter")
    if rep is None or exitstatus != 0:
        return
    passed = len(rep.stats.get("passed", []))
    skipped = len(rep.stats.get("skipped", []))
    if skipped and not passed:
        session.exitstatus = SKIP_EXIT
