"""Who may talk to straitd and what it keeps to itself.

- The control socket: owner-only by default, 0660 for control.group; the
  daemon checks every connecting process's credentials (SO_PEERCRED), so a
  socket made world-writable behind its back still serves nobody else. The
  tests run straitctl as throwaway system users and groups (useradd,
  groupadd), removed at teardown.
- Private key files (WireGuard key, TLS key): mode 0600 or 0400, owned by
  straitd's user or root, or straitd refuses them.
- No secret (a database password, the WireGuard private key, the TLS key's
  PEM body) appears in the log, status, the normalized config, /metrics or
  the errors of an unreachable database.
"""

import base64
import grp
import os
import pwd
import re
import shutil
import stat
import urllib.request

import pytest

import harness
from harness import run, wait_until

pytestmark = pytest.mark.skipif(not harness.IS_ROOT,
                                reason="needs root (system users, PostgreSQL user)")

_seq = [0]


@pytest.fixture
def accounts():
    """accounts.group() / accounts.user(primary=None, groups=()): unique system
    groups and users, deleted at teardown."""
    users, groups = [], []

    class Accounts:
        @staticmethod
        def _name(kind):
            _seq[0] += 1
            return f"st{kind}{os.getpid() % 100000}x{_seq[0]}"

        def group(self):
            name = self._name("g")
            run(["groupadd", "--system", name])
            groups.append(name)
            return name

        def user(self, primary=None, groups_=()):
            name = self._name("u")
            cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
            if primary:
                cmd += ["-g", primary]
            else:
                cmd += ["-U"]            # a private group of its own
            if groups_:
                cmd += ["-G", ",".join(groups_)]
            run(cmd + [name])
            users.append(name)
            return name

    yield Accounts()
    for name in users:
        run(["userdel", name], check=False)
        # useradd -U made a group of the same name; userdel removes it
        run(["groupdel", name], check=False)
    for name in groups:
        run(["groupdel", name], check=False)


@pytest.fixture
def open_base():
    """A cluster directory other users can traverse (pytest's tmp_path is
    0700), so they reach the control socket; removed at teardown."""
    path = harness.scratch_dir("sec")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def one_site(base, control=None, streams=(), pgs=(None, None)):
    """A two-site cluster (tunnel backend none); the onprem host's config path."""
    extra = {"control": dict(control)} if control else None
    cluster = harness.Cluster(base, harness.loopback_sites(list(pgs)), list(streams), extra=extra)
    return cluster


def ctl_as(user, d, *args):
    """straitctl run as user against d's control socket. The program runs from
    a copy beside d's config: the build tree may sit where other users cannot
    reach (a clone in /root, which is 0700)."""
    prog = os.path.join(os.path.dirname(d.config_path), "straitctl")
    if not os.path.exists(prog):
        shutil.copy(harness.STRAITCTL, prog)
        os.chmod(prog, 0o755)
    return run(["runuser", "-u", user, "--", prog, "--socket", d.socket] + list(args),
               check=False, timeout=60)


# ---- the control socket ------------------------------------------------------

def test_control_group_members_only(open_base, accounts, straitd_factory):
    group = accounts.group()
    member = accounts.user(groups_=[group])          # supplementary member
    primary = accounts.user(primary=group)           # primary group member
    outsider = accounts.user()
    cluster = one_site(open_base, control={"group": group})
    d = straitd_factory(cluster.path("onprem"), site="onprem")

    st = os.stat(d.socket)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_gid == grp.getgrnam(group).gr_gid

    for user in (member, primary):
        res = ctl_as(user, d, "status")
        assert res.returncode == 0, res.stderr
        assert "site onprem, role primary" in res.stdout, res.stdout

    # the file mode keeps an outsider out (the kernel refuses connect())...
    res = ctl_as(outsider, d, "status")
    assert res.returncode == 3 and "Permission denied" in res.stderr, res

    # ...and so does the daemon when the mode is loosened behind its back
    os.chmod(d.socket, 0o666)
    res = ctl_as(outsider, d, "status")
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "permission denied" in res.stderr and f'group "{group}"' in res.stderr
    assert "site:" not in res.stdout
    uid = pwd.getpwnam(outsider).pw_uid
    wait_until(lambda: f"refused a connection from uid {uid}" in d.log_text(),
               what="the refusal in the log")
    # members and root still get in
    assert ctl_as(member, d, "status").returncode == 0
    assert d.ctl("status").returncode == 0


