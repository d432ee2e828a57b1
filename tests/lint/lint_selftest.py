#!/usr/bin/env python3
"""Every check of lint.py fails on a small repository that breaks its rule,
naming file:line and the rule, and passes on the same repository fixed
(ctest lint_selftest)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
LINT = os.path.join(HERE, "lint.py")

GOOD = {
    "common/types.h": "#pragma once\n#include <cstdint>\n\nint Add(int a, int b);\n",
    "replica/ledger/ledger.h": '#pragma once\n#include "common/types.h"\n',
    "replica/net/net.h": '#pragma once\n#include "common/types.h"\n',
    "replica/core/core.cc": (
        '#include <vector>\n\n#include "common/types.h"\n\n'
        "// See docs/protocol.md and core.cc.\n"
        "int Add(int a, int b) {\n  int c = a + b;\n  return c;\n}\n"),
    "client/client.cc": ('#include "common/types.h"\n\nnamespace pbft::client {\n'
                         "int z;\n}  // namespace pbft::client\n"),
    "tests/x_test.cc": '#include "replica/ledger/ledger.h"\n',
    "docs/protocol.md": "The rules (replica/core/core.cc, docs/protocol.md).\n",
}
# Each entry: files to write over GOOD, the check, the findings expected
# (file:line: [rule] prefix).
BAD = [
    ({"replica/core/core.cc": '#include "replica/ledger/ledger.h"\n'},
     "layers", ["replica/core/core.cc:1: [layering]"]),
    ({"client/client.cc": '#include "common/types.h"\n#include "replica/net/net.h"\n'},
     "layers", ["client/client.cc:2: [layering]"]),
    ({"replica/ledger/ledger.h": '#pragma once\n#include "replica/net/net.h"\n'},
     "layers", ["replica/ledger/ledger.h:2: [layering]"]),
    ({"odd/x.cc": "int x;\n"}, "layers", ["odd/x.cc:1: [layer-unmapped]"]),
    # The client's code in the ledger layer's namespace, and a test in one
    # outside pbft.
    ({"client/client.cc": '#include "common/types.h"\n\nnamespace pbft::ledger {\n'
                          "int x;\n}  // namespace pbft::ledger\n",
      "tests/x_test.cc": "namespace ledger {\nint y;\n}  // namespace ledger\n"},
     "layers", ["client/client.cc:3: [namespace]", "tests/x_test.cc:1: [namespace]"]),
    # A map in which a layer may include one above it: a cycle.
    ({"tests/lint/layers.json": json.dumps({"layers": [
        {"name": "common", "files": ["common/*"], "may_include": ["core"]},
        {"name": "core", "files": ["replica/core/*"], "may_include": ["common"]},
        {"name": "rest", "files": ["*"], "may_include": ["*"]}]})},
     "layers", ["tests/lint/layers.json:1: [layer-map]"]),
    ({"replica/core/core.cc": "#include <thread>\n"},
     "core-purity", ["replica/core/core.cc:1: [core-purity]"]),
    ({"common/types.h": "#pragma once\n#include <mutex>\n"},
     "core-purity", ["replica/core/core.cc:3: [core-purity]"]),
    ({"replica/core/core.cc": "int F() {\n  return std::rand();\n}\n"},
     "core-purity", ["replica/core/core.cc:2: [core-purity]"]),
    ({"replica/core/core.cc":
      "long F() {\n  return std::chrono::steady_clock::now().count();\n}\n"},
     "core-purity", ["replica/core/core.cc:2: [core-purity]"]),
    ({"replica/core/core.cc": "long F() {\n  return time(nullptr);\n}\n"},
     "core-purity", ["replica/core/core.cc:2: [core-purity]"]),
    ({"client/client.cc": "int  F( ){return 1;}\n"},
     "format", ["client/client.cc:1: [format]"]),
    ({"replica/core/core.cc":
      "int Add(int a, int b) {\n" + "  a += b;\n" * 8 + "  return a;\n}\n"},
     "function-size", ["replica/core/core.cc:1: [function-size]"]),
    ({"tests/x_test.cc": "// x\n" * 40},
     "function-size", ["tests/x_test.cc:1: [file-size]"]),
    ({"docs/protocol.md": "See NOTES.md.\n\nAnd docs/missing.md.\n"},
     "file-refs", ["docs/protocol.md:1: [file-ref]", "docs/protocol.md:3: [file-ref]"]),
    ({"replica/core/core.cc": "// As tests/core/gone_test.cc shows.\nint x;\n"},
     "file-refs", ["replica/core/core.cc:1: [file-ref]"]),
]
CHECKS = ["layers", "core-purity", "format", "function-size", "file-refs"]


def make_repo(root, overrides):
    for path, text in {**GOOD, **overrides}.items():
        os.makedirs(os.path.join(root, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(root, path), "w", encoding="utf-8") as f:
            f.write(text)
    lint_dir = os.path.join(root, "tests", "lint")
    os.makedirs(lint_dir, exist_ok=True)
    if "tests/lint/layers.json" not in overrides:
        shutil.copy(os.path.join(HERE, "layers.json"), lint_dir)
    shutil.copy(os.path.join(HERE, "..", "..", ".clang-format"), root)
    with open(os.path.join(lint_dir, "size_ratchet.json"), "w") as f:
        json.dump({"function_lines_max": 6, "file_lines_max": 30}, f)


def run(root, check):
    env = dict(os.environ, PBFT_LINT_ROOT=root)
    r = subprocess.run([sys.executable, LINT, check], env=env,
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def main():
    failures = []
    with tempfile.TemporaryDirectory() as root:
        make_repo(root, {})
        for check in CHECKS:
            rc, out = run(root, check)
            if rc != 0:
                failures.append(f"{check} fails on the clean repository:\n{out}")
            # The clean repository's longest function (4 lines) and file
            # are below the ratchet (6, 30): the check says to lower it.
            if check == "function-size" and "hint: the maximum fell" not in out:
                failures.append(f"function-size gives no hint to lower the "
                                f"ratchet:\n{out}")
    for overrides, check, expected in BAD:
        with tempfile.TemporaryDirectory() as root:
            make_repo(root, overrides)
            rc, out = run(root, check)
            findings = [l for l in out.splitlines() if ": [" in l]
            missing = [e for e in expected
                       if not any(l.startswith(e) for l in findings)]
            if rc != 1 or missing or len(findings) != len(expected):
                failures.append(f"{check} on {sorted(overrides)}: rc={rc}, "
                                f"expected {expected}, got:\n{out}")
    for f in failures:
        print("FAIL:", f)
    print(f"lint_selftest: {len(BAD)} broken repositories, "
          f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
