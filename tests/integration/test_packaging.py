"""The packages: `make deb` and `make rpm` build, lintian and rpmlint find no
errors, and the .deb installs on this machine, runs, survives a reinstall with
an edited config and purges cleanly.

Each package is built once per session (module-scoped fixtures) into
$STRAIT_BUILD/pkg/. The install tests change this machine (they install and
purge the strait package), so they need root and refuse to touch a strait
package that was installed before the tests ran.
"""

import fcntl
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest

import harness

REPO = pathlib.Path(harness.REPO)
BUILD = pathlib.Path(harness.BUILD)
PKG_DIR = BUILD / "pkg"
VERSION = (REPO / "VERSION").read_text().strip()
MAN_DIR = REPO / "packaging" / "man"

UNIT = "/lib/systemd/system/strait.service"
CONFIG = pathlib.Path("/etc/strait/strait.yaml")
MAX_EXPOSURE = 2.0          # systemd-analyze security of strait.service
INSTALL_LOCK = "/run/lock/strait-packaging-tests.lock"

pytestmark = pytest.mark.skipif(not harness.IS_ROOT,
                                reason="package builds and installs need root")

# Files every package carries: (path in the .deb, path in the .rpm).
EXPECTED_FILES = [
    ("/usr/sbin/straitd", "/usr/sbin/straitd"),
    ("/usr/bin/straitctl", "/usr/bin/straitctl"),
    (UNIT, "/usr/lib/systemd/system/strait.service"),
    ("/usr/lib/sysusers.d/strait.conf", "/usr/lib/sysusers.d/strait.conf"),
    ("/usr/lib/tmpfiles.d/strait.conf", "/usr/lib/tmpfiles.d/strait.conf"),
    ("/etc/strait/strait.yaml", "/etc/strait/strait.yaml"),
    ("/usr/share/strait/strait-alerts.yml", "/usr/share/strait/strait-alerts.yml"),
    ("/usr/share/strait/strait.yaml.example", "/usr/share/strait/strait.yaml.example"),
    ("/usr/share/man/man5/strait.yaml.5.gz", "/usr/share/man/man5/strait.yaml.5.gz"),
    ("/usr/share/man/man8/straitd.8.gz", "/usr/share/man/man8/straitd.8.gz"),
    ("/usr/share/man/man8/straitctl.8.gz", "/usr/share/man/man8/straitctl.8.gz"),
]

# Libraries straitd links: the Debian package that ships each, and its soname.
LIBRARIES = [
    ("libpq5", "libpq.so.5"),
    ("libssl3", "libssl.so.3"),
    ("libssl3", "libcrypto.so.3"),
    ("libzstd1", "libzstd.so.1"),
    ("libevent-2.1-7", "libevent-2.1.so.7"),
    ("libevent-openssl-2.1-7", "libevent_openssl-2.1.so.7"),
    ("libyaml-0-2", "libyaml-0.so.2"),
    ("libmnl0", "libmnl.so.0"),
]