def test_owner_only_socket_checks_credentials_too(open_base, accounts, straitd_factory):
    """Without control.group the socket is 0600; a socket opened to the world
    by hand still serves only root and the daemon's user."""
    outsider = accounts.user()
    cluster = one_site(open_base)
    d = straitd_factory(cluster.path("onprem"), site="onprem")
    assert stat.S_IMODE(os.stat(d.socket).st_mode) == 0o600
    os.chmod(d.socket, 0o666)
    res = ctl_as(outsider, d, "ping")
    assert res.returncode == 1 and "permission denied" in res.stderr, res
    assert "pong" not in res.stdout
    assert "refused a connection from uid" in d.log_text()
    assert d.ctl("ping").stdout.strip() == "pong"


def test_unknown_control_group_is_a_config_error(tmp_path, straitd_factory):
    cluster = one_site(tmp_path, control={"group": "no-such-group-strait"})
    path = cluster.path("onprem")
    res = run([harness.STRAITCTL, "check-config", path], check=False)
    assert res.returncode == 1
    text = open(path).read().splitlines()
    line = next(i for i, l in enumerate(text, 1) if "no-such-group-strait" in l)
    assert f"strait.yaml:{line}:" in res.stderr
    assert "control.group" in res.stderr and 'unknown group "no-such-group-strait"' in res.stderr
    d = straitd_factory(path, site="onprem", start=False).start(wait=False)
    assert d.wait_exit() == 1
    assert "unknown group" in d.log_text()


def test_control_group_needs_a_restart(open_base, accounts, straitd_factory):
    group = accounts.group()
    cluster = one_site(open_base)
    path, cfg = cluster.host("onprem")
    d = straitd_factory(path, site="onprem")
    cfg["control"]["group"] = group
    cluster.update("onprem", cfg)
    res = d.ctl("reload", check=False)
    assert res.returncode == 1
    log = d.log_text()
    assert "control.group" in log and "cannot be changed by a reload" in log
    assert stat.S_IMODE(os.stat(d.socket).st_mode) == 0o600
    assert d.status()["config"]["failed_reloads"] == 1
    ref = run([harness.STRAITCTL, "config-reference"]).stdout
    entry = re.search(r"^control\.group\n(.*)$", ref, re.M)
    assert entry and "reload: no" in entry.group(1)


# ---- private key files -------------------------------------------------------

@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644], ids=lambda m: f"{m:04o}")
def test_refuses_a_loose_tls_key(tmp_path, straitd_factory, mode):
    cluster = one_site(tmp_path)
    path, cfg = cluster.host("onprem")
    os.chmod(cfg["tls"]["key"], mode)
    d = straitd_factory(path, site="onprem", start=False).start(wait=False)
    assert d.wait_exit() == 1
    log = d.log_text()
    assert cfg["tls"]["key"] in log and "group or world access" in log
    assert f"mode {mode:04o}" in log


@pytest.mark.parametrize("which", ["wireguard", "tls"])
def test_refuses_a_key_of_another_user(tmp_path, straitd_factory, which):
    cluster = one_site(tmp_path)
    path, cfg = cluster.host("onprem")
    key = cfg["private_key_file"] if which == "wireguard" else cfg["tls"]["key"]
    os.chown(key, 65534, 65534)
    # without --site the WireGuard key names the site, so it is always read
    d = straitd_factory(path, site=None if which == "wireguard" else "onprem",
                        start=False).start(wait=False)
    assert d.wait_exit() == 1
    assert f'"{key}" belongs to uid 65534' in d.log_text()


def test_accepts_read_only_keys(tmp_path, straitd_factory):
    cluster = one_site(tmp_path)
    path, cfg = cluster.host("onprem")
    os.chmod(cfg["private_key_file"], 0o400)
    os.chmod(cfg["tls"]["key"], 0o400)
    d = straitd_factory(path, site="onprem")
    assert d.status()["site"] == "onprem"


def test_a_loose_tls_key_fails_a_reload(tmp_path, straitd_factory):
    """tls paths are reloadable: a reload reads the key again, by the same rule."""
    cluster = one_site(tmp_path)
    path, cfg = cluster.host("onprem")
    d = straitd_factory(path, site="onprem")
    os.chmod(cfg["tls"]["key"], 0o644)
    d.ctl("reload", check=False)
    wait_until(lambda: "group or world access" in d.log_text(), what="the refusal")
    assert d.alive()


