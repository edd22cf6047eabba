"""straitd's and straitctl's command lines: help, version, bad options, keys
(against wg), and check-config."""

import os
import shutil

import pytest

import harness
from harness import STRAITCTL, STRAITD, run

VERSION = open(os.path.join(harness.REPO, "VERSION")).read().strip()
EXAMPLE = os.path.join(harness.REPO, "tests", "configs", "good", "example.yaml")
SHARED_EXAMPLE = os.path.join(os.path.dirname(harness.REPO), "shared", "examples", "strait.yaml")
SUBCOMMANDS = ["status", "ping", "check-config", "reload", "genkey", "pubkey", "config-reference", "help"]


@pytest.mark.parametrize("prog", [STRAITD, STRAITCTL])
def test_version(prog):
    res = run([prog, "--version"])
    assert res.stdout == f"{os.path.basename(prog)} {VERSION}\n"


@pytest.mark.parametrize("prog", [STRAITD, STRAITCTL])
def test_help(prog):
    res = run([prog, "--help"])
    assert res.stdout.startswith(f"Usage: {os.path.basename(prog)}")
    assert "--config" in res.stdout and "--version" in res.stdout


@pytest.mark.parametrize("prog", [STRAITD, STRAITCTL])
def test_bad_option(prog):
    res = run([prog, "--no-such-option"], check=False)
    assert res.returncode == 2
    assert "--help" in res.stderr


def test_straitd_rejects_stray_arguments():
    res = run([STRAITD, "extra"], check=False)
    assert res.returncode == 2 and "unexpected argument" in res.stderr


def test_straitd_rejects_a_bad_log_level():
    res = run([STRAITD, "--log-level", "loud"], check=False)
    assert res.returncode == 2 and "invalid log level" in res.stderr


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd):
    res = run([STRAITCTL, cmd, "--help"])
    assert res.stdout.startswith(f"Usage: straitctl {cmd}")
    assert cmd in run([STRAITCTL, "--help"]).stdout


def test_help_command_matches_dash_help():
    assert run([STRAITCTL, "help", "status"]).stdout == run([STRAITCTL, "status", "--help"]).stdout


def test_unknown_subcommand():
    res = run([STRAITCTL, "frobnicate"], check=False)
    assert res.returncode == 2 and "unknown command" in res.stderr


def test_no_subcommand_prints_usage():
    res = run([STRAITCTL], check=False)
    assert res.returncode == 2 and "Usage: straitctl" in res.stderr


@pytest.mark.parametrize("cmd", ["genkey", "pubkey", "ping", "reload", "config-reference"])
def test_subcommands_reject_stray_arguments(cmd):
    res = run([STRAITCTL, cmd, "extra"], check=False, input="")
    assert res.returncode == 2


@pytest.mark.skipif(shutil.which("wg") is None, reason="wireguard-tools not installed")
def test_keys_are_interchangeable_with_wg():
    for _ in range(5):
        ours = run([STRAITCTL, "genkey"]).stdout
        assert len(ours.strip()) == 44
        assert run(["wg", "pubkey"], input=ours).stdout == run([STRAITCTL, "pubkey"], input=ours).stdout
        theirs = run(["wg", "genkey"]).stdout
        assert run(["wg", "pubkey"], input=theirs).stdout == run([STRAITCTL, "pubkey"], input=theirs).stdout


def test_genkey_is_random_and_clamped():
    import base64
    keys = {run([STRAITCTL, "genkey"]).stdout.strip() for _ in range(8)}
    assert len(keys) == 8
    for k in keys:
        raw = base64.b64decode(k)
        assert len(raw) == 32 and raw[0] & 7 == 0 and raw[31] & 0xC0 == 0x40


@pytest.mark.parametrize("bad", ["", "not a key\n", "AAAA\n", "x" * 44 + "\n"])
def test_pubkey_rejects_garbage(bad):
    res = run([STRAITCTL, "pubkey"], input=bad, check=False)
    assert res.returncode == 1 and "private key" in res.stderr


