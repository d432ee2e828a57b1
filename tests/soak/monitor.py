#!/usr/bin/env python3
"""Status sampler and final figures of the crash soak (crash_soak.sh).

  monitor.py sample CTL... : every ~1 s until killed, runs `CTL status --json`
      and prints one line per sample: {"t": unix_s, "replicas": [...]}.
  monitor.py report SAMPLES EVENTS : the figures from the samples and the
      fault events (lines "T KIND REPLICA [EXTRA]"), as one JSON object.

A replica counts as out of the cluster's view in a sample when it answered
and either says so (in_cluster_view false) or its view is below the highest
view any replica reported; a replica that is down or stopped does not answer
and is counted under its fault, not here.
"""
import json
import subprocess
import sys
import time


def sample(ctl):
    while True:
        t = time.time()
        try:
            out = subprocess.run(ctl + ["status", "--json"], capture_output=True,
                                 text=True, timeout=20).stdout
            replicas = json.loads(out)
        except (subprocess.TimeoutExpired, ValueError):
            replicas = []
        print(json.dumps({"t": t, "replicas": replicas}), flush=True)
        time.sleep(max(0.0, 1.0 - (time.time() - t)))


def answered(s):
    return [r for r in s["replicas"] if "error" not in r]


def out_of_view(samples):
    """Per replica: total seconds out of view, and the longest stretch."""
    total, longest, since = {}, {}, {}
    prev_t = None
    for s in samples:
        rs = answered(s)
        top = max([int(r.get("view", 0)) for r in rs], default=0)
        for r in rs:
            i = int(r.get("replica_id", 0))
            out = (not r.get("in_cluster_view", False)) or int(r.get("view", 0)) < top
            if out and prev_t is not None:
                total[i] = total.get(i, 0.0) + s["t"] - prev_t
                since.setdefault(i, prev_t)
                longest[i] = max(longest.get(i, 0.0), s["t"] - since[i])
            elif not out:
                since.pop(i, None)
        prev_t = s["t"]
    return total, longest


def report(samples_path, events_path):
    samples = [json.loads(l) for l in open(samples_path) if l.strip()]
    events = [l.split() for l in open(events_path) if l.strip()]
    total, longest = out_of_view(samples)
    rejoin = [float(e[3]) for e in events if e[1] == "rejoined"]
    vc = {"primary": [], "backup": [], "stall": []}
    for e in events:
        if e[1] == "view_changes":
            vc[e[3]].append(int(e[4]))
    per = lambda k: round(sum(vc[k]) / len(vc[k]), 2) if vc[k] else None
    return {
        "out_of_view_s_max": round(max(total.values(), default=0.0), 1),
        "out_of_view_longest_s": round(max(longest.values(), default=0.0), 1),
        "out_of_view_s_by_replica": {str(k): round(v, 1) for k, v in sorted(total.items())},
        "rejoin_s_max": round(max(rejoin, default=0.0), 1),
        "rejoin_s_mean": round(sum(rejoin) / len(rejoin), 2) if rejoin else None,
        "view_changes_per_primary_fault": per("primary"),
        "view_changes_per_backup_fault": per("backup"),
        "view_changes_per_stall": per("stall"),
        "status_samples": len(samples),
    }


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        sample(sys.argv[2:])
    else:
        print(json.dumps(report(sys.argv[2], sys.argv[3])))