# ---- secrets stay secret -------------------------------------------------------

SRC_PASSWORD = "Src-pw-7f3a9c2e"
DST_PASSWORD = "Dst-pw-c41b88d0"
ROLE = "strait_sec"


def require_scram(pg, password):
    """A role that must log in with password over TCP (scram), first in pg_hba."""
    pg.sql(f"CREATE ROLE {ROLE} LOGIN SUPERUSER REPLICATION PASSWORD '{password}'")
    hba = os.path.join(pg.datadir, "pg_hba.conf")
    with open(hba) as f:
        rest = f.read()
    with open(hba, "w") as f:
        f.write(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
                f"host replication {ROLE} 127.0.0.1/32 scram-sha-256\n" + rest)
    pg.sql("SELECT pg_reload_conf()")


def metrics_text(cfg):
    host, port = cfg["metrics"]["listen"].rsplit(":", 1)
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def pem_body_lines(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("-----")]


def test_no_secrets_in_logs_status_config_or_metrics(open_base, pg_factory, straitd_factory):
    src = pg_factory("onprem", listen_addresses="127.0.0.1")
    dst = pg_factory("cloud", listen_addresses="127.0.0.1")
    for pg, pw in ((src, SRC_PASSWORD), (dst, DST_PASSWORD)):
        pg.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, note text)")
        require_scram(pg, pw)
    sites = harness.loopback_sites([src, dst])
    # both forms libpq takes: keyword=value, and a URI with the password in it
    sites[0]["database"] = (f"host=127.0.0.1 port={src.port} dbname=postgres user={ROLE} "
                            f"password={SRC_PASSWORD}")
    sites[1]["database"] = f"postgresql://{ROLE}:{DST_PASSWORD}@127.0.0.1:{dst.port}/postgres"
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False}
    cluster = harness.Cluster(open_base, sites, [stream])
    daemons = {name: straitd_factory(cluster.path(name), site=name)
               for name in ("onprem", "cloud")}
    src.sql("INSERT INTO ledger SELECT g, 'row ' || g FROM generate_series(1, 200) g")
    wait_until(lambda: harness.table_dump(src, "ledger") == harness.table_dump(dst, "ledger"),
               60, interval=0.3, what="the rows to arrive through password logins")

    # the databases go away: the errors libpq reports must not carry the secrets
    src.stop()
    dst.stop()
    wait_until(lambda: all("could not connect" in d.log_text() or "lost" in d.log_text()
                           for d in daemons.values()), 30, what="database errors in the logs")

    secrets = {"source password": SRC_PASSWORD, "target password": DST_PASSWORD}
    for name in ("onprem", "cloud"):
        secrets[f"{name} WireGuard key"] = cluster.keys[name][0]
        raw = base64.b64decode(cluster.keys[name][0])
        secrets[f"{name} WireGuard key (hex)"] = raw.hex()
        for i, line in enumerate(pem_body_lines(cluster.host(name)[1]["tls"]["key"])):
            secrets[f"{name} TLS key line {i}"] = line
    outputs = {}
    for name, d in daemons.items():
        path, cfg = cluster.host(name)
        outputs[f"{name} status"] = d.ctl("status").stdout
        outputs[f"{name} status --verbose"] = d.ctl("status", "--verbose").stdout
        outputs[f"{name} status --json"] = d.ctl("status", "--json").stdout
        outputs[f"{name} lag"] = d.ctl("lag", check=False).stdout
        outputs[f"{name} check-config --print"] = run([harness.STRAITCTL, "check-config",
                                                       "--print", path]).stdout
        outputs[f"{name} /metrics"] = metrics_text(cfg)
    for name, d in daemons.items():
        d.stop()
        outputs[f"{name} log"] = d.log_text()
    for name in daemons:
        errors = [l for l in outputs[f"{name} log"].splitlines()
                  if "could not connect" in l or "lost" in l]
        print(f"\n{name}: {len(errors)} database errors, the first: {errors[:1]}")
    assert SRC_PASSWORD not in outputs["onprem check-config --print"]
    assert "********" in outputs["onprem check-config --print"]
    assert "DEBUG" in outputs["onprem log"].upper()       # debug logging was on
    leaks = [(secret, where) for secret, value in secrets.items()
             for where, text in outputs.items() if value in text]
    assert not leaks, leaks