def test_check_config_accepts_the_example():
    res = run([STRAITCTL, "check-config", EXAMPLE])
    assert "ok (2 sites, 2 streams)" in res.stdout


@pytest.mark.skipif(not os.path.exists(SHARED_EXAMPLE), reason="shared/ is not beside the repo")
def test_check_config_accepts_the_shared_example_as_it_is():
    run([STRAITCTL, "check-config", SHARED_EXAMPLE])
    with open(SHARED_EXAMPLE) as a, open(EXAMPLE) as b:
        assert a.read() == b.read()


def test_check_config_uses_the_config_option():
    res = run([STRAITCTL, "--config", EXAMPLE, "check-config"])
    assert res.returncode == 0


def test_check_config_reports_errors_with_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    text = open(EXAMPLE).read().replace("listen_port: 51820", "listen_prot: 51820")
    path.write_text(text)
    res = run([STRAITCTL, "check-config", str(path)], check=False)
    assert res.returncode == 1
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "listen_prot" in l)
    assert f"bad.yaml:{line}:3: error" in res.stderr
    assert "listen_prot" in res.stderr and "did you mean" in res.stderr
    assert "^" in res.stderr


VIA = os.path.join(harness.REPO, "tests", "configs", "good", "relay.yaml")


def test_check_config_takes_a_relay_and_several_destinations(tmp_path):
    """A stream sent to several sites, one of them through another (via)."""
    run([STRAITCTL, "check-config", VIA])
    text = open(VIA).read()
    assert "    via: { north: west }\n" in text
    path = tmp_path / "fan-out.yaml"
    path.write_text(text.replace("    via: { north: west }\n", ""))
    run([STRAITCTL, "check-config", str(path)])


def test_check_config_missing_file(tmp_path):
    res = run([STRAITCTL, "check-config", str(tmp_path / "absent.yaml")], check=False)
    assert res.returncode == 1 and "absent.yaml" in res.stderr


def test_check_config_print_round_trips(tmp_path):
    printed = run([STRAITCTL, "check-config", "--print", EXAMPLE]).stdout
    assert "spool_max:" in printed and "health_failures:" in printed
    again = tmp_path / "printed.yaml"
    again.write_text(printed)
    assert run([STRAITCTL, "check-config", "--print", str(again)]).stdout == printed


def test_check_config_files_checks_named_files(tmp_path):
    text = open(EXAMPLE).read()
    text = text.replace("/etc/strait/wireguard.key", str(tmp_path / "wg.key"))
    text = text.replace("/etc/strait/tls/", str(tmp_path) + "/")
    path = tmp_path / "strait.yaml"
    path.write_text(text)
    # the plain check does not open them
    run([STRAITCTL, "check-config", str(path)])
    res = run([STRAITCTL, "check-config", "--files", str(path)], check=False)
    assert res.returncode == 1
    assert "wg.key" in res.stderr and "ca.crt" in res.stderr
    for name in ("wg.key", "ca.crt", "site.crt", "site.key"):
        (tmp_path / name).write_text("x\n")
        os.chmod(tmp_path / name, 0o644)
    res = run([STRAITCTL, "check-config", "--files", str(path)], check=False)
    assert res.returncode == 1
    assert "wg.key" in res.stderr and "site.key" in res.stderr
    assert "ca.crt" not in res.stderr
    os.chmod(tmp_path / "wg.key", 0o600)
    os.chmod(tmp_path / "site.key", 0o600)
    run([STRAITCTL, "check-config", "--files", str(path)])


def test_config_reference_documents_every_key():
    ref = run([STRAITCTL, "config-reference"]).stdout
    for key in ("cluster", "private_key_file", "state_dir", "tunnel_address", "public_key",
                "persistent_keepalive", "spool_max", "on_conflict", "initial_sync",
                "max_lag_bytes", "sequence_margin", "listen", "socket", "windows"):
        assert key in ref, key
