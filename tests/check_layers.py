#!/usr/bin/python3
"""The layering rule of the sources, checked on every #include.

    config/, common/        leaves: include nothing of the project outside
                            their own folder
    tunnel/, replicator/    include only config/, common/ and their own folder
    gateway/                on top: may include any of them

and nothing outside gateway/ includes a gateway/ header (tests/ excepted:
they may drive any part). A folder of sources that the table below does not
name is an error too, so a new folder gets its place in the rule before it
gets code. DESIGN.md ("Build and layout") explains the rule.

    check_layers.py [ROOT]     check the tree at ROOT (default: this file's
                               repository); prints FILE:LINE: the include and
                               the rule it breaks, exits 1 on any
    check_layers.py --self-test
                               checks the checker on small made-up trees
"""
import os
import re
import sys
import tempfile

# folder -> the folders its files may include from (its own always allowed)
LAYERS = {
    "config": (),
    "common": (),
    "tunnel": ("config", "common"),
    "replicator": ("config", "common"),
    "gateway": ("config", "common", "tunnel", "replicator"),
}
EXEMPT = ("tests",)          # drivers and tests of every layer
SKIP = (".git",)             # and build trees: any top-level build*

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def source_files(root):
    for top in sorted(os.listdir(root)):
        path = os.path.join(root, top)
        if not os.path.isdir(path) or top in SKIP or top.startswith("build") or top in EXEMPT:
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(dirpath, name), root)


def project_path(root, rel_file, included):
    """The repository path an include names, or None when it is not ours."""
    top = included.split("/", 1)[0]
    if "/" in included and (top in LAYERS or top in EXEMPT):
        return os.path.normpath(included)
    # a path relative to the including file ("x.h", "../gateway/x.h")
    local = os.path.normpath(os.path.join(os.path.dirname(rel_file), included))
    if not local.startswith("..") and os.path.exists(os.path.join(root, local)):
        return local
    return None


def check(root):
    """Yields (file, line, include, why) for every include that breaks the rule."""
    for rel in source_files(root):
        layer = rel.split(os.sep, 1)[0]
        if layer not in LAYERS:
            yield rel, 0, "", "%s/ is not in the layering table (tests/check_layers.py)" % layer
            continue
        own = os.path.dirname(rel)
        allowed = LAYERS[layer]
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            for lineno, text in enumerate(f, 1):
                m = INCLUDE.match(text)
                if not m:
                    continue
                target = project_path(root, rel, m.group(1))
                if target is None:
                    continue
                to = target.split(os.sep, 1)[0]
                inc = '#include "%s"' % m.group(1)
                if to == "gateway" and layer != "gateway":
                    yield rel, lineno, inc, "only gateway/ may include gateway/"
                elif layer in ("config", "common") and os.path.dirname(target) != own:
                    yield rel, lineno, inc, "%s/ is a leaf: it includes only its own folder" % layer
                elif to != layer and to not in allowed:
                    yield rel, lineno, inc, "%s/ may include only %s and its own folder" % (
                        layer, ", ".join(a + "/" for a in allowed))


def report(root):
    bad = list(check(root))
    for rel, lineno, inc, why in bad:
        print("%s:%d: %s: %s" % (rel, lineno, inc, why) if inc else "%s: %s" % (rel, why))
    return bad


# ------------------------------------------------------------------ self-test

def make_tree(files):
    root = tempfile.mkdtemp(prefix="strait-layers-")
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return root


def self_test():
    clean = {
        "common/log.h": "",
        "common/log.c": '#include "common/log.h"\n#include <stdio.h>\n',
        "config/config.h": "",
        "config/config_load.c": '#include "config/config.h"\n',
        "tunnel/wgkey.h": "",
        "tunnel/tunnel.c": '#include "tunnel/wgkey.h"\n#include "config/config.h"\n'
                           '#include "common/log.h"\n',
        "replicator/apply.h": "",
        "replicator/apply.c": '#include "replicator/apply.h"\n#include "common/log.h"\n',
        "gateway/relay/relay.h": '#include "config/config.h"\n',
        "gateway/stream/stream.c": '#include "gateway/relay/relay.h"\n'
                                   '#include "replicator/apply.h"\n#include "tunnel/wgkey.h"\n',
        "tests/unit/test_x.c": '#include "gateway/relay/relay.h"\n',
        "build/obj/x.c": '#include "gateway/relay/relay.h"\n',
    }
    cases = [
        # (file, text, the line that must be reported)
        ("common/json.c", '#include "common/log.h"\n#include "config/config.h"\n',
         'common/json.c:2: #include "config/config.h": common/ is a leaf'),
        ("config/config_net.c", '#include "config/config.h"\n#include "tunnel/wgkey.h"\n',
         'config/config_net.c:2: #include "tunnel/wgkey.h": config/ is a leaf'),
        ("replicator/slotwatch.c", '\n#include "gateway/stream/diskwarn.h"\n',
         'replicator/slotwatch.c:2: #include "gateway/stream/diskwarn.h": only gateway/'),
        ("replicator/source.c", '#include "tunnel/wgkey.h"\n',
         'replicator/source.c:1: #include "tunnel/wgkey.h": replicator/ may include only'),
        ("tunnel/peers.c", '#  include "replicator/apply.h"\n',
         'tunnel/peers.c:1: #include "replicator/apply.h": tunnel/ may include only'),
        ("tunnel/uapi.c", '#include "../gateway/relay/relay.h"\n',
         'tunnel/uapi.c:1: #include "../gateway/relay/relay.h": only gateway/'),
        ("extra/thing.c", '#include "common/log.h"\n',
         "extra/thing.c: extra/ is not in the layering table"),
    ]
    failures = 0
    root = make_tree(clean)
    found = list(check(root))
    if found:
        print("self-test: a clean tree was refused: %s" % found)
        failures += 1
    for rel, text, expect in cases:
        root = make_tree(dict(clean, **{rel: text}))
        lines = ["%s:%d: %s: %s" % b if b[2] else "%s: %s" % (b[0], b[3]) for b in check(root)]
        if len(lines) != 1 or not lines[0].startswith(expect):
            print("self-test: %s: expected %r, got %r" % (rel, expect, lines))
            failures += 1
    print("self-test: %d passed, %d failed" % (len(cases) + 1 - failures, failures))
    return failures == 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return 0 if self_test() else 1
    root = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bad = report(root)
    if bad:
        print("layering: %d include(s) break the rule (DESIGN.md, \"Build and layout\")" % len(bad))
        return 1
    print("layering: every include keeps the rule")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
