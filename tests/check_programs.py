#!/usr/bin/python3
"""Every program the tests run comes from `make deps`.

tests/programs.txt names each external program that the tests, tests/demo.py,
tests/bench, tests/chaos, the Makefile and packaging/packaging.mk run, with the
Debian package that provides it; tests/install-deps.sh installs that package.
This script fails (exit 1, listing what is wrong) when

  - a program in programs.txt is not on PATH (or its absolute path is missing),
  - its package is not in install-deps.sh's PACKAGES,
  - a static scan of every .py under tests/ finds a program that is not in
    programs.txt: argument lists of subprocess calls and of the harness's
    run/popen/_cmd helpers, and command prefixes such as
    ["ip", "netns", "exec", ns] + cmd, unwrapped through ip netns exec,
    runuser, nsenter, timeout and env.

tests/integration/conftest.py imports this module: its audit hook records the
programs each integration test really runs (unwrap, program_key) and fails the
session when one of them is not in programs.txt.
"""

import ast
import os
import re
import shutil
import sys

import fetch_postgres

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
PROGRAMS_TXT = os.path.join(TESTS, "programs.txt")
INSTALL_DEPS = os.path.join(TESTS, "install-deps.sh")

# The project's own programs as its package installs them (test_packaging).
OWN_PROGRAMS = {"/usr/bin/straitctl", "/usr/sbin/straitd"}
# A server program of another PostgreSQL major version, from the builds
# make deps fetches (tests/fetch_postgres.py), is named this way in programs.txt.
POSTGRES_BUILDS = "postgres-builds/"
# An absolute path in one of these directories is the program of that name.
PATH_DIRS = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

# Functions whose first argument is a command line.
RUNNERS = {"run", "popen", "Popen", "call", "check_call", "check_output", "_cmd", "cmd",
           "as_test_user", "as_user", "_hub", "execv", "execvp", "execvpe"}
# Variables that hold a command line.
COMMAND_VARS = {"cmd", "command", "argv"}
PROGRAM_NAME = re.compile(r"^(?:/|[A-Za-z0-9_])[A-Za-z0-9_.+/-]*$")


# --------------------------------------------------------------------------
# programs.txt and install-deps.sh

def load_programs(path=None):
    """{program: package} from programs.txt ("program package" per line, # comments)."""
    path = path or PROGRAMS_TXT
    programs = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{path}:{n}: expected 'program package', got {line!r}")
            programs[fields[0]] = fields[1]
    return programs


def install_deps_packages(path=None):
    """The package names in install-deps.sh's PACKAGES="...". """
    path = path or INSTALL_DEPS
    with open(path) as f:
        m = re.search(r'^PACKAGES="([^"]*)"', f.read(), re.M)
    if not m:
        raise ValueError(f"{path}: no PACKAGES=\"...\"")
    return set(m.group(1).split())


# --------------------------------------------------------------------------
# Command lines

def _operand(argv, i, with_arg):
    """(index of the first operand at or after i, the options before it),
    skipping options and the arguments of those in with_arg; index None when
    an item is not known."""
    seen = []
    while i < len(argv):
        t = argv[i]
        if t is None:
            return None, seen
        if t == "--":
            return i + 1, seen
        if not t.startswith("-") or t == "-":
            return i, seen
        seen.append(t.split("=", 1)[0])
        i += 2 if t in with_arg else 1
    return i, seen


def unwrap(argv):
    """The programs a command line runs: the wrappers (ip netns exec, runuser,
    nsenter, timeout, env) and what they run. Items that are not known (None)
    end the walk."""
    progs = []
    i = 0
    while i is not None and i < len(argv):
        prog = argv[i]
        if not isinstance(prog, str) or not prog:
            break
        progs.append(prog)
        name = os.path.basename(prog)
        if name == "ip" and argv[i + 1:i + 3] == ["netns", "exec"]:
            i += 4                                       # ip netns exec NS cmd
        elif name == "runuser":
            i, opts = _operand(argv, i + 1, {"-u", "--user", "-g", "--group", "-G",
                                             "--supp-group", "-s", "--shell", "-c",
                                             "--command", "-w", "--whitelist-environment"})
            if "-c" in opts or "--command" in opts or not {"-u", "--user"} & set(opts):
                break                                    # a shell runs the rest
        elif name == "nsenter":
            i, _ = _operand(argv, i + 1, {"-t", "--target", "-S", "--setuid", "-G",
                                          "--setgid"})
        elif name == "timeout":
            i, _ = _operand(argv, i + 1, {"-s", "--signal", "-k", "--kill-after"})
            i = None if i is None else i + 1             # past the duration
        elif name == "env":
            i, _ = _operand(argv, i + 1, {"-u", "--unset", "-C", "--chdir"})
            while i is not None and i < len(argv) and isinstance(argv[i], str) \
                    and "=" in argv[i]:
                i += 1                                   # NAME=VALUE
        else:
            break
    return progs


def _under(path, root):
    root = os.path.realpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def own_roots():
    """Directories whose programs are the project's own (exempt)."""
    roots = [REPO, "/tmp"]
    for var in ("STRAIT_BUILD", "STRAIT_PLAIN_BUILD"):
        if os.environ.get(var):
            roots.append(os.environ[var])
    return roots


