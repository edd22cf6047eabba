"""Test harness for strait's integration tests: real PostgreSQL servers, network
namespace "sites" joined through a bridge, and straitd processes, all started
by the test and stopped by pid when it ends (also when it fails).

Nothing here waits with a bare sleep: every wait polls a condition with a
deadline (wait_until).
"""

import atexit
import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("STRAIT_BUILD", os.path.join(REPO, "build"))


def _relay_proto_version():
    """The relay protocol's version, as gateway/relay/relay_proto.h says:
    the tests that speak the protocol by hand speak this one."""
    with open(os.path.join(REPO, "gateway", "relay", "relay_proto.h")) as f:
        for line in f:
            if line.startswith("#define RELAY_PROTO_VERSION "):
                return int(line.split()[2])
    raise RuntimeError("RELAY_PROTO_VERSION not found in relay_proto.h")


RELAY_PROTO_VERSION = _relay_proto_version()
STRAITD = os.path.join(BUILD, "straitd")
STRAITCTL = os.path.join(BUILD, "straitctl")
PG_BIN = "/usr/lib/postgresql/15/bin"
TEST_USER = "strait-test"          # PostgreSQL refuses to run as root
WAN_PREFIX = "192.0.2."            # TEST-NET-1, never routed

IS_ROOT = os.geteuid() == 0


