#!/usr/bin/env python3
"""Source checks run by ctest under the label `lint` (docs/architecture.md,
"Checks on the source").

    lint.py layers        includes obey the layer map (tests/lint/layers.json)
    lint.py core-purity   no I/O, threads, clocks or global randomness in the
                          PBFT core (the list is CORE_FORBIDDEN_* below)
    lint.py format        clang-format-14 --dry-run -Werror over all C++
    lint.py function-size no function or file longer than the ratchet
                          (tests/lint/size_ratchet.json); only goes down
    lint.py file-refs     docs and comments name only files that exist
    lint.py sizes         print the longest functions and files (no check)

Each check prints one line per finding, `file:line: [rule] message`, and
exits 1 if it found any. Standard library only (Python 3.9+).
"""

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys

# The repository checked: this one, or PBFT_LINT_ROOT (lint_selftest.py).
ROOT = os.environ.get("PBFT_LINT_ROOT") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CXX_EXT = (".cc", ".h")
# Never scanned: test inputs that are data, not source.
SKIP_PREFIXES = ("tests/fuzz/corpus/", "tests/mutation/patches/")


def repo_files():
    """Tracked and untracked-but-not-ignored files, relative to ROOT."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"],
            cwd=ROOT, capture_output=True, text=True, check=True).stdout
        files = [f for f in out.splitlines()
                 if os.path.isfile(os.path.join(ROOT, f))]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, dirs, names in os.walk(ROOT):
            dirs[:] = [x for x in dirs
                       if not x.startswith((".", "build")) and x != "node_modules"]
            files += [os.path.relpath(os.path.join(d, n), ROOT) for n in names]
    return sorted(f for f in files if not f.startswith(SKIP_PREFIXES))


def cxx_files(files):
    return [f for f in files if f.endswith(CXX_EXT)]


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8", errors="replace") as f:
        return f.read()


class Findings:
    def __init__(self, check):
        self.check = check
        self.items = []

    def add(self, path, line, rule, msg):
        self.items.append(f"{path}:{line}: [{rule}] {msg}")

    def finish(self, ok_msg):
        for item in self.items:
            print(item)
        if self.items:
            print(f"lint {self.check}: {len(self.items)} finding(s)")
            return 1
        print(f"lint {self.check}: {ok_msg}")
        return 0


# --- C++ lexing -------------------------------------------------------------

def lex_cxx(text):
    """(kind, start, end) of every comment ('c') and string or char literal
    ('s') of C++ source text."""
    spans = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            spans.append(("c", i, j))
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            spans.append(("c", i, j))
        elif text.startswith('R"', i) and (
                i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if not m:
                i += 1
                continue
            end = text.find(")" + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            spans.append(("s", i, j))
        elif c in "\"'" and not (c == "'" and i > 0 and text[i - 1].isalnum()):
            # (A ' after a digit is a separator: 1'000'000.)
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            spans.append(("s", i, j))
        else:
            i += 1
            continue
        i = j
    return spans


def _blank(s):
    return re.sub(r"[^\n]", " ", s)


def strip_cxx(text):
    """Comments, string and char literals blanked (newlines and columns
    kept), so that scanners see only code."""
    out, last = [], 0
    for _, start, end in lex_cxx(text):
        out += [text[last:start], _blank(text[start:end])]
        last = end
    return "".join(out + [text[last:]])


def cxx_comments(text):
    """Everything but the comments blanked (newlines and columns kept)."""
    out, last = [], 0
    for kind, start, end in lex_cxx(text):
        if kind == "c":
            out += [_blank(text[last:start]), text[start:end]]
            last = end
    return "".join(out + [_blank(text[last:])])


INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"]+)[>"]', re.M)


def includes(text):
    """(line, kind, path) for every #include; kind is '<' or '"'."""
    for m in INCLUDE_RE.finditer(text):
        yield text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)


# --- layers -----------------------------------------------------------------

def load_layers():
    with open(os.path.join(ROOT, "tests", "lint", "layers.json"),
              encoding="utf-8") as f:
        return json.load(f)