def run(cmd, check=True, **kw):
    """Runs cmd with a plain environment (no parent make's jobserver)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    env.update(kw.pop("env", {}))
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    if "input" not in kw:
        kw["stdin"] = subprocess.DEVNULL
    res = subprocess.run(cmd, env=env, **kw)
    if check and res.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {res.returncode}\n"
                    f"--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}")
    return res


def need(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        msg = f"missing {', '.join(missing)} (make deps installs them)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def package_installed():
    res = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "strait"],
                         capture_output=True, text=True)
    return res.returncode == 0 and res.stdout not in ("", "not-installed", "config-files")


def man_text(page):
    """A man page from the source tree, rendered as plain text."""
    res = run(["man", "-l", "-P", "cat", str(MAN_DIR / page)],
              env={"MANWIDTH": "200", "MAN_KEEP_FORMATTING": "", "LC_ALL": "C.UTF-8"})
    return re.sub(r".\x08", "", res.stdout)


# ---- the .deb ---------------------------------------------------------------

@pytest.fixture(scope="module")
def deb():
    need("make", "dpkg-buildpackage", "dh", "lintian")
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    path = PKG_DIR / f"strait_{VERSION}_{arch}.deb"
    if path.exists():
        path.unlink()
    run(["make", "-C", str(REPO), "--no-print-directory", f"BUILD={BUILD}", "deb"])
    assert path.is_file(), f"make deb did not produce {path}"
    return path


def test_deb_metadata(deb):
    fields = run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Depends",
                  "Recommends"]).stdout
    assert "Package: strait\n" in fields
    assert f"Version: {VERSION}\n" in fields, "the .deb's version is not VERSION's"
    depends = re.search(r"^Depends: (.*)$", fields, re.M).group(1)
    for package, _ in LIBRARIES:
        assert re.search(rf"\b{re.escape(package)}\b", depends), f"Depends lacks {package}"
    assert "systemd-sysusers" in depends, "the user needs systemd-sysusers"
    recommends = re.search(r"^Recommends: (.*)$", fields, re.M).group(1)
    assert "wireguard-tools" in recommends and "wireguard-go" in recommends


def test_deb_contents(deb):
    listing = run(["dpkg-deb", "-c", str(deb)]).stdout
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for deb_path, _ in EXPECTED_FILES:
        assert deb_path in paths, f"{deb_path} is not in the .deb"
    conffiles = run(["dpkg-deb", "-I", str(deb), "conffiles"]).stdout.split()
    assert conffiles == ["/etc/strait/strait.yaml"]


def test_lintian(deb):
    res = run(["lintian", "--fail-on", "error", "--display-info", str(deb)], check=False)
    tags = [line for line in res.stdout.splitlines() if re.match(r"[EWIXP]: ", line)]
    errors = [t for t in tags if t.startswith("E: ")]
    assert res.returncode == 0 and not errors, "lintian errors:\n" + res.stdout + res.stderr
    # Warnings are kept only with a reason (see packaging/debian/); a new one is news.
    assert not [t for t in tags if t.startswith("W: ")], "new lintian warnings:\n" + res.stdout
    # The license is named and recognised: no tag of any level about it.
    assert not [t for t in tags if re.search(r"licen[cs]e|copyright", t)], res.stdout


def test_deb_license(deb):
    with tempfile.TemporaryDirectory() as d:
        run(["dpkg-deb", "-x", str(deb), d])
        text = open(os.path.join(d, "usr/share/doc/strait/copyright")).read()
    assert "License: PostgreSQL" in text and "proprietary" not in text


# ---- installing the .deb on this machine ------------------------------------

def try_lock(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@pytest.fixture(scope="module")
def installed(deb):
    need("dpkg", "systemd-analyze")
    # Two test sessions on one machine take turns: both install and purge the
    # one strait package. (/run/lock may be missing where /run is a bare tmpfs.)
    os.makedirs(os.path.dirname(INSTALL_LOCK), exist_ok=True)
    with open(INSTALL_LOCK, "w") as lock:
        harness.wait_until(lambda: try_lock(lock), timeout=1200, interval=1.0,
                           what=f"the lock {INSTALL_LOCK} of another test session")
        if package_installed():
            pytest.skip("a strait package is installed on this machine; "
                        "these tests would replace and purge it")
        run(["dpkg", "-i", str(deb)], env={"DEBIAN_FRONTEND": "noninteractive"})
        yield deb
        if package_installed():
            run(["dpkg", "--purge", "strait"], check=False)


def test_install_creates_the_user(installed):
    entry = run(["getent", "passwd", "strait"]).stdout.strip().split(":")
    assert int(entry[2]) < 1000, "strait is not a system user"
    assert entry[5] == "/var/lib/strait"
    assert entry[6] in ("/usr/sbin/nologin", "/sbin/nologin")


def test_installed_programs_run(installed):
    out = run(["/usr/bin/straitctl", "--version"]).stdout
    assert out.strip() == f"straitctl {VERSION}"
    out = run(["/usr/sbin/straitd", "--version"]).stdout
    assert out.strip() == f"straitd {VERSION}"


def test_installed_unit_verifies(installed):
    res = run(["systemd-analyze", "verify", UNIT], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "strait.service" not in res.stderr, res.stderr


def test_installed_unit_exposure(installed):
    res = run(["systemd-analyze", "security", "--offline=true", "--no-pager", UNIT])
    m = re.search(r"Overall exposure level for strait\.service: ([0-9.]+)", res.stdout)
    assert m, res.stdout
    assert float(m.group(1)) <= MAX_EXPOSURE, res.stdout


def test_fresh_config_starts_nothing(installed):
    """The shipped config describes no cluster: check-config (the unit's
    ExecStartPre) refuses it rather than starting a half-configured daemon."""
    active = [line for line in CONFIG.read_text().splitlines()
              if line.strip() and not line.lstrip().startswith("#")]
    assert not active, f"uncommented lines in the shipped config: {active}"
    res = run(["/usr/bin/straitctl", "check-config", str(CONFIG)], check=False)
    assert res.returncode == 1, res.stdout + res.stderr


def test_config_template_is_valid(installed, tmp_path):
    """Uncommented and with its placeholders filled in, the shipped config is
    a valid cluster: the template teaches what check-config accepts."""
    keys = []
    for _ in range(2):
        private = run(["/usr/bin/straitctl", "genkey"]).stdout
        keys.append(run(["/usr/bin/straitctl", "pubkey"], input=private).stdout.strip())
    fill = {
        "<cluster-name>": "acme-dr",
        "<site-a>": "onprem", "<site-b>": "cloud",
        "<gw-a.example.net>": "gw-onprem.example.net",
        "<gw-b.example.net>": "gw-cloud.example.net",
        "<output of straitctl pubkey on site-a's host>": keys[0],
        "<output of straitctl pubkey on site-b's host>": keys[1],
        "<db>": "app", "<db-host>": "10.0.5.20", "<stream>": "app",
    }
    lines = []
    settings = False
    for line in CONFIG.read_text().splitlines():
        # The settings start at the first "#key:"; among them "#key" and
        # "#  key" are commented-out YAML, "# text" is prose.
        settings = settings or re.match(r"#[a-z]", line) is not None
        if settings and re.match(r"#(\S|  )", line):
            line = line[1:]
        for placeholder, value in fill.items():
            line = line.replace(placeholder, value)
        lines.append(line)
    text = "\n".join(lines) + "\n"
    assert "<" not in re.sub(r"#.*", "", text), "a placeholder is left unfilled"
    path = tmp_path / "strait.yaml"
    path.write_text(text)
    res = run(["/usr/bin/straitctl", "check-config", str(path)], check=False)
    assert res.returncode == 0, res.stdout + res.stderr + text


def test_reinstall_keeps_edited_config(installed):
    edited = CONFIG.read_text() + "\n# edited by the operator\ncluster: edited\n"
    CONFIG.write_text(edited)
    run(["dpkg", "-i", str(installed)], env={"DEBIAN_FRONTEND": "noninteractive"})
    assert CONFIG.read_text() == edited
    assert not list(CONFIG.parent.glob("strait.yaml.dpkg-*"))


def test_purge_removes_everything(installed):
    state = pathlib.Path("/var/lib/strait")
    state.mkdir(exist_ok=True)
    (state / "epoch").write_text("1\n")
    key = pathlib.Path("/etc/strait/wireguard.key")
    key.write_text(run(["/usr/bin/straitctl", "genkey"]).stdout)

    run(["dpkg", "--purge", "strait"])
    assert not package_installed()
    for deb_path, _ in EXPECTED_FILES:
        assert not os.path.exists(deb_path), f"{deb_path} is left after purge"
    for path in ("/etc/strait", "/var/lib/strait", "/run/strait"):
        assert not os.path.exists(path), f"{path} is left after purge"
    # The system user stays, as Debian's system users do: files it owned
    # elsewhere must not pass to a later user with the same uid.
    assert run(["getent", "passwd", "strait"], check=False).returncode == 0


# ---- the .rpm ---------------------------------------------------------------

@pytest.fixture(scope="module")
def rpm():
    need("make", "rpmbuild", "rpm", "rpmlint")
    for old in PKG_DIR.glob("strait-*.rpm"):
        old.unlink()
    run(["make", "-C", str(REPO), "--no-print-directory", f"BUILD={BUILD}", "rpm"])
    binary = list(PKG_DIR.glob(f"strait-{VERSION}-1*.x86_64.rpm")) + \
        list(PKG_DIR.glob(f"strait-{VERSION}-1*.aarch64.rpm"))
    source = list(PKG_DIR.glob(f"strait-{VERSION}-1*.src.rpm"))
    assert len(binary) == 1 and len(source) == 1, list(PKG_DIR.iterdir())
    return binary[0], source[0]


def test_rpmlint(rpm):
    spec = PKG_DIR / "rpm" / "SPECS" / "strait.spec"
    res = run(["rpmlint", "-c", str(REPO / "packaging" / "rpm" / "rpmlint.toml"),
               str(rpm[0]), str(rpm[1]), str(spec)], check=False)
    assert res.returncode == 0 and " 0 errors" in res.stdout, res.stdout + res.stderr
    assert not re.search(r"licen[cs]e", res.stdout), res.stdout


def test_rpm_license(rpm):
    out = run(["rpm", "-qp", "--qf", "%{LICENSE}\n", str(rpm[0])]).stdout
    assert out.strip() == "PostgreSQL"
    files = run(["rpm", "-qpl", str(rpm[0])]).stdout.split()
    assert any(f.endswith("/LICENSE") for f in files), files


def test_rpm_version(rpm):
    out = run(["rpm", "-qp", "--qf", "%{NAME} %{VERSION}\n", str(rpm[0])]).stdout
    assert out.strip() == f"strait {VERSION}", "the .rpm's version is not VERSION's"


def test_rpm_files(rpm):
    files = set(run(["rpm", "-qpl", str(rpm[0])]).stdout.split())
    for _, rpm_path in EXPECTED_FILES:
        assert rpm_path in files, f"{rpm_path} is not in the .rpm"
    config = run(["rpm", "-qp", "--configfiles", str(rpm[0])]).stdout.split()
    assert config == ["/etc/strait/strait.yaml"]


def test_rpm_dependencies(rpm):
    requires = run(["rpm", "-qpR", str(rpm[0])]).stdout
    for _, soname in LIBRARIES:
        assert re.search(rf"^{re.escape(soname)}\(", requires, re.M), \
            f"{soname} is not required:\n{requires}"
    assert "shadow-utils" in requires
    weak = run(["rpm", "-qp", "--recommends", "--suggests", str(rpm[0])]).stdout.split()
    assert "wireguard-tools" in weak and "wireguard-go" in weak
    scripts = run(["rpm", "-qp", "--scripts", str(rpm[0])]).stdout
    assert "useradd" in scripts and "strait.service" in scripts


# ---- documentation that must follow the programs ----------------------------

def test_every_config_key_is_documented():
    """strait.yaml(5) describes every key that straitctl config-reference lists."""
    ref = run([os.path.join(BUILD, "straitctl"), "config-reference"]).stdout
    keys = [line for line in ref.splitlines() if line and not line[0].isspace()]
    assert len(keys) > 20, ref
    page = man_text("strait.yaml.5")
    missing = [k for k in keys if k.replace("<name>", "name") not in page]
    assert not missing, f"strait.yaml(5) does not document: {missing}"


def test_every_straitctl_command_is_documented():
    usage = run([os.path.join(BUILD, "straitctl"), "--help"]).stdout
    commands = re.findall(r"^  ([a-z][a-z-]+) ", usage.split("Commands:", 1)[1], re.M)
    assert "check-config" in commands, usage
    page = man_text("straitctl.8")
    section = page.split("COMMANDS", 1)[1].split("EXIT STATUS", 1)[0]
    missing = [c for c in commands if not re.search(rf"^ +{re.escape(c)}\b", section, re.M)]
    assert not missing, f"straitctl(8) does not document: {missing}"


def test_every_straitd_option_is_documented():
    usage = run([os.path.join(BUILD, "straitd"), "--help"]).stdout
    options = re.findall(r"(--[a-z][a-z-]+)", usage)
    assert "--config" in options, usage
    page = man_text("straitd.8")
    missing = [o for o in set(options) if o not in page]
    assert not missing, f"straitd(8) does not document: {missing}"


ALERT_TESTS = """
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # Two sites see the same stream 20MiB and 60s behind.
      - series: 'strait_stream_lag_bytes{instance="onprem",job="strait",to="cloud",stream="app"}'
        values: '20971520x30'
      - series: 'strait_stream_lag_bytes{instance="cloud",job="strait",to="cloud",stream="app"}'
        values: '20971520x30'
      - series: 'strait_stream_lag_seconds{instance="cloud",job="strait",to="cloud",stream="app"}'
        values: '60x30'
      # app applies nothing; held is held by its schedule; moving applies.
      - series: 'strait_stream_applied_lsn{instance="cloud",job="strait",to="cloud",stream="app"}'
        values: '1000x30'
      - series: 'strait_stream_lag_bytes{instance="cloud",job="strait",to="cloud",stream="held"}'
        values: '10x30'
      - series: 'strait_stream_applied_lsn{instance="cloud",job="strait",to="cloud",stream="held"}'
        values: '1000x30'
      - series: 'strait_stream_state{instance="cloud",job="strait",to="cloud",stream="held",state="held"}'
        values: '1x30'
      - series: 'strait_stream_lag_bytes{instance="cloud",job="strait",to="cloud",stream="moving"}'
        values: '10x30'
      - series: 'strait_stream_applied_lsn{instance="cloud",job="strait",to="cloud",stream="moving"}'
        values: '1000+100x30'
      - series: 'strait_stream_state{instance="cloud",job="strait",to="cloud",stream="moving",state="error"}'
        values: '1x30'
      # fan: one stream to two sites, dc2 20MiB behind, cloud caught up
      - series: 'strait_stream_lag_bytes{instance="onprem",job="strait",to="dc2",stream="fan"}'
        values: '20971520x30'
      - series: 'strait_stream_lag_bytes{instance="onprem",job="strait",to="cloud",stream="fan"}'
        values: '0x30'
      - series: 'strait_spool_bytes{instance="onprem",job="strait",stream="app"}'
        values: '9x30'
      - series: 'strait_spool_max_bytes{instance="onprem",job="strait",stream="app"}'
        values: '10x30'
      # Disk warnings: a warning on app, critical on held.
      - series: 'strait_disk_warning_level{instance="onprem",job="strait",stream="app"}'
        values: '1x30'
      - series: 'strait_disk_warning_level{instance="onprem",job="strait",stream="held"}'
        values: '2x30'
      # No handshake ever with cloud; one every minute with dc2.
      - series: 'strait_tunnel_last_handshake_seconds{instance="onprem",job="strait",peer="cloud"}'
        values: '0x30'
      - series: 'strait_tunnel_last_handshake_seconds{instance="onprem",job="strait",peer="dc2"}'
        values: '0+60x30'
      - series: 'strait_site_role{instance="onprem",job="strait",role="primary"}'
        values: '1x30'
      - series: 'strait_site_role{instance="cloud",job="strait",role="primary"}'
        values: '1x30'
      - series: 'up{instance="cloud",job="strait"}'
        values: '0x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: StraitDown
        exp_alerts:
          - exp_labels: {instance: cloud, job: strait, severity: critical}
      - eval_time: 20m
        alertname: StraitStreamLagBytesHigh
        exp_alerts:
          - exp_labels: {stream: app, to: cloud, severity: warning}
          - exp_labels: {stream: fan, to: dc2, severity: warning}
      - eval_time: 20m
        alertname: StraitStreamLagSecondsHigh
        exp_alerts:
          - exp_labels: {stream: app, to: cloud, severity: warning}
      - eval_time: 20m
        alertname: StraitStreamStalled
        exp_alerts:
          - exp_labels: {instance: cloud, stream: app, to: cloud, severity: critical}
      - eval_time: 20m
        alertname: StraitStreamFailed
        exp_alerts:
          - exp_labels: {instance: cloud, job: strait, stream: moving, to: cloud, state: error,
                         severity: critical}
      - eval_time: 20m
        alertname: StraitSpoolNearlyFull
        exp_alerts:
          - exp_labels: {instance: onprem, job: strait, stream: app, severity: warning}
      - eval_time: 20m
        alertname: StraitSpoolFull
        exp_alerts: []
      - eval_time: 20m
        alertname: StraitDiskSpaceAtRisk
        exp_alerts:
          - exp_labels: {instance: onprem, job: strait, stream: app, severity: warning}
          - exp_labels: {instance: onprem, job: strait, stream: held, severity: warning}
      - eval_time: 20m
        alertname: StraitDiskSpaceCritical
        exp_alerts:
          - exp_labels: {instance: onprem, job: strait, stream: held, severity: critical}
      - eval_time: 20m
        alertname: StraitTunnelStale
        exp_alerts:
          - exp_labels: {instance: onprem, job: strait, peer: cloud, severity: critical}
      - eval_time: 20m
        alertname: StraitMultiplePrimaries
        exp_alerts:
          - exp_labels: {severity: critical}
"""


def test_alert_rules(tmp_path):
    """The alert rules load in Prometheus and fire when, and only when, they
    should (needs promtool, from the prometheus package)."""
    import yaml

    if not shutil.which("promtool"):
        pytest.skip("promtool (package prometheus) is not installed")
    rules_path = REPO / "packaging" / "prometheus" / "strait-alerts.yml"
    run(["promtool", "check", "rules", str(rules_path)])
    # promtool compares annotations too; the test is about when alerts fire.
    rules = yaml.safe_load(rules_path.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    tests = yaml.safe_load(ALERT_TESTS)
    tests["rule_files"] = [str(tmp_path / "rules.yml")]
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests))
    run(["promtool", "test", "rules", str(tmp_path / "tests.yml")])
