#!/usr/bin/env python3
"""Where one replica's CPU went, in the model's terms, from `perf script` text.

  perf script -i perf.data | perf_summary.py

Each sample is charged by its innermost frame's library; kernel samples by
the system call or path on their stack (thread hand-offs through futexes and
the scheduler, the network, synced writes, epoll). Prints one JSON line:
{"samples": N, "shares": {category: fraction}}.
"""
import json
import sys

# Innermost user-space library -> category (first match wins).
USER = [
    ("libsodium", "crypto_ed25519"),
    ("libcrypto", "sha256_openssl"),
    ("libgrpc", "grpc"),
    ("libgpr", "grpc"),
    ("libleveldb", "leveldb"),
    ("libsnappy", "leveldb"),
    ("libprotobuf", "protobuf"),
    ("libabsl", "abseil"),
    ("libc.so", "libc_malloc_memcpy"),
    ("libstdc++", "libc_malloc_memcpy"),
    ("ledgerd", "ledgerd_code"),
]
# Kernel stacks: a marker anywhere on the stack -> category.
KERNEL = [
    ("futex", "kernel_thread_handoff"),
    ("fdatasync", "kernel_disk_sync"),
    ("fsync", "kernel_disk_sync"),
    ("jbd2", "kernel_disk_sync"),
    ("ext4", "kernel_disk_sync"),
    ("tcp_", "kernel_network"),
    ("sock_", "kernel_network"),
    ("sendmsg", "kernel_network"),
    ("recvmsg", "kernel_network"),
    ("epoll", "kernel_epoll"),
    ("schedule", "kernel_scheduler_other"),
    ("finish_task_switch", "kernel_scheduler_other"),
]


def classify(frames):
    """frames: (symbol, dso) innermost first."""
    if not frames:
        return "unknown"
    sym, dso = frames[0]
    if "kernel" in dso:
        stack = " ".join(s for s, _ in frames)
        for marker, cat in KERNEL:
            if marker in stack:
                return cat
        return "kernel_other"
    for marker, cat in USER:
        if marker in dso:
            return cat
    return "other"


def samples(lines):
    """Yields each sample's frames from `perf script` output."""
    frames, in_sample = [], False
    for line in lines:
        if not line.strip():
            if in_sample:
                yield frames
            frames, in_sample = [], False
        elif line[0] in " \t":
            parts = line.split()
            dso = parts[-1].strip("()") if parts[-1].startswith("(") else ""
            sym = parts[1] if len(parts) > 2 else ""
            frames.append((sym, dso))
        else:
            in_sample = True
    if in_sample:
        yield frames


def summarize(lines):
    counts = {}
    n = 0
    for frames in samples(lines):
        cat = classify(frames)
        counts[cat] = counts.get(cat, 0) + 1
        n += 1
    shares = {k: round(v / n, 3) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
    return {"samples": n, "shares": shares}


if __name__ == "__main__":
    print(json.dumps(summarize(sys.stdin), separators=(",", ":")))