def layer_of(path, layers):
    for layer in layers["layers"]:
        if any(fnmatch.fnmatchcase(path, p) for p in layer["files"]):
            return layer["name"]
    return None


def resolve_include(src, inc, files_set):
    """The repo file an include names, or a generated proto header's .proto,
    or None for a system or third-party header."""
    if inc in files_set:
        return inc
    m = re.match(r"(.*)\.(pb|grpc\.pb)\.h$", inc)
    if m and "proto/" + m.group(1) + ".proto" in files_set:
        return "proto/" + m.group(1) + ".proto"
    rel = os.path.normpath(os.path.join(os.path.dirname(src), inc))
    return rel if rel in files_set else None


def check_layer_map(layers, f):
    """The map itself: known layers only, and no cycle (nothing upward)."""
    names = [l["name"] for l in layers["layers"]]
    deps = {l["name"]: l.get("may_include", []) for l in layers["layers"]}
    for name, ds in deps.items():
        for d in ds:
            if d != "*" and d not in names:
                f.add("tests/lint/layers.json", 1, "layer-map",
                      f"layer {name} may include unknown layer {d}")
    state = {}

    def visit(n, path):
        state[n] = 1
        for d in deps.get(n, []):
            if d == "*" or d == n:
                continue
            if state.get(d) == 1:
                f.add("tests/lint/layers.json", 1, "layer-map",
                      "cycle: " + " -> ".join(path + [d]))
            elif d in deps and not state.get(d):
                visit(d, path + [d])
        state[n] = 2

    for n in names:
        if not state.get(n):
            visit(n, [n])


def cmd_layers():
    layers = load_layers()
    f = Findings("layers")
    check_layer_map(layers, f)
    files = repo_files()
    files_set = set(files)
    allowed = {l["name"]: set(l.get("may_include", [])) | {l["name"]}
               for l in layers["layers"]}
    checked = 0
    for src in cxx_files(files):
        src_layer = layer_of(src, layers)
        if src_layer is None:
            f.add(src, 1, "layer-unmapped",
                  "file is in no layer of tests/lint/layers.json: add it")
            continue
        if "*" in allowed[src_layer]:
            continue
        for line, _, inc in includes(read(src)):
            target = resolve_include(src, inc, files_set)
            if target is None:
                continue
            checked += 1
            t_layer = layer_of(target, layers)
            if t_layer not in allowed[src_layer]:
                f.add(src, line, "layering",
                      f'layer {src_layer} includes "{inc}" of layer '
                      f"{t_layer}; {src_layer} may include only "
                      f"{', '.join(sorted(allowed[src_layer]))} "
                      "(tests/lint/layers.json)")
    checked_ns = check_namespaces(layers, files, f)
    return f.finish(f"{checked} includes and {checked_ns} namespaces follow "
                    "tests/lint/layers.json")


NAMESPACE_OPEN = re.compile(r"^namespace ([A-Za-z_][\w:]*) \{", re.M)
# Namespaces that belong to no layer: the generated schemas (declared to
# alias them, common/proto_names.h) and third-party ones a file extends.
FOREIGN_NAMESPACES = ("ledger::v1", "pbft::v1", "leveldb")


def check_namespaces(layers, files, f):
    """Each file's top-level named namespaces are its layer's or below it."""
    ns_of = {l["name"]: l.get("namespace") for l in layers["layers"]}
    checked = 0
    for src in cxx_files(files):
        want = ns_of.get(layer_of(src, layers))
        if not want:
            continue
        text = strip_cxx(read(src))
        depth = 0
        pos = 0
        for m in NAMESPACE_OPEN.finditer(text):
            depth += text.count("{", pos, m.start()) - text.count("}", pos, m.start())
            pos = m.start()
            if depth != 0:
                continue  # nested inside a namespace already checked
            name = m.group(1)
            checked += 1
            if name in FOREIGN_NAMESPACES:
                continue
            if name == want or name.startswith(want + "::"):
                continue
            line = text.count("\n", 0, m.start()) + 1
            f.add(src, line, "namespace",
                  f"namespace {name} in layer {layer_of(src, layers)}, "
                  f"whose code is in namespace {want} "
                  "(tests/lint/layers.json)")
    return checked


