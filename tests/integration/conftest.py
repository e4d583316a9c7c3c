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


# ------------------------------------------------------- skips that cannot go unseen
# ctest knows one state per test file: passed, failed or skipped. A file whose tests all
# skipped exits 77 (ctest: "***Skipped", listed under "The following tests did not
# run"). A file where only some skipped passes, and would hide them; so every run with
# skips ends with one line per file,
#   QUIVER-SKIPPED: 2 of 31 tests in test_metrics.py: <nodeid>: <reason>; ...
# and, under ctest (QUIVER_CTEST=1, set by CMakeLists.txt), a label added to the ctest
# test from its output (<CTestLabel>), which ctest prints in its closing "Label Time
# Summary" (there are no other labels: the summary appears only when something skipped):
#   QUIVER-SKIPPED test_metrics.py: 2 of 31 tests   =  40.1 sec*proc (1 test)
# The reasons are in the test's output: ctest -V -R it_test_metrics, or Testing/Temporary/LastTest.log.
# Skips are for what a machine may legitimately lack (a data set, root for a mount);
# a program that tools/deps.sh installs or this build makes is required
# (quiver_testlib.require_tool / require_built fail the test).
_OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def _skip_reason(rep):
    lr = rep.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        r = str(lr[2])
        return r[len("Skipped: "):] if r.startswith("Skipped: ") else r
    return str(lr)


def _skip_summary(stats):
    """{file: (tests run in it, [(test, reason)] skipped)} from the terminal reporter's stats."""
    tests, skips = {}, {}
    for outcome in _OUTCOMES:
        for rep in stats.get(outcome, []):
            nodeid = getattr(rep, "nodeid", "")
            if not nodeid:
                continue
            f = nodeid.split("::")[0]
            tests.setdefault(f, set()).add(nodeid)
            if outcome == "skipped":
                skips.setdefault(f, []).append((nodeid.split("::", 1)[-1], _skip_reason(rep)))
    return {f: (len(tests[f]), skips[f]) for f in skips}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    summary = _skip_summary(terminalreporter.stats)
    for f, (n, skipped) in sorted(summary.items()):
        name = os.path.basename(f)
        terminalreporter.write_line("QUIVER-SKIPPED: %d of %d tests in %s: %s" % (
            len(skipped), n, name, "; ".join("%s: %s" % t for t in skipped)), yellow=True, bold=True)
        if os.environ.get("QUIVER_CTEST") == "1":
            terminalreporter.write_line("<CTestLabel>QUIVER-SKIPPED %s: %d of %d tests</CTestLabel>"
                                        % (name, len(skipped), n))


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
