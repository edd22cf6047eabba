"""`straitctl status` and `schedule` as a person reads them: two sites on this
host's loopback, a stream streaming between them; the compact tables by
default (a line per site, a line per stream and direction), the full outline
with --verbose, the JSON document with --json."""

import json
import re

from harness import run, STRAITCTL
from test_replication import start_pair, wait_streaming

SITE_HEADER = ["SITE", "ROLE", "EPOCH", "LINK", "HANDSHAKE", "HEALTH"]
STREAM_HEADER = ["STREAM", "PEER", "STATE", "LAG", "LAG_TIME", "RATE", "SPOOL", "WARNINGS"]
LAG = re.compile(r"^\d+(\.\d)? (B|KiB|MiB|GiB)$")
LAG_TIME = re.compile(r"^\d+(\.\d)? (s|m|h|d)$")


def cells(line):
    return re.split(r"\s{2,}", line.strip())


def tables(text):
    """The first line, then each table as its header's cells and rows' cells."""
    first, *blocks = text.split("\n\n")
    found = {}
    for block in blocks:
        lines = block.strip("\n").splitlines()
        found[cells(lines[0])[0]] = (cells(lines[0]), [cells(l) for l in lines[1:]])
    return first, found


def test_status_is_a_table_per_site_and_stream(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, _ = start_pair(
        tmp_path, pg_factory, straitd_factory,
        schema=lambda pg: pg.sql("CREATE TABLE t (id int PRIMARY KEY, v text)"))
    wait_streaming(onprem)
    src.sql("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g")

    for d, role, arrow, peer in ((onprem, "primary", "->", "cloud"),
                                 (cloud, "replica", "<-", "onprem")):
        text = d.ctl("status").stdout
        assert all(len(line) <= 100 for line in text.splitlines()), text
        first, found = tables(text)
        assert first.startswith(f"site {d.site}, role {role}, epoch 1 (cluster acme-dr"), text

        header, rows = found["SITE"]
        assert header == SITE_HEADER, text
        sites = {r[0]: r for r in rows}
        assert sorted(sites) == ["cloud", "onprem"], text
        assert sites["onprem"][1:4] == ["primary", "1", "self" if d is onprem else "up"], text
        assert sites["cloud"][1:4] == ["replica", "1", "self" if d is cloud else "up"], text
        # no tunnel on the loopback: no handshake to tell
        assert all(r[4] == "-" and r[5] == "ok" for r in rows), text

        header, rows = found["STREAM"]
        assert header == STREAM_HEADER, text
        assert len(rows) == 1, text
        row = rows[0]
        assert row[:3] == ["app", f"{arrow} {peer}", "streaming"], text
        assert LAG.match(row[3]) and LAG_TIME.match(row[4]), text
        if d is onprem:
            assert row[5] == "unlimited" and LAG.match(row[6]) and row[7] == "-", text
        else:
            assert row[5:] == ["-", "-", "-"], text

    # --verbose is the outline of every field, as status printed it before
    verbose = onprem.ctl("status", "--verbose").stdout
    assert "site: onprem" in verbose and "configured_role: primary" in verbose
    assert "bytes_wan_estimate:" in verbose and "- stream: app" in verbose
    assert onprem.ctl("status", "-v").stdout.splitlines()[:4] == verbose.splitlines()[:4]
    # --json is the document scripts read
    doc = json.loads(onprem.ctl("status", "--json").stdout)
    assert doc["site"] == "onprem" and doc["lag"][0]["state"] == "streaming"

    res = onprem.ctl("status", "--json", "--verbose", check=False)
    assert res.returncode == 2 and "do not go together" in res.stderr


def test_schedule_is_a_table(tmp_path, pg_factory, straitd_factory):
    src, dst, onprem, cloud, _ = start_pair(
        tmp_path, pg_factory, straitd_factory,
        stream_extra={"schedule": [{"rate": "4MiB/s"}]})

    text = onprem.ctl("schedule").stdout
    lines = text.splitlines()
    assert lines[0] == "site onprem"
    assert cells(lines[1]) == ["STREAM", "TO", "MODE", "RATE", "NEXT_CHANGE", "RULE"]
    assert cells(lines[2])[:4] == ["app", "cloud", "live", "4.0 MiB/s"], text
    assert cells(lines[2])[5].startswith("rule 1: "), text
    assert len(lines) == 3

    # the stream table says the same rate and names the rule
    _, found = tables(onprem.ctl("status").stdout)
    assert found["STREAM"][1][0][5] == "4.0 MiB/s (rule 1)"

    assert cloud.ctl("schedule").stdout == "site cloud\nno streams sent from this site\n"
    verbose = onprem.ctl("schedule", "--verbose").stdout
    assert "rate_bytes_per_sec: 4194304" in verbose and "why: rule 1: " in verbose
    assert json.loads(onprem.ctl("schedule", "--json").stdout)["streams"][0]["stream"] == "app"


def test_status_says_when_straitd_is_not_there(tmp_path):
    res = run([STRAITCTL, "--socket", str(tmp_path / "nothing.sock"), "status"], check=False)
    assert res.returncode == 3 and res.stdout == ""