class HarnessError(Exception):
    pass


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls predicate() until it returns a true value, which is returned."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the condition may not be checkable yet
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def run(cmd, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    res = subprocess.run(cmd, **kw)
    if check and res.returncode != 0:
        raise HarnessError(f"{cmd!r} exited {res.returncode}: {res.stderr.strip()}")
    return res


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (state, ppid, ...),
    or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def children(pid):
    """Pids of a process's live children."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(name)
            if st and int(st[1]) == pid:
                out.append(int(name))
    return out


def gone(pid):
    """pid has exited: no such process, or a zombie its parent has not reaped
    yet (a daemonized server's parent is init, which reaps when it gets to it)."""
    st = proc_stat(pid)
    return st is None or st[0] in ("Z", "X")


def kill_pid(pid, sig=signal.SIGTERM, timeout=10.0):
    """Signals pid and waits for it to go; SIGKILL after timeout."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------
# TCP ports

PORT_STATE = os.environ.get("STRAIT_PORT_STATE", "/tmp/strait-test-ports")
PORT_LOW = 20000


def port_range():
    """(low, high), inclusive: the ports allocate_port() hands out, all below the
    kernel's ephemeral range."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    if ephemeral_low - PORT_LOW < 1000:
        # an unusually wide ephemeral range leaves too few below it: these
        # anyway, the test bind skips those a connection holds
        return PORT_LOW, PORT_LOW + 9999
    return PORT_LOW, ephemeral_low - 1


def _port_is_free(port):
    """Nothing holds port: binding it fails for a listener or a connection on
    any address, the wildcard or 127.0.0.1 (no SO_REUSEADDR: TIME_WAIT counts)."""
    for addr in ("0.0.0.0", "127.0.0.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((addr, port))
            except OSError:
                return False
    return True


def _open_port_state():
    """The counter file, shared by every user of the machine (mode 0666). It is
    opened without O_CREAT when it exists: with fs.protected_regular, O_CREAT
    of another user's file in sticky /tmp fails even for root."""
    for path in (PORT_STATE, f"{PORT_STATE}-{os.geteuid()}"):
        try:
            return os.open(path, os.O_RDWR)
        except FileNotFoundError:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
                os.fchmod(fd, 0o666)
                return fd
            except FileExistsError:
                return os.open(path, os.O_RDWR)
            except PermissionError:
                continue
        except PermissionError:
            continue          # someone else's file we may not write: our own one
    raise HarnessError(f"cannot open or create {PORT_STATE}")


def allocate_port():
    """A TCP port for a server or daemon a test starts, free when handed out.

    Not bind(0): that port comes from the kernel's ephemeral range
    (ip_local_port_range), is free again the moment the probe closes it, and
    any outgoing connection on the machine can take it before the server
    binds it. These ports lie below the ephemeral range, where only listeners
    with fixed ports go, and come from one counter in PORT_STATE, guarded by
    flock, that every user of this harness on the machine (pytest, make bench,
    make chaos, the demo, several at once) moves forward: no port is handed
    out twice until the counter has gone round the whole range. Each candidate
    is test-bound first and skipped while something else holds it."""
    low, high = port_range()
    size = high - low + 1
    fd = _open_port_state()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            last = int(os.pread(fd, 32, 0).decode() or "0")
        except ValueError:
            last = 0
        if not low <= last <= high:
            last = high
        for step in range(1, size + 1):
            port = low + (last - low + step) % size
            if _port_is_free(port):
                data = f"{port}\n".encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
                return port
        raise HarnessError(f"no free TCP port in {low}-{high}")
    finally:
        os.close(fd)       # releases the lock


# --------------------------------------------------------------------------
# Scratch space that the unprivileged PostgreSQL user can reach

_test_user_lock = threading.Lock()


def test_user():
    """The unprivileged account servers run as (created when root, once when
    servers start in several threads)."""
    if not IS_ROOT:
        return pwd.getpwuid(os.geteuid()).pw_name
    with _test_user_lock:
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            # another test process (pytest -n) may be creating it right now
            res = run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                       TEST_USER], check=False)
            if res.returncode != 0:
                pwd.getpwnam(TEST_USER)      # it exists now, or the failure stands
    return TEST_USER


def scratch_dir(prefix):
    """A directory under /tmp that the test user can enter (pytest's are 0700)."""
    path = tempfile.mkdtemp(prefix=f"strait-{prefix}-")
    os.chmod(path, 0o755)
    return path


def as_test_user(cmd):
    if IS_ROOT:
        return ["runuser", "-u", test_user(), "--"] + cmd
    return cmd


# --------------------------------------------------------------------------
# PostgreSQL

def pg_bin(version=None):
    """The server programs of a PostgreSQL major version: Debian's for 15 (or
    None), else the build make deps fetched (tests/fetch_postgres.py)."""
    if version in (None, 15):
        return PG_BIN
    import fetch_postgres
    path = fetch_postgres.bin_dir(version)
    if not os.access(os.path.join(path, "postgres"), os.X_OK):
        raise HarnessError(f"PostgreSQL {version} is not in {path}: run make deps")
    return path


_template_lock = threading.Lock()
_template_datadirs = {}


def _initdb_template(bin_dir=PG_BIN):
    """A data directory fresh from bin_dir's initdb, made once per process
    and removed at its exit: every server's data directory is a copy of it,
    as initdb would have made it (initdb takes a second or more; a copy a
    tenth)."""
    with _template_lock:
        if bin_dir not in _template_datadirs:
            base = scratch_dir("pg-template")
            if IS_ROOT:
                shutil.chown(base, test_user())
            datadir = os.path.join(base, "data")
            run(as_test_user([f"{bin_dir}/initdb", "-D", datadir, "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]))
            atexit.register(shutil.rmtree, base, ignore_errors=True)
            _template_datadirs[bin_dir] = datadir
        return _template_datadirs[bin_dir]


def _copy_data_dir(template, datadir, user):
    """template copied to datadir (modes kept), owned by user."""
    shutil.copytree(template, datadir, symlinks=True)
    if IS_ROOT:
        pw = pwd.getpwnam(user)
        for root, _dirs, files in os.walk(datadir):
            os.lchown(root, pw.pw_uid, pw.pw_gid)
            for name in files:
                os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


class PgServer:
    """A PostgreSQL server with wal_level=logical and otherwise PostgreSQL's
    default settings (max_replication_slots 10, fsync on), run by the test user: 15
    (Debian's), or another major version (version=13, 14, 16, ...).

    It listens on a unix socket in its own directory and, when given, on
    listen_addresses (for servers inside a namespace site)."""

    def __init__(self, name, netns=None, listen_addresses="", settings=None, version=None):
        self.name = name
        self.version = version or 15
        self.bin = pg_bin(version)
        self.netns = netns
        self.base = scratch_dir(f"pg-{name}")
        self.datadir = os.path.join(self.base, "data")
        self.sockdir = os.path.join(self.base, "sock")
        self.logfile = os.path.join(self.base, "postgres.log")
        self.port = allocate_port()
        self.listen_addresses = listen_addresses
        self.settings = settings or {}
        self.pid = None
        user = test_user()
        os.makedirs(self.sockdir)
        if IS_ROOT:
            shutil.chown(self.base, user)
            shutil.chown(self.sockdir, user)
        _copy_data_dir(_initdb_template(self.bin), self.datadir, user)
        conf = {
            "port": self.port,
            "listen_addresses": f"'{listen_addresses}'",
            "unix_socket_directories": f"'{self.sockdir}'",
            # PostgreSQL's defaults but for what the README asks of operators
            # (wal_level); a test that needs more says so in its settings
            "wal_level": "logical",
            "log_min_messages": "warning",
            "logging_collector": "off",
        }
        conf.update(self.settings)
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        if listen_addresses:
            with open(os.path.join(self.datadir, "pg_hba.conf"), "a") as f:
                f.write("host all all 0.0.0.0/0 trust\n")
                f.write("host replication all 0.0.0.0/0 trust\n")

    def _cmd(self, cmd):
        cmd = as_test_user(cmd)
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        return cmd

    def start(self):
        run(self._cmd([f"{self.bin}/pg_ctl", "-D", self.datadir, "-l", self.logfile,
                       "-w", "-t", "60", "start"]))
        with open(os.path.join(self.datadir, "postmaster.pid")) as f:
            self.pid = int(f.readline())
        return self

    def stop(self, mode="fast"):
        if self.pid is None:
            return
        res = run(self._cmd([f"{self.bin}/pg_ctl", "-D", self.datadir, "-m", mode, "-w",
                             "-t", "60", "stop"]), check=False)
        if res.returncode != 0:
            kill_pid(self.pid, signal.SIGQUIT)
        self.pid = None

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def cleanup(self):
        if self.pid is not None:
            kill_pid(self.pid, signal.SIGQUIT)
            self.pid = None
        shutil.rmtree(self.base, ignore_errors=True)

    def dsn(self, dbname="postgres", user="postgres"):
        return f"host={self.sockdir} port={self.port} dbname={dbname} user={user}"

    def connect(self, dbname="postgres"):
        import psycopg
        return psycopg.connect(self.dsn(dbname), autocommit=True)

    def sql(self, query, params=None, dbname="postgres"):
        """Runs one statement; returns its rows (or [] when it returns none)."""
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def createdb(self, dbname):
        self.sql(f'CREATE DATABASE "{dbname}"')

    def pgbench(self, *args, dbname="postgres"):
        return run(["pgbench", "-h", self.sockdir, "-p", str(self.port), "-U", "postgres"]
                   + list(args) + [dbname])

    def log_text(self):
        with contextlib.suppress(FileNotFoundError):
            with open(self.logfile) as f:
                return f.read()
        return ""


def on_each(fn, servers):
    """[fn(server) for server in servers], all at once (one thread each), as
    the servers are separate hosts; the first error is raised once all are
    done."""
    servers = list(servers)
    results = [None] * len(servers)
    errors = []

    def one(i):
        try:
            results[i] = fn(servers[i])
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(servers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


# --------------------------------------------------------------------------
# Network namespace sites

class Site:
    """One network namespace joined to the others through a bridge.

    .ns is the namespace, .wan_if its veth, .wan_ip its 192.0.2.x address."""

    def __init__(self, ns, wan_if, wan_ip):
        self.ns = ns
        self.wan_if = wan_if
        self.wan_ip = wan_ip

    def cmd(self, cmd):
        return ["ip", "netns", "exec", self.ns] + list(cmd)

    def run(self, cmd, check=True, **kw):
        return run(self.cmd(cmd), check=check, **kw)

    def popen(self, cmd, **kw):
        return subprocess.Popen(self.cmd(cmd), **kw)

    def counters(self):
        """(rx_bytes, tx_bytes) of the WAN veth, as the kernel counts them."""
        base = f"/sys/class/net/{self.wan_if}/statistics"
        out = self.run(["cat", f"{base}/rx_bytes", f"{base}/tx_bytes"]).stdout.split()
        return int(out[0]), int(out[1])

    def set_wan(self, up):
        self.run(["ip", "link", "set", self.wan_if, "up" if up else "down"])


class SiteNetwork:
    """n namespace sites on a shared bridge (itself in a hub namespace)."""

    def __init__(self, n, tag=None):
        tag = tag or f"{os.getpid() % 100000}{int(time.monotonic() * 1000) % 1000}"
        self.hub = f"sthub{tag}"
        self.sites = []
        self.namespaces = []
        run(["ip", "netns", "add", self.hub])
        self.namespaces.append(self.hub)
        self._hub(["ip", "link", "add", "br0", "type", "bridge"])
        self._hub(["ip", "link", "set", "br0", "up"])
        for i in range(n):
            ns = f"st{tag}s{i}"
            run(["ip", "netns", "add", ns])
            self.namespaces.append(ns)
            run(["ip", "link", "add", "name", "wan0", "netns", ns, "type", "veth",
                 "peer", "name", f"port{i}", "netns", self.hub])
            self._hub(["ip", "link", "set", f"port{i}", "master", "br0", "up"])
            ip = f"{WAN_PREFIX}{i + 1}"
            site = Site(ns, "wan0", ip)
            site.hub = self.hub      # the bridge's namespace (tests/integration/impair.py)
            site.run(["ip", "link", "set", "lo", "up"])
            site.run(["ip", "addr", "add", f"{ip}/24", "dev", "wan0"])
            site.run(["ip", "link", "set", "wan0", "up"])
            self.sites.append(site)

    def _hub(self, cmd):
        return run(["ip", "netns", "exec", self.hub] + cmd)

    def cleanup(self):
        for ns in reversed(self.namespaces):
            run(["ip", "netns", "del", ns], check=False)
        self.namespaces = []


# --------------------------------------------------------------------------
# Keys and configs

def make_keypair():
    """(private_b64, public_b64) from straitctl genkey/pubkey."""
    priv = run([STRAITCTL, "genkey"]).stdout.strip()
    pub = run([STRAITCTL, "pubkey"], input=priv + "\n").stdout.strip()
    return priv, pub


def write_private_key(path, private_b64):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(private_b64 + "\n")


def write_config(path, config):
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def site_config(base, cluster, sites, streams=(), backend="none", extra=None):
    """The cluster's config as a dict.

    sites: list of dicts with name, role, endpoint, tunnel_address, public_key,
    database. The per-host paths (private_key_file, state_dir, control.socket)
    are filled in per host by host_config()."""
    cfg = {
        "cluster": cluster,
        "private_key_file": os.path.join(base, "wireguard.key"),
        "state_dir": os.path.join(base, "state"),
        "sites": {s["name"]: {k: v for k, v in s.items() if k != "name"} for s in sites},
        "tunnel": {"backend": backend, "interface": "strait0"},
        "tls": {"ca": os.path.join(base, "tls", "ca.crt"),
                "cert": os.path.join(base, "tls", "site.crt"),
                "key": os.path.join(base, "tls", "site.key")},
        "control": {"socket": os.path.join(base, "control.sock")},
    }
    if streams:
        cfg["streams"] = list(streams)
    if extra:
        cfg.update(extra)
    return cfg


def host_config(cluster_cfg, host_dir):
    """The same cluster config with this host's own paths under host_dir."""
    cfg = yaml.safe_load(yaml.safe_dump(cluster_cfg))
    cfg["private_key_file"] = os.path.join(host_dir, "wireguard.key")
    cfg["state_dir"] = os.path.join(host_dir, "state")
    cfg["control"] = dict(cfg.get("control") or {}, socket=os.path.join(host_dir, "control.sock"))
    cfg.setdefault("metrics", {})["listen"] = f"127.0.0.1:{allocate_port()}"
    tls = cfg.setdefault("tls", {})
    for k, name in (("ca", "ca.crt"), ("cert", "site.crt"), ("key", "site.key")):
        tls[k] = os.path.join(host_dir, "tls", name)
    return cfg


# --------------------------------------------------------------------------
# straitd

class Straitd:
    """One straitd process, optionally inside a namespace site."""

    def __init__(self, config_path, site=None, netns=None, args=(), env=None, log_level="debug"):
        self.config_path = config_path
        self.site = site
        self.netns = netns
        self.args = list(args)
        self.env = env
        self.log_level = log_level
        self.proc = None
        self.logfile = config_path + f".{site or 'straitd'}.log"
        with open(config_path) as f:
            cfg = yaml.safe_load(f)
        self.socket = (cfg.get("control") or {}).get("socket", "/run/strait/control.sock")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def command(self):
        cmd = [STRAITD, "--config", self.config_path, "--log-level", self.log_level]
        if self.site:
            cmd += ["--site", self.site]
        cmd += self.args
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        return cmd

    def start(self, wait=True, timeout=15.0):
        env = dict(os.environ, **(self.env or {}))
        log = open(self.logfile, "a")
        # ip netns exec execs straitd in place, so the pid is straitd's own.
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=15.0):
        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"straitd exited {self.proc.returncode}:\n{self.log_text()}")
            return self.ctl("ping", check=False).returncode == 0
        try:
            wait_until(ready, timeout, what="straitd's control socket")
        except TimeoutError:
            raise HarnessError(f"straitd did not become ready:\n{self.log_text()}")

    def ctl(self, *args, check=True, timeout=60):
        return run([STRAITCTL, "--socket", self.socket] + list(args), check=check,
                   timeout=timeout)

    def status(self):
        import json
        return json.loads(self.ctl("status", "--json").stdout)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def reload(self):
        self.signal(signal.SIGHUP)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout=15.0):
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout=15.0):
        """SIGTERM, then the exit code (SIGKILL if it does not stop in time)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise HarnessError(f"straitd did not stop on SIGTERM:\n{self.log_text()}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self):
        with contextlib.suppress(FileNotFoundError):
            with open(self.logfile) as f:
                return f.read()
        return ""


# --------------------------------------------------------------------------
# A whole cluster: keys, TLS, one config per host

_cluster_seq = 0


class Cluster:
    """Sites with their keys, certificates and per-host configs.

    sites: list of dicts (name, role, tunnel_address, endpoint, database);
    public_key is filled in. host(name) -> (config_path, config_dict)."""

    def __init__(self, base, sites, streams=(), backend="none", cluster="acme-dr", extra=None):
        import tlsutil
        self.base = str(base)
        self.keys = {s["name"]: make_keypair() for s in sites}
        sites = [dict(s, public_key=self.keys[s["name"]][1]) for s in sites]
        extra = dict(extra or {})
        extra.setdefault("relay", {"port": allocate_port()})
        self.cluster_cfg = site_config(self.base, cluster, sites, streams, backend, extra)
        ca = tlsutil.make_ca(os.path.join(self.base, "ca"), cluster)
        self.ca = ca
        self.hosts = {}
        global _cluster_seq
        _cluster_seq += 1
        seq = _cluster_seq
        for i, s in enumerate(sites):
            host_dir = os.path.join(self.base, s["name"])
            os.makedirs(host_dir, exist_ok=True)
            cfg = host_config(self.cluster_cfg, host_dir)
            if backend != "none":
                # UAPI sockets are shared by every namespace: one name per host
                cfg["tunnel"]["interface"] = "st%dc%dx%d" % (os.getpid() % 10000, seq % 1000, i)
            write_private_key(cfg["private_key_file"], self.keys[s["name"]][0])
            cert = tlsutil.make_site_cert(ca, os.path.join(self.base, "ca"), s["name"])
            tlsutil.install_site_tls(ca, cert, host_dir)
            self.hosts[s["name"]] = (write_config(os.path.join(host_dir, "strait.yaml"), cfg), cfg)

    def host(self, name):
        return self.hosts[name]

    def path(self, name):
        return self.hosts[name][0]

    def update(self, name, cfg):
        """Writes a changed config for one host."""
        self.hosts[name] = (write_config(self.hosts[name][0], cfg), cfg)


def tunnel_sites(pgs, net_sites, names=("onprem", "cloud", "edge")):
    """Site dicts for namespace sites joined by a real WireGuard tunnel:
    endpoints on the WAN veth (192.0.2.x), tunnel addresses 10.77.0.x/24."""
    sites = []
    for i, (name, pg, ns) in enumerate(zip(names, pgs, net_sites)):
        sites.append({"name": name, "role": "primary" if i == 0 else "replica",
                      "endpoint": f"{ns.wan_ip}:51820",
                      "tunnel_address": f"10.77.0.{i + 1}/24",
                      "database": pg.dsn() if pg else "host=/nonexistent dbname=app"})
    return sites


def loopback_sites(pgs, names=("onprem", "cloud")):
    """Site dicts for sites on this host's loopback (tunnel backend none):
    127.0.0.1, 127.0.0.2, ... each with its PostgreSQL server's conninfo."""
    sites = []
    for i, (name, pg) in enumerate(zip(names, pgs)):
        sites.append({"name": name, "role": "primary" if i == 0 else "replica",
                      "endpoint": f"127.0.0.{i + 1}:{51820 + i}",
                      "tunnel_address": f"127.0.0.{i + 1}/8",
                      "database": pg.dsn() if pg else "host=/nonexistent dbname=app"})
    return sites


def tables_equal(src, dst, tables, dbname="postgres"):
    """Each table has the same rows at both servers, compared as sorted dumps;
    the dumps are taken only once the row counts agree (a count is cheap, a
    dump of a large table is not)."""
    for t in tables:
        query = f"SELECT count(*) FROM {t}"
        if src.sql(query, dbname=dbname) != dst.sql(query, dbname=dbname):
            return False
    return all(table_dump(src, t, dbname) == table_dump(dst, t, dbname) for t in tables)


def table_dump(pg, table, dbname="postgres"):
    """A table's rows as sorted COPY text, for comparing two sites."""
    res = run(["psql", "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-X", "-At",
               "-c", f"COPY (SELECT * FROM {table}) TO STDOUT", dbname])
    return sorted(res.stdout.splitlines())