# --- core purity ------------------------------------------------------------

CORE_GLOBS = ("replica/core/*",)
# Headers that bring threads, locks, files, streams, clocks or global
# randomness; the core gets time as ticks and randomness as a seeded
# generator from its caller. (<cstdio> and <cstdlib> are allowed for
# snprintf and abs; their I/O and randomness are in CORE_FORBIDDEN_CALLS.)
CORE_FORBIDDEN_HEADERS = {
    "thread", "mutex", "shared_mutex", "condition_variable", "future",
    "atomic", "semaphore", "latch", "barrier", "stop_token", "fstream",
    "iostream", "istream", "filesystem", "chrono",
    "ctime", "time.h", "sys/time.h", "random", "unistd.h", "fcntl.h", "pthread.h", "csignal", "signal.h",
}
CORE_FORBIDDEN_INCLUDE_PREFIXES = (
    "sys/", "grpc", "grpcpp/", "leveldb/", "spdlog/", "prometheus/",
    "openssl/", "sodium", "absl/synchronization/", "absl/time/",
    "absl/random/", "google/protobuf/util/",
    # Repo headers that do I/O, read clocks or load files.
    "common/logging.h", "common/clock.h", "common/config.h",
    "common/keyfile.h", "common/flags.h",
)
CORE_FORBIDDEN_CALLS = re.compile(
    r"\b(std::rand|rand|srand|random_device|std::time|time|clock|"
    r"gettimeofday|clock_gettime|system_clock|steady_clock|exit|abort|"
    r"high_resolution_clock|absl::Now|absl::GetCurrentTimeNanos|"
    r"this_thread|std::thread|std::jthread|std::async|fopen|getenv|"
    r"printf|fprintf|puts|std::cout|std::cerr|std::clog|absl::Mutex|"
    r"absl::SleepFor|sleep|usleep|nanosleep|std::mt19937|"
    r"std::default_random_engine)\b\s*(\(|::|<|;|\{)")


def core_forbidden_include(inc):
    return inc in CORE_FORBIDDEN_HEADERS or inc.startswith(
        CORE_FORBIDDEN_INCLUDE_PREFIXES)


def cmd_core_purity():
    f = Findings("core-purity")
    files = repo_files()
    files_set = set(files)
    core = [p for p in cxx_files(files)
            if any(fnmatch.fnmatchcase(p, g) for g in CORE_GLOBS)]
    inc_cache = {}

    def incs(path):
        if path not in inc_cache:
            inc_cache[path] = list(includes(read(path)))
        return inc_cache[path]

    for src in core:
        # Direct includes, then what the repo headers it includes pull in.
        seen, stack = set(), [(src, [])]
        while stack:
            path, chain = stack.pop()
            for line, _, inc in incs(path):
                via = chain + [f"{path}:{line}"]
                if core_forbidden_include(inc):
                    where = via[0].rsplit(":", 1)
                    f.add(src, where[1], "core-purity",
                          f'"{inc}" reached via {" -> ".join(via)}: no I/O, '
                          "threads, clocks or global randomness in the core")
                    continue
                t = resolve_include(path, inc, files_set)
                if t and t.endswith(".h") and t not in seen:
                    seen.add(t)
                    stack.append((t, via))
        code = strip_cxx(read(src))
        for m in CORE_FORBIDDEN_CALLS.finditer(code):
            # Member access (x.time(), x->clock()) is the core's own field.
            before = code[max(0, m.start() - 2):m.start()]
            if before.endswith(".") or before.endswith("->"):
                continue
            line = code.count("\n", 0, m.start()) + 1
            f.add(src, line, "core-purity",
                  f"{m.group(1)}: no I/O, threads, clocks or global "
                  "randomness in the core (time is ticks, randomness a "
                  "seeded generator passed in)")
    return f.finish(f"{len(core)} core files use no I/O, threads, clocks or "
                    "global randomness")


