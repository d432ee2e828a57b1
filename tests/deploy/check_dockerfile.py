#!/usr/bin/env python3
"""House rules for deploy/docker/Dockerfile, checked without a container
engine (ctest container_pods builds and runs the image itself). Prints "[rule] message" per
problem; exit 1 if any.

  check_dockerfile.py Dockerfile [.dockerignore]
"""
import json
import posixpath
import re
import sys

# What the runtime image carries: what an operator runs, nothing else.
RUNTIME_PROGRAMS = {"ledgerd", "ledgerctl"}

DEV_PACKAGES = re.compile(r"(\s|^)(build-essential|cmake|ninja-build|g\+\+|[\w.+-]+-dev)(\s|$)")


def instructions(text):
    """(line number, INSTRUCTION, arguments), continuations joined."""
    out, buf, start = [], "", 0
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if not buf:
            start = n
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        word, _, rest = buf.partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    return out


def main():
    path = sys.argv[1]
    ignore = sys.argv[2] if len(sys.argv) > 2 else None
    problems = []
    fail = lambda rule, msg: problems.append(f"[{rule}] {path}: {msg}")
    stages = []  # [{"name", "from", "ins": [...]}]
    for n, ins, args in instructions(open(path).read()):
        if ins == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            if not m:
                fail("base", f"line {n}: cannot parse FROM {args}")
                continue
            stages.append({"from": m.group(1), "name": m.group(2), "ins": []})
        elif not stages:
            if ins != "ARG":
                fail("base", f"line {n}: {ins} before the first FROM")
        else:
            stages[-1]["ins"].append((n, ins, args))

    if len(stages) < 2:
        fail("stages", f"{len(stages)} stage(s): want a build stage and a runtime stage")
    names = {s["name"] for s in stages if s["name"]}
    for s in stages:
        if s["from"] in names:
            continue
        if not re.fullmatch(r"debian:(bookworm|12)([.\-][\w.\-]*)?(@sha256:[0-9a-f]{64})?", s["from"]):
            fail("base", f"FROM {s['from']}: every stage must be Debian 12 (debian:bookworm*)")
    if not stages:
        return report(problems)

    build, final = stages[:-1], stages[-1]
    build_runs = " ".join(a for s in build for _, i, a in s["ins"] if i == "RUN")
    if "deploy/install-deps.sh" not in build_runs:
        fail("deps", "the build stage does not run deploy/install-deps.sh (CI installs "
             "with it; the image must build the same way)")
    if not re.search(r"cmake\s+-S\s+\.\s+-B\s+build\b", build_runs) or "cmake --build build" not in build_runs:
        fail("build", "the build stage does not run the CMake build (cmake -S . -B build; "
             "cmake --build build)")

    final_ins = final["ins"]
    runs = [a for _, i, a in final_ins if i == "RUN"]
    for a in runs:
        if "install-deps.sh" in a or DEV_PACKAGES.search(a):
            fail("runtime", f"the runtime stage installs build tools: RUN {a[:80]}")
        if "apt-get install" in a and "--no-install-recommends" not in a:
            fail("runtime", "apt-get install without --no-install-recommends")
        if "apt-get" in a and "rm -rf /var/lib/apt/lists" not in a:
            fail("runtime", "apt lists are not removed in the same RUN")
    if not any(i == "COPY" and "--from=" in a for _, i, a in final_ins):
        fail("runtime", "the runtime stage copies nothing from the build stage")
    for _, i, a in final_ins:
        if i in ("COPY", "ADD") and "--from=" not in a:
            fail("runtime", f"{i} {a}: the runtime stage gets files from the build stage only")

    check_programs(final_ins, fail)

    users = [a for _, i, a in final_ins if i == "USER"]
    if not users:
        fail("user", "no USER in the runtime stage: the image would run as root")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit():
            fail("user", f"USER {users[-1]}: use a numeric uid so the kubelet can verify "
                 "runAsNonRoot")
        elif int(uid) == 0:
            fail("user", f"USER {users[-1]} is root")
    entry = [a for _, i, a in final_ins if i == "ENTRYPOINT"]
    if not entry:
        fail("entrypoint", "no ENTRYPOINT")
    else:
        try:
            argv = json.loads(entry[-1])
        except ValueError:
            argv = None
        if not isinstance(argv, list) or not argv:
            fail("entrypoint", f"ENTRYPOINT {entry[-1]}: use the exec form so ledgerd is "
                 "PID 1 and gets SIGTERM")
        elif not argv[0].endswith("/ledgerd"):
            fail("entrypoint", f"ENTRYPOINT runs {argv[0]}, not ledgerd")

    if ignore:
        patterns = {l.strip() for l in open(ignore) if l.strip() and not l.startswith("#")}
        for want in (".git", "build", "deploy/k8s/overlays/*/generated"):
            if want not in patterns:
                fail("dockerignore", f"{ignore} does not exclude {want}")
    return report(problems, len(stages))


def check_programs(final_ins, fail):
    """The runtime stage copies, by name, exactly RUNTIME_PROGRAMS into
    /usr/local/bin: a copied directory would bring whatever the build made."""
    copied = set()
    for _, i, a in final_ins:
        if i != "COPY" or "--from=" not in a:
            continue
        words = [w for w in a.split() if not w.startswith("--")]
        srcs, dest = words[:-1], words[-1]
        if not dest.rstrip("/").endswith("/bin"):
            continue
        for src in srcs:
            if src.endswith("/") or "*" in src:
                fail("programs", f"COPY {a}: name each program, a directory or glob copies "
                     "whatever the build stage made")
            copied.add(posixpath.basename(src.rstrip("/")))
    extra = sorted(copied - RUNTIME_PROGRAMS - {"", "bin"})
    if extra:
        fail("programs", f"the runtime image carries {', '.join(extra)}: only "
             f"{', '.join(sorted(RUNTIME_PROGRAMS))} belong there")
    missing = sorted(RUNTIME_PROGRAMS - copied)
    if missing and not any(c in ("", "bin") for c in copied):
        fail("programs", f"the runtime image lacks {', '.join(missing)}")


def report(problems, stages=0):
    for p in problems:
        print(p)
    print(f"check_dockerfile: {stages} stages, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