def program_key(prog, cwd=None):
    """How programs.txt names prog, or None when it is the project's own: a
    name; an absolute path in a PATH directory (or sys.executable) as its
    name; any other absolute path as itself."""
    if "/" not in prog:
        return prog
    path = os.path.normpath(os.path.join(cwd or os.getcwd(), prog))
    if path in OWN_PROGRAMS or any(_under(path, r) or _under(os.path.realpath(path), r)
                                   for r in own_roots()):
        return None
    if _under(path, fetch_postgres.cache_dir()):
        return POSTGRES_BUILDS + os.path.basename(path)
    if os.path.dirname(path) in PATH_DIRS:
        return os.path.basename(path)
    if sys.executable and os.path.realpath(path) == os.path.realpath(sys.executable):
        return "python3"              # the interpreter the tests run in, wherever it is
    return path


# --------------------------------------------------------------------------
# Static scan of tests/**/*.py

class _Constants:
    """Module-level string constants of every scanned file (PG_BIN = "...",
    PGBIN + "/initdb", f"{PG_BIN}/pg_ctl"), to resolve program paths."""

    def __init__(self, trees):
        self.by_module = {}
        for path, tree in trees.items():
            module = os.path.splitext(os.path.basename(path))[0]
            consts = self.by_module.setdefault(module, {})
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                        and isinstance(node.targets[0], ast.Name):
                    value = self.resolve(node.value, consts)
                    if value is not None:
                        consts[node.targets[0].id] = value

    def lookup(self, name, local):
        if name in local:
            return local[name]
        values = {c[name] for c in self.by_module.values() if name in c}
        return values.pop() if len(values) == 1 else None

    def resolve(self, node, local):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.lookup(node.id, local)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return self.by_module.get(node.value.id, {}).get(node.attr)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.resolve(node.left, local), self.resolve(node.right, local)
            return left + right if left is not None and right is not None else None
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                part = self.resolve(v.value if isinstance(v, ast.FormattedValue) else v, local)
                if part is None:
                    return None
                parts.append(part)
            return "".join(parts)
        return None


def _callee(node):
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def _mentions(node, names):
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _command_lists(tree):
    """(lineno, list node) of every list literal used as a command line."""
    for node in ast.walk(tree):
        lists = []
        if isinstance(node, ast.Call) and node.args and _callee(node) in RUNNERS:
            arg = node.args[0]
            while isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add):
                arg = arg.left
            lists.append(arg)
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in COMMAND_VARS for t in node.targets):
            lists.append(node.value)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) \
                and _mentions(node.right, COMMAND_VARS):
            lists.append(node.left)          # a wrapper put before a command
        for lst in lists:
            if isinstance(lst, (ast.List, ast.Tuple)) and lst.elts:
                yield node.lineno, lst


def _required_programs(tree):
    """(lineno, name) of shutil.which("x") and need("x", ...) calls."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _callee(node) in ("which", "need"):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    yield node.lineno, arg.value


def scan(root=None):
    """{program key: [where, ...]} of the programs the .py files under root run."""
    trees = {}
    for dirpath, dirnames, filenames in os.walk(root or TESTS):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path) as f:
                    trees[path] = ast.parse(f.read(), path)
    consts = _Constants(trees)
    found = {}
    for path, tree in trees.items():
        local = consts.by_module[os.path.splitext(os.path.basename(path))[0]]
        where = os.path.relpath(path, REPO)
        hits = []
        for lineno, lst in _command_lists(tree):
            argv = [consts.resolve(e, local) for e in lst.elts]
            if argv[0] is None or not PROGRAM_NAME.match(argv[0]):
                continue
            hits += [(lineno, p) for p in unwrap(argv)]
        hits += list(_required_programs(tree))
        for lineno, prog in hits:
            key = program_key(prog, cwd=REPO)
            if key is not None:
                found.setdefault(key, []).append(f"{where}:{lineno}")
    return found


# --------------------------------------------------------------------------

def problems():
    """What is wrong, as lines of text (empty when all is well)."""
    out = []
    programs = load_programs()
    packages = install_deps_packages()
    for prog, package in sorted(programs.items()):
        if prog.startswith(POSTGRES_BUILDS):
            for major in sorted(fetch_postgres.pins()):
                path = os.path.join(fetch_postgres.bin_dir(major), prog[len(POSTGRES_BUILDS):])
                if not os.access(path, os.X_OK):
                    out.append(f"{path}: not fetched (make deps runs tests/fetch_postgres.py)")
        elif prog.startswith("/"):
            if not os.access(prog, os.X_OK):
                out.append(f"{prog}: not installed (package {package})")
        elif shutil.which(prog) is None:
            out.append(f"{prog}: not found on PATH (package {package})")
        if package not in packages:
            out.append(f"{prog}: its package {package} is not in PACKAGES of "
                       f"{os.path.relpath(INSTALL_DEPS, REPO)}")
    for prog, where in sorted(scan().items()):
        if prog not in programs:
            out.append(f"{prog}: run by {', '.join(where[:3])}"
                       f"{' ...' if len(where) > 3 else ''} but not in "
                       f"{os.path.relpath(PROGRAMS_TXT, REPO)}")
    return out


def main():
    try:
        out = problems()
    except (OSError, ValueError, SyntaxError) as exc:
        print(f"check_programs: {exc}", file=sys.stderr)
        return 1
    for line in out:
        print(f"check_programs: {line}", file=sys.stderr)
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())
