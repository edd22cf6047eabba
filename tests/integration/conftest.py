"""Fixtures shared by every integration test (see harness.py).

Everything a test starts is registered with its fixture and stopped by pid at
teardown, whether the test passed or not."""

import os
import sys

import pytest

import harness

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import check_programs  # noqa: E402  (tests/check_programs.py)


requires_root = pytest.mark.skipif(not harness.IS_ROOT,
                                   reason="needs root (network namespaces, PostgreSQL user)")


# --------------------------------------------------------------------------
# Every program a test runs is in tests/programs.txt, which `make deps`
# installs: an audit hook sees each subprocess and the session fails at its
# end when one ran that the list does not name.

_LISTED = check_programs.load_programs()
_unlisted = {}          # program -> the first command line that ran it


def _audit_programs(event, args):
    if event != "subprocess.Popen":
        return
    try:
        _executable, argv, cwd, _env = args
        argv = [os.fsdecode(a) for a in argv]
        for prog in check_programs.unwrap(argv):
            key = check_programs.program_key(prog, cwd=os.fsdecode(cwd) if cwd else None)
            if key is not None and key not in _LISTED:
                _unlisted.setdefault(key, argv)
    except Exception:       # an audit hook that raises would fail the subprocess
        pass


sys.addaudithook(_audit_programs)


# The longest tests go first: two workers that take the rest as they free up
# end at about the same time, instead of one running a long test alone at
# the end of the run.
LONG_FIRST = ("test_sync_scale.py", "test_spool.py", "test_failover_sites.py",
              "test_chaos.py", "test_relay_via.py", "test_fan_out.py", "test_noloss.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return LONG_FIRST.index(name) if name in LONG_FIRST else len(LONG_FIRST)
    items.sort(key=rank)      # stable: the rest keep their order


def pytest_sessionfinish(session):
    if _unlisted:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _unlisted:
        terminalreporter.section("programs not in tests/programs.txt", red=True)
        for key, argv in sorted(_unlisted.items()):
            terminalreporter.write_line(f"{key}: ran as {' '.join(argv)[:200]}")
        terminalreporter.write_line("add each with its Debian package to tests/programs.txt and "
                                    "the package to PACKAGES in tests/install-deps.sh")


@pytest.fixture(scope="session", autouse=True)
def built_binaries():
    for path in (harness.STRAITD, harness.STRAITCTL):
        if not os.access(path, os.X_OK):
            pytest.exit(f"{path} is missing: run make first", returncode=2)


def default_versions():
    """make matrix's pair: STRAIT_TEST_SOURCE_VERSION for the first server a
    test starts (the source of its first stream), STRAIT_TEST_TARGET_VERSION
    for the others; unset, Debian's 15."""
    def major(var):
        v = os.environ.get(var, "")
        return int(v) if v else None
    return major("STRAIT_TEST_SOURCE_VERSION"), major("STRAIT_TEST_TARGET_VERSION")


@pytest.fixture
def pg_factory():
    """pg_factory(name, netns=None, listen_addresses="", settings=None, version=None)
    -> started PgServer (version: see default_versions)."""
    servers = []
    source_v, target_v = default_versions()

    def make(name, **kw):
        if kw.get("version") is None:
            kw["version"] = source_v if not servers else target_v
        server = harness.PgServer(name, **kw)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.cleanup()


@pytest.fixture
def netns_sites():
    """netns_sites(n) -> [Site]: namespaces on a shared bridge, removed at teardown."""
    if not harness.IS_ROOT:
        pytest.skip("network namespaces need root")
    networks = []

    def make(n):
        net = harness.SiteNetwork(n, tag=f"{os.getpid() % 10000}{len(networks)}")
        networks.append(net)
        return net.sites

    yield make
    for net in networks:
        net.cleanup()


@pytest.fixture
def plain_build(monkeypatch):
    """The plain (release) build's programs when make integration names one:
    what users run, for tests that start hundreds of daemons or measure
    memory (a sanitizer build's shadow memory and quarantine are not ours)."""
    build = os.environ.get("STRAIT_PLAIN_BUILD")
    if build:
        monkeypatch.setattr(harness, "STRAITD", os.path.join(build, "straitd"))
        monkeypatch.setattr(harness, "STRAITCTL", os.path.join(build, "straitctl"))
    return build


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.call_failed = rep.failed


def print_log_tails(daemons, lines=60):
    """The end of each daemon's log, for the report of a test that failed."""
    for d in daemons:
        try:
            tail = d.log_text().splitlines()[-lines:]
        except OSError:
            continue
        print(f"---- the last {len(tail)} lines of {d.site or d.config_path}'s log")
        print("\n".join(tail))


@pytest.fixture
def straitd_factory(request):
    """straitd_factory(config_path, site=None, netns=None, args=(), start=True) -> Straitd."""
    daemons = []

    def make(config_path, site=None, netns=None, args=(), env=None, start=True):
        d = harness.Straitd(config_path, site=site, netns=netns, args=args, env=env)
        daemons.append(d)
        if start:
            d.start()
        return d

    yield make
    if getattr(request.node, "call_failed", False):
        print_log_tails(daemons)
    for d in daemons:
        if d.alive():
            try:
                d.stop(timeout=10)
            except harness.HarnessError:
                pass          # stop() already killed it