# --- clang-format -----------------------------------------------------------

def cmd_format():
    f = Findings("format")
    exe = shutil.which("clang-format-14")
    if exe is None:
        f.add("deploy/install-deps.sh", 1, "format",
              "clang-format-14 is not installed (deploy/install-deps.sh)")
        return f.finish("")
    files = cxx_files(repo_files())
    bad = set()
    for i in range(0, len(files), 50):
        r = subprocess.run([exe, "--dry-run", "-Werror", "--style=file"]
                           + files[i:i + 50], cwd=ROOT,
                           capture_output=True, text=True)
        for m in re.finditer(r"^(\S+?):(\d+):\d+: (?:error|warning)",
                             r.stderr, re.M):
            path = os.path.relpath(os.path.join(ROOT, m.group(1)), ROOT)
            if path not in bad:
                bad.add(path)
                f.add(path, m.group(2), "format",
                      f"not clang-format-14 clean: clang-format-14 -i {path}")
        if r.returncode != 0 and not r.stderr.strip():
            f.add(files[i], 1, "format", f"clang-format-14 failed: {r.stdout}")
    return f.finish(f"{len(files)} C++ files are clang-format clean")


# --- function and file sizes ------------------------------------------------

# How a function definition's header ends: the parameter list, qualifiers,
# a trailing return type, or a constructor's initializer list.
FUNCTION_END = re.compile(
    r"\)\s*(?:(?:const|noexcept|override|final|mutable|&&|&)\s*)*"
    r"(?:->\s*[\w:<>,*& ]+)?$|\)\s*(?:noexcept\s*)?:.*[)}]$")
# A '{' that opens a braced initializer: after a name or '=' or ',' (but
# not after a function's qualifiers), or within a constructor's
# initializer list after a member's name.
BRACE_INIT = re.compile(
    r"(?:^|[^\w])(?!(?:const|noexcept|override|final|mutable|try)$)"
    r"[A-Za-z_]\w*$|[=,\[]$|>$(?<!->)|"
    r"\)\s*(?:noexcept\s*)?:.*[\w>]$")
CONTROL = re.compile(r"^(if|for|while|switch|catch|do|else|return|try)\b")
CONTAINER = re.compile(
    r"^(?:template\s*<.*>\s*)?(namespace|class|struct|union|extern\s*\"C\")\b"
    r"|^(?:inline\s+)?namespace\b", re.S)


def _paren_name(header):
    """The name before the first top-level '(' of a function header, or None
    if the header is not a function definition."""
    depth_angle = 0
    for i, c in enumerate(header):
        if c == "<":
            depth_angle += 1
        elif c == ">" and depth_angle:
            depth_angle -= 1
        elif c == "=" and depth_angle == 0 and not re.search(
                r"operator\s*[=!<>+\-*/%^&|]*$", header[:i]):
            return None  # an initializer or a lambda assigned to a name
        elif c == "(":
            m = re.search(r"((?:[A-Za-z_]\w*(?:<[^<>]*>)?::)*~?"
                          r"(?:operator\s*[^\s\w(]+|[A-Za-z_]\w*))\s*$",
                          header[:i])
            if not m:
                return None
            name = m.group(1)
            if re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):  # TEST(Suite, Name)
                close = header.find(")", i)
                name = re.sub(r"\s+", " ", header[m.start():close + 1])
            return name
    return None


