#!/usr/bin/python3
"""Every function of the sources is shorter than 100 lines.

A function of 100 lines or more in common/, config/, tunnel/, replicator/ or
gateway/ is an error: split it into helpers with one job each. Lengths are
measured with Universal Ctags (from its first line to its closing brace, both
counted), as

    ctags --fields=+ne -o - --c-kinds=f -R common config tunnel replicator gateway

    check_function_length.py [ROOT]   check the tree at ROOT (default: this
                                      file's repository); prints FILE:LINE:
                                      FUNCTION is N lines, exits 1 on any
    check_function_length.py --self-test
                                      checks the checker on a small made-up tree
"""
import os
import shutil
import subprocess
import sys
import tempfile

FOLDERS = ("common", "config", "tunnel", "replicator", "gateway")
LIMIT = 100                  # a function this long or longer is refused


def functions(root):
    """Yields (file, line, name, length) of every C function under FOLDERS."""
    folders = [f for f in FOLDERS if os.path.isdir(os.path.join(root, f))]
    if not folders:
        return
    out = subprocess.run(["ctags", "--fields=+ne", "-o", "-", "--c-kinds=f", "-R"] + folders,
                         cwd=root, check=True, capture_output=True, text=True).stdout
    for row in out.splitlines():
        cols = row.split("\t")
        if len(cols) < 4:
            continue
        start = end = None
        for field in cols[3:]:
            if field.startswith("line:"):
                start = int(field[5:])
            elif field.startswith("end:"):
                end = int(field[4:])
        if start is not None and end is not None:
            yield cols[1], start, cols[0], end - start + 1


def check(root):
    return sorted((f for f in functions(root) if f[3] >= LIMIT), key=lambda f: (-f[3], f[0]))


def self_test():
    root = tempfile.mkdtemp(prefix="strait-fnlen-")
    try:
        os.makedirs(os.path.join(root, "replicator"))
        body = "".join("\tx += %d;\n" % i for i in range(95))
        with open(os.path.join(root, "replicator", "x.c"), "w", encoding="utf-8") as f:
            # short: 99 lines; long: 100 lines
            f.write("int short_fn(int x)\n{\n" + body + "\treturn x;\n}\n\n")
            f.write("int long_fn(int x)\n{\n" + body + "\tx++;\n\treturn x;\n}\n")
        found = [(f[0], f[2], f[3]) for f in check(root)]
        expect = [(os.path.join("replicator", "x.c"), "long_fn", 100)]
        ok = found == expect
        print("self-test: %s" % ("passed" if ok else "expected %r, got %r" % (expect, found)))
        return ok
    finally:
        shutil.rmtree(root)


def main(argv):
    if shutil.which("ctags") is None:
        print("function length: ctags is not installed (Debian package universal-ctags; "
              "make deps installs it)")
        return 1
    if argv[1:] == ["--self-test"]:
        return 0 if self_test() else 1
    root = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bad = check(root)
    for rel, line, name, length in bad:
        print("%s:%d: %s is %d lines (the limit is %d)" % (rel, line, name, length, LIMIT - 1))
    if bad:
        print("function length: %d function(s) of %d lines or more: split them" % (len(bad), LIMIT))
        return 1
    print("function length: every function is under %d lines" % LIMIT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
