"""Fixtures shared by every integration test (see harness.py).

Everything a test starts is registered with its fixture and stopped by pid at
teardown, whether the test passed or not."""

import os

import pytest

import harness


requires_root = pytest.mark.skipif(not harness.IS_ROOT,
                                   reason="needs root (network namespaces, PostgreSQL user)")


@pytest.fixture(scope="session", autouse=True)
def built_binaries():
    for path in (harness.STRAITD, harness.STRAITCTL):
        if not os.access(path, os.X_OK):
            pytest.exit(f"{path} is missing: run make first", returncode=2)


@pytest.fixture
def pg_factory():
    """pg_factory(name, netns=None, listen_addresses="", settings=None) -> started PgServer."""
    servers = []

    def make(name, **kw):
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
def straitd_factory():
    """straitd_factory(config_path, site=None, netns=None, args=(), start=True) -> Straitd."""
    daemons = []

    def make(config_path, site=None, netns=None, args=(), env=None, start=True):
        d = harness.Straitd(config_path, site=site, netns=netns, args=args, env=env)
        daemons.append(d)
        if start:
            d.start()
        return d

    yield make
    for d in daemons:
        if d.alive():
            try:
                d.stop(timeout=10)
            except harness.HarnessError:
                pass          # stop() already killed it