def functions(path):
    """(name, first_line, last_line) of every function defined at namespace
    or class scope; lines run from the opening to the closing brace."""
    code = strip_cxx(read(path))
    code = re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", lambda m: re.sub(
        r"[^\n]", " ", m.group(0)), code, flags=re.M)
    out = []
    n = len(code)

    def match_brace(i):
        depth = 0
        while i < n:
            if code[i] == "{":
                depth += 1
            elif code[i] == "}":
                depth -= 1
                if depth == 0:
                    return i
            i += 1
        return n - 1

    def scan(i, end):
        header_start = i
        while i < end:
            c = code[i]
            if c in ";}":
                header_start = i + 1
            elif c == "{":
                flat = re.sub(r"\s+", " ", code[header_start:i]).strip()
                brace, close = i, match_brace(i)
                i = close + 1
                if CONTAINER.match(flat) and "(" not in flat:
                    scan(brace + 1, close)
                    header_start = i
                    continue
                if flat.count("(") > flat.count(")") or BRACE_INIT.search(flat):
                    continue  # a braced initializer: part of the statement
                if FUNCTION_END.search(flat) and not CONTROL.match(flat):
                    name = _paren_name(flat)
                    if name:
                        out.append((name, code.count("\n", 0, brace) + 1,
                                    code.count("\n", 0, close) + 1))
                header_start = i
                continue
            i += 1

    scan(0, n)
    return out


def measure(files):
    funcs, sizes = [], []
    for p in cxx_files(files):
        sizes.append((read(p).count("\n"), p))
        for name, first, last in functions(p):
            funcs.append((last - first + 1, p, first, name))
    funcs.sort(key=lambda x: (-x[0], x[1], x[2]))
    sizes.sort(key=lambda x: (-x[0], x[1]))
    return funcs, sizes


def load_ratchet():
    with open(os.path.join(ROOT, "tests", "lint", "size_ratchet.json"),
              encoding="utf-8") as f:
        return json.load(f)


def cmd_function_size():
    ratchet = load_ratchet()
    f = Findings("function-size")
    funcs, sizes = measure(repo_files())
    max_fn, max_file = ratchet["function_lines_max"], ratchet["file_lines_max"]
    for lines, p, first, name in funcs:
        if lines > max_fn:
            f.add(p, first, "function-size",
                  f"{name} is {lines} lines; the ratchet allows {max_fn} "
                  "(tests/lint/size_ratchet.json): split it")
    for lines, p in sizes:
        if lines > max_file:
            f.add(p, 1, "file-size",
                  f"{lines} lines; the ratchet allows {max_file} "
                  "(tests/lint/size_ratchet.json): split the file")
    if f.items:
        return f.finish("")
    longest, biggest = funcs[0], sizes[0]
    print(f"longest function: {longest[3]} ({longest[1]}:{longest[2]}), "
          f"{longest[0]} lines (ratchet {max_fn}); largest file: "
          f"{biggest[1]}, {biggest[0]} lines (ratchet {max_file})")
    if longest[0] < max_fn or biggest[0] < max_file:
        print("hint: the maximum fell; lower the ratchet in "
              f"tests/lint/size_ratchet.json to function_lines_max "
              f"{longest[0]}, file_lines_max {biggest[0]}")
    return f.finish(f"{len(funcs)} functions and {len(sizes)} files within "
                    "the ratchet")


def cmd_sizes(top=40):
    funcs, sizes = measure(repo_files())
    over = sum(1 for x in funcs if x[0] > 60)
    print(f"{len(funcs)} functions, {over} over 60 lines; longest:")
    for lines, p, first, name in funcs[:top]:
        print(f"  {lines:5d}  {name}  ({p}:{first})")
    print("largest files:")
    for lines, p in sizes[:10]:
        print(f"  {lines:5d}  {p}")
    return 0


# --- references to files ----------------------------------------------------

REF_EXT = r"(?:md|cc|h|proto|sh|py|cmake|txt|json|yaml|patch|Dockerfile)"
# (Not after '<': <unistd.h> is a system header, docs/<name>.md a pattern.)
REF_RE = re.compile(r"(?<![\w./\-@:<])([\w][\w.\-]*(?:/[\w.\-]+)*\." + REF_EXT +
                    r")(?![\w/])")
# Directories of this repository: a path under one of them must exist.
REPO_DIRS = ("docs/", "tests/", "tools/", "replica/", "client/", "common/",
             "deploy/", "proto/", "cmake/", ".ci/")
# Files that are not the repository's: build output, generated code,
# third-party headers, files an operator writes (cluster.json, keys).
EXTERNAL_PREFIXES = ("build/", "build-", "absl/", "leveldb/", "grpc",
                     "google/", "spdlog/", "openssl/", "prometheus/",
                     "gtest/", "gmock/", "sodium", "sys/", "helpers/",
                     "benchmark/", "/")
# Third-party files that comments name by their bare name.
EXTERNAL_FILES = ("memenv.h", "sodium.h", "grpcpp.h", "json_util.h")
TEXT_EXT = (".md", ".cc", ".h", ".proto", ".sh", ".py", ".txt", ".cmake",
            ".yaml", ".in", "Dockerfile", ".json")


def comment_text(path, text):
    """The parts of a file that are prose: all of a .md, comments of code."""
    if path.endswith(".md"):
        return text
    if path.endswith((".cc", ".h", ".proto")):
        return cxx_comments(text)
    # Scripts, CMake, YAML, Dockerfiles: '#' comments (whole lines or after
    # code; a '#' inside quotes is taken as a comment too, which only
    # makes the check stricter).
    return re.sub(r"^[^#\n]*", lambda m: " " * len(m.group(0)), text,
                  flags=re.M)


def ref_exists(ref, src, files_set, basenames):
    ref = ref.rstrip(".")
    if ref.startswith("./"):
        ref = ref[2:]
    parts = ref.split("/")
    if ".." in ref or any(re.fullmatch(r"[A-Z]{1,3}", p.split("-")[0])
                          for p in parts if len(parts) > 1):
        return True  # a range (h+1..h+L) or a placeholder (DIR/x, NN-name)
    rel = os.path.normpath(os.path.join(os.path.dirname(src), ref))
    m = re.match(r"(.*?)\.(?:pb|grpc\.pb)\.(?:h|cc)$", ref)
    if ref in files_set or rel in files_set or (
            m and "proto/" + m.group(1) + ".proto" in files_set):
        return True
    # A path shortened by its leading directories (replica/statefulset.yaml
    # in deploy/k8s) or prefixed (a/replica/core/core.cc in a diff).
    if any(f.endswith("/" + ref) for f in files_set) or any(
            "/".join(parts[k:]) in files_set for k in range(1, len(parts))):
        return True
    if ref.startswith(REPO_DIRS):
        return False
    if ref.startswith(EXTERNAL_PREFIXES):
        return True
    # Only the repository's kinds of file are checked outside its
    # directories: cluster.json or x/kustomization.yaml are an operator's.
    if not re.search(r"\.(md|cc|h|proto|sh|py|cmake)$", ref):
        return True
    return ref in basenames or ref in EXTERNAL_FILES


def cmd_file_refs():
    f = Findings("file-refs")
    files = repo_files()
    files_set = set(files)
    basenames = {os.path.basename(p) for p in files}
    scanned = 0
    for src in files:
        if not src.endswith(TEXT_EXT) and "CMakeLists" not in src:
            continue
        if src.startswith("tests/lint/"):
            continue  # this checker's own examples
        scanned += 1
        text = comment_text(src, read(src))
        for m in REF_RE.finditer(text):
            ref = m.group(1)
            if re.search(r"https?://\S*$", text[max(0, m.start() - 300):
                                                 m.start()]):
                continue  # part of a URL
            if not ref_exists(ref, src, files_set, basenames):
                line = text.count("\n", 0, m.start()) + 1
                f.add(src, line, "file-ref",
                      f"names {ref}, which is not in the repository")
    return f.finish(f"{scanned} files name only files that exist")


COMMANDS = {
    "layers": cmd_layers,
    "core-purity": cmd_core_purity,
    "format": cmd_format,
    "function-size": cmd_function_size,
    "file-refs": cmd_file_refs,
    "sizes": cmd_sizes,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        print("usage: lint.py " + "|".join(COMMANDS), file=sys.stderr)
        sys.exit(2)
    sys.exit(COMMANDS[sys.argv[1]]())
