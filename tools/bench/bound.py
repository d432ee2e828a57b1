#!/usr/bin/env python3
"""The bound a benchmark run is compared with (docs/benchmarks.md, "The bound").

From what this machine charges per operation (machine-bench, exec-bench) and
what one request costs in operations (the message and signature counts of
replica/core and replica/net, at the consensus batch size the replicas
measured), computes the CPU bound in requests/s and transfers/s, and the
latency floor of one request. deploy/local/bench.sh drives it:

  bound.py scrape CONFIG                 replicas' counters, as JSON
  bound.py floor --machine M --exec E    the latency floor line
  bound.py batch --before S0 --after S1  requests per block between scrapes
  bound.py cell --machine M --exec E --result R --before S0 --after S1
                --cpu-s X --wall-s W --nproc N --load L --floor-ms F
                [--probes P0 P1] [--replicas 4] [--checkpoint-interval K]
  bound.py targets CELLS                 the matrix's targets, met or not,
                                         from a file of cell lines

Every function below is pure except scrape and main; tests/bench/bound_test.py
checks them on fixed inputs.
"""
import argparse
import json
import re
import sys
import urllib.request

# --- Interpolation over measured sizes ---------------------------------------


def interp(points, x):
    """Piecewise-linear value at x over sorted (x, y) points; beyond the ends
    the nearest segment's slope, never below the smallest measured value."""
    pts = sorted(points)
    if len(pts) == 1:
        return pts[0][1]
    for i in range(1, len(pts)):
        if x <= pts[i][0] or i == len(pts) - 1:
            (x0, y0), (x1, y1) = pts[i - 1], pts[i]
            y = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            return max(y, min(p[1] for p in pts))
    raise AssertionError("unreachable")


def sign_us(m, nbytes):
    return interp([(e["bytes"], e["sign_us"]) for e in m["ed25519"]], nbytes)


def verify_us(m, nbytes):
    return interp([(e["bytes"], e["verify_us"]) for e in m["ed25519"]], nbytes)


def stream_us(m, nbytes):
    """CPU of one stream message, sender plus receiver."""
    return interp(
        [(e["bytes"], e["send_us"] + e["recv_us"]) for e in m["grpc_stream"]], nbytes
    )


def stream_side_us(m, nbytes, side):
    """CPU of one stream message on one side: side is "send_us" or "recv_us"."""
    return interp([(e["bytes"], e[side]) for e in m["grpc_stream"]], nbytes)


def sizes_for(m, transfers):
    """Envelope bytes of a request and of a reply with `transfers` transfers."""
    s = m["sizes"]
    req = interp([(e["transfers"], e["request_bytes"]) for e in s], transfers)
    rep = interp([(e["transfers"], e["reply_bytes"]) for e in s], transfers)
    return req, rep


# --- Counts per request --------------------------------------------------------


def counts(n, requests_per_block, checkpoint_interval):
    """Operations per client request, whole cluster plus the client, as the
    code does them (docs/benchmarks.md lists where each comes from)."""
    f = (n - 1) // 3
    r = float(requests_per_block)
    k = float(checkpoint_interval)
    per_block_votes_sent = (n - 1) ** 2 + n * (n - 1)  # PREPARE, COMMIT
    per_block_checkpoints = n * (n - 1) / k
    return {
        # Signatures.
        "sign_vote": (2 * n + n / k) / r,  # PRE-PREPARE+PREPAREs, COMMITs, CHECKPOINTs
        "sign_request": 1.0,  # the client
        # Only a replica where a call waits signs its reply: the f+1 the
        # client sent the request to (the others reply to nobody).
        "sign_reply": float(f + 1),
        # Verifications.
        "verify_vote": ((n - 1) + per_block_votes_sent + per_block_checkpoints) / r,
        # Once per replica (cached after): on arrival at the f+1 the client
        # sent it to, inside the PRE-PREPARE at the others.
        "verify_request": float(n),
        "verify_reply": float(f + 1),  # the client: the f+1 that complete it
        # Stream messages (one send + one receive each).
        "msg_pre_prepare": (n - 1) / r,
        "msg_vote": (per_block_votes_sent + per_block_checkpoints) / r,
        # The client sends to f+1 replicas, the primary and f backups (the
        # SDK's first replicas; the others get it in the PRE-PREPARE).
        "msg_request": float(f + 1),
        # A backup forwards a request only if no PRE-PREPARE carried it
        # within forward_delay_ticks: none in the normal case, where the
        # client sent it to the primary too.
        "msg_forward": 0.0,
        # Only a replica the client sent the request to replies.
        "msg_reply": float(f + 1),
        # SHA-256 passes over a request's bytes: the verified-envelope cache
        # key on arrival (f+1), the batch digest (n), the cache key of the
        # request inside the PRE-PREPARE (n-1).
        "sha_request": float(f + 1 + 2 * n - 1),
        # Model of the core's received-message counters, per block.
        "received_per_block": {
            "PRE_PREPARE": float(n - 1),
            "PREPARE": float((n - 1) ** 2),
            "COMMIT": float(n * (n - 1)),
            "CHECKPOINT": per_block_checkpoints,
            "REQUEST": float(f + 1) * r,
        },
    }


def cpu_per_request(m, exec_json, n, requests_per_block, transfers, k):
    """CPU µs per request by kind, and the total."""
    c = counts(n, requests_per_block, k)
    req, rep = sizes_for(m, transfers)
    vote = m["vote_bytes"]
    pp = vote + requests_per_block * req
    sign = (
        c["sign_vote"] * sign_us(m, vote)
        + c["sign_request"] * sign_us(m, req)
        + c["sign_reply"] * sign_us(m, rep)
    )
    verify = (
        c["verify_vote"] * verify_us(m, vote)
        + c["verify_request"] * verify_us(m, req)
        + c["verify_reply"] * verify_us(m, rep)
    )
    grpc = (
        c["msg_pre_prepare"] * stream_us(m, pp)
        + c["msg_vote"] * stream_us(m, vote)
        + (c["msg_request"] + c["msg_forward"]) * stream_us(m, req)
        + c["msg_reply"] * stream_us(m, rep)
    )
    received = c["msg_pre_prepare"] + c["msg_vote"]
    sha = m["sha256_us_per_kb"] * (c["sha_request"] * req + received * vote) / 1024
    execute = n * transfers * 1e6 / exec_json["transfers_per_process_cpu_s"]
    parts = {
        "sign": sign,
        "verify": verify,
        "sha256": sha,
        "grpc": grpc,
        "execute": execute,
    }
    parts["total"] = sum(parts.values())
    # With unary calls: each request and its reply ride one call to each of
    # the f+1 replicas.
    unary = m["grpc_unary"]["client_us"] + m["grpc_unary"]["server_us"]
    parts["total_unary_client_calls"] = parts["total"] + c["msg_request"] * (
        unary - stream_us(m, req) - stream_us(m, rep)
    )
    return {k_: round(v, 2) for k_, v in parts.items()}


def primary_split(m, exec_json, n, requests_per_block, transfers, k):
    """The model's CPU µs per request at the primary alone, by kind, and each
    kind's share: what a profile of the primary is checked against."""
    r = float(requests_per_block)
    req, rep = sizes_for(m, transfers)
    vote = m["vote_bytes"]
    votes_in = (2 * (n - 1) + (n - 1) / k) / r  # PREPAREs, COMMITs, CHECKPOINTs
    send, recv = "send_us", "recv_us"
    split = {
        # PRE-PREPARE, COMMIT, CHECKPOINT per block; a reply per request.
        "sign": (2 + 1 / k) / r * sign_us(m, vote) + sign_us(m, rep),
        "verify": votes_in * verify_us(m, vote) + verify_us(m, req),
        # The client's request in, the votes in; the PRE-PREPARE and
        # COMMIT to n-1 peers and the reply out.
        "grpc": (
            stream_side_us(m, req, recv)
            + votes_in * stream_side_us(m, vote, recv)
            + (n - 1) / r * stream_side_us(m, vote + r * req, send)
            + (n - 1) * (1 + 1 / k) / r * stream_side_us(m, vote, send)
            + stream_side_us(m, rep, send)
        ),
        "sha256": m["sha256_us_per_kb"] * (2 * req + votes_in * vote) / 1024,
        "execute": transfers * 1e6 / exec_json["transfers_per_process_cpu_s"],
    }
    total = sum(split.values())
    return {
        "us": {k_: round(v, 2) for k_, v in split.items()},
        "shares": {k_: round(v / total, 3) for k_, v in split.items()},
    }


def bound(m, exec_json, n, requests_per_block, transfers, k, nproc):
    cpu = cpu_per_request(m, exec_json, n, requests_per_block, transfers, k)
    rps = nproc * 1e6 / cpu["total"]
    return {
        "bound_requests_per_s": round(rps, 1),
        "bound_transfers_per_s": round(rps * transfers, 1),
        "bound_requests_per_s_unary_client_calls": round(
            nproc * 1e6 / cpu["total_unary_client_calls"], 1
        ),
        "cpu_us_per_request_model": cpu,
    }


def floor(m, exec_json, n=4, transfers=1, run_writes_ms=None):
    """Latency floor of one request (one client, a block of one request): the
    steps that must happen one after another, in ms.

    From the machine: four synced writes (fdatasync, the mean of 4 writers
    at once: ext4 commits concurrent syncs together) and the executing
    thread's CPU for a one-transfer block (exec-bench). With run_writes_ms =
    (protocol, ledger), a run's own mean synced writes replace them: three
    protocol-store writes and the ledger's whole block write."""
    f = (n - 1) // 3
    req, rep = sizes_for(m, transfers)
    vote = m["vote_bytes"]
    if run_writes_ms is None:
        fsync = m["fdatasync_ms_mean"]
        # PRE-PREPARE at the primary, PRE-PREPARE+PREPARE at a backup,
        # COMMIT (each persisted before it is sent), the executed block.
        writes = {"fsync_x4": 4 * fsync,
                  "execute_cpu": 1e3 * transfers / exec_json["transfers_per_cpu_s"]}
    else:
        fsync = run_writes_ms[0]
        writes = {"fsync_x3": 3 * fsync, "execute_block": run_writes_ms[1]}
    parts = dict(writes)
    # Client request, PRE-PREPARE, PREPARE, COMMIT, reply.
    parts["sign_x5"] = (sign_us(m, req) + 3 * sign_us(m, vote) + sign_us(m, rep)) / 1e3
    # Request at the primary, the quorum-completing PRE-PREPARE, PREPARE and
    # COMMIT, and the client's f+1 replies (checked one after the other).
    parts["verify_x%d" % (4 + f + 1)] = (
        verify_us(m, req) + 3 * verify_us(m, vote) + (f + 1) * verify_us(m, rep)
    ) / 1e3
    # client->primary, PRE-PREPARE, PREPARE, COMMIT, reply->client.
    parts["hops_x5"] = 5 * m["grpc_stream_hop_us"] / 1e3
    return {
        "kind": "floor",
        "latency_floor_ms": round(sum(parts.values()), 3),
        "parts_ms": {k: round(v, 3) for k, v in parts.items()},
        "fdatasync_ms": fsync,
        "hop_us": m["grpc_stream_hop_us"],
    }


# --- Replicas' counters ------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text):
    """The counters this model checks, from one replica's Prometheus text."""
    out = {"received": {}, "blocks": 0.0, "batch_requests_sum": 0.0,
           "batch_requests_count": 0.0}
    for line in text.splitlines():
        mt = _SAMPLE.match(line)
        if not mt:
            continue
        name, labels, value = mt.group(1), mt.group(2) or "", float(mt.group(3))
        if name == "ledger_messages_received_total":
            t = re.search(r'type="MESSAGE_TYPE_([A-Z_]+)"', labels)
            if t:
                out["received"][t.group(1)] = value
        elif name == "ledger_blocks_executed_total":
            out["blocks"] = value
        elif name == "ledger_batch_requests_sum":
            out["batch_requests_sum"] = value
        elif name == "ledger_batch_requests_count":
            out["batch_requests_count"] = value
        elif name.startswith("ledger_storage_write_seconds_"):
            store = re.search(r'store="([a-z]+)"', labels)
            if store and name.endswith(("_sum", "_count")):
                key = "%s_write_%s" % (store.group(1), name.rsplit("_", 1)[1])
                out[key] = value
    return out


def measured_counts(before, after):
    """Requests per block, and received messages per block over the cluster,
    between two scrapes (replica 0's blocks and requests)."""
    b0, a0 = before["replicas"][0], after["replicas"][0]
    blocks = a0["batch_requests_count"] - b0["batch_requests_count"]
    requests = a0["batch_requests_sum"] - b0["batch_requests_sum"]
    if blocks <= 0 or requests <= 0:
        raise ValueError("no block executed between the scrapes")
    per_block = {}
    for rb, ra in zip(before["replicas"], after["replicas"]):
        for t, v in ra["received"].items():
            per_block[t] = per_block.get(t, 0.0) + v - rb["received"].get(t, 0.0)
    def mean_ms(store):
        """Mean synced write of `store` over the replicas, ms."""
        total = count = 0.0
        for rb, ra in zip(before["replicas"], after["replicas"]):
            total += ra.get(store + "_write_sum", 0) - rb.get(store + "_write_sum", 0)
            count += ra.get(store + "_write_count", 0) - rb.get(
                store + "_write_count", 0)
        return 1e3 * total / count if count > 0 else None

    return {
        "blocks": blocks,
        "requests": requests,
        "protocol_write_ms": mean_ms("protocol"),
        "ledger_write_ms": mean_ms("ledger"),
        "requests_per_block": requests / blocks,
        "received_per_block": {t: v / blocks for t, v in sorted(per_block.items())},
    }


def scrape(config_path, parse=None):
    """Each replica's /metrics (by id, from the cluster config), read by
    `parse` (default: this model's parse_metrics)."""
    parse = parse or parse_metrics
    with open(config_path) as fh:
        cfg = json.load(fh)
    replicas = []
    for r in sorted(cfg["replicas"], key=lambda r: r.get("id", 0)):
        url = "http://%s/metrics" % r["metrics_address"]
        with urllib.request.urlopen(url, timeout=5) as resp:
            replicas.append(parse(resp.read().decode()))
    return {"replicas": replicas}


# --- One result line ----------------------------------------------------------


def thread_split(before, after, ticks_per_s, requests):
    """The replicas' CPU per executed request by thread name (µs), from two
    "NAME<TAB>TICKS" files taken before and after the cell, largest first."""
    def read(path):
        out = {}
        for line in open(path):
            name, _, ticks = line.rstrip("\n").rpartition("\t")
            out[name] = out.get(name, 0) + int(ticks)
        return out
    b, a = read(before), read(after)
    us = {n: (a[n] - b.get(n, 0)) * 1e6 / ticks_per_s / requests for n in a}
    return {n: round(v, 1) for n, v in sorted(us.items(), key=lambda x: -x[1])
            if v >= 0.05}


def probed(m, probes):
    """The machine line m with its Ed25519 figures replaced by the mean of the
    probes (machine-bench --probe lines at the same sizes, taken just before
    and just after a cell)."""
    sizes = [[e["bytes"] for e in p["ed25519"]] for p in probes]
    if any(s != [e["bytes"] for e in m["ed25519"]] for s in sizes):
        raise ValueError("a probe's sizes differ from the machine line's")
    out = dict(m)
    out["ed25519"] = [
        {"bytes": e["bytes"],
         "sign_us": sum(p["ed25519"][i]["sign_us"] for p in probes) / len(probes),
         "verify_us": sum(p["ed25519"][i]["verify_us"] for p in probes) / len(probes)}
        for i, e in enumerate(m["ed25519"])
    ]
    return out


def cell_line(m, exec_json, result, before, after, cpu_s, wall_s, nproc, load,
              n, k, floor_ms, ctx_switches=None, threads=None, probes=None):
    mc = measured_counts(before, after)
    r = mc["requests_per_block"]
    b = result["batch"]
    out = dict(result)
    out.update(bound(m, exec_json, n, r, b, k, nproc))
    out["ratio"] = round(result["requests_per_s"] / out["bound_requests_per_s"], 3)
    if probes:
        # The same bound with Ed25519 as measured next to the cell: on this
        # host the same code's cost moves by up to 60% within an hour, and
        # signatures are most of the model.
        bp = bound(probed(m, probes), exec_json, n, r, b, k, nproc)
        out["bound_requests_per_s_probed"] = bp["bound_requests_per_s"]
        out["ratio_probed"] = round(
            result["requests_per_s"] / bp["bound_requests_per_s"], 3)
        out["verify_us_at_vote"] = {
            "machine": round(verify_us(m, m["vote_bytes"]), 1),
            "before": round(verify_us(probes[0], m["vote_bytes"]), 1),
            "after": round(verify_us(probes[-1], m["vote_bytes"]), 1),
        }
    out["requests_per_block"] = round(r, 2)
    out["cpu_us_per_request_measured"] = round(cpu_s * 1e6 / mc["requests"], 1)
    if ctx_switches is not None:
        # Thread hand-offs, counted by the kernel: the replicas' context
        # switches (all threads, voluntary and not) per executed request.
        out["context_switches_per_request"] = round(
            ctx_switches / mc["requests"], 1)
    if threads is not None:
        out["replica_cpu_us_per_request_by_thread"] = thread_split(
            threads[0], threads[1], threads[2], mc["requests"])
    # On a shared machine the run gets fewer than nproc cores: the bound at
    # the cores it did get (its CPU seconds over the same wall seconds).
    out["cores_used"] = round(cpu_s / wall_s, 2)
    out["ratio_at_cores_used"] = round(
        out["ratio"] * nproc / max(out["cores_used"], 1e-9), 3)
    model = counts(n, r, k)["received_per_block"]
    out["received_per_block"] = {
        t: {"model": round(model.get(t, 0.0), 2), "measured": round(v, 2)}
        for t, v in mc["received_per_block"].items()
    }
    out["primary_model_split"] = primary_split(m, exec_json, n, r, b, k)["shares"]
    out["latency_floor_ms"] = floor_ms
    out["p50_over_floor"] = round(result["p50_ms"] / floor_ms, 2)
    # The same floor with this run's own synced writes (the disk of a shared
    # machine changes by the minute): protocol store for the three votes'
    # fsyncs, the ledger's whole block write for execution.
    # Only one client's requests are alone on the path, as the floor assumes.
    if result.get("clients") == 1 and mc["protocol_write_ms"] and mc["ledger_write_ms"]:
        run = floor(m, exec_json, n, 1,
                    (mc["protocol_write_ms"], mc["ledger_write_ms"]))
        out["latency_floor_in_run_ms"] = run["latency_floor_ms"]
        out["latency_floor_in_run_parts_ms"] = run["parts_ms"]
        out["p50_over_floor_in_run"] = round(
            result["p50_ms"] / run["latency_floor_ms"], 2)
    out["nproc"] = nproc
    out["load_avg"] = load
    return out


# The fast path's targets that a matrix can show, each against its cells:
# the ratio at 64 clients with 1 and 100 transfers per request, the
# replicas' peak RSS, one client's p50 over the latency floor. (The p99 at
# 70% of peak and the overload's are `--load70` and `--overload` lines.)
RATIO_MIN = 0.7
RSS_MAX_MB = 300
P50_OVER_FLOOR_MAX = 1.5


def targets(cells):
    by = {(c["batch"], c["clients"]): c for c in cells if "ratio" in c}
    out = {"kind": "targets"}
    for b, c in ((1, 64), (100, 64)):
        cell = by.get((b, c))
        if cell is None:
            continue
        t = {"ratio": cell["ratio"], "min": RATIO_MIN,
             "met": cell["ratio"] >= RATIO_MIN}
        if "ratio_probed" in cell:
            t["ratio_probed"] = cell["ratio_probed"]
            t["met_probed"] = cell["ratio_probed"] >= RATIO_MIN
        out["ratio_%dx%d" % (b, c)] = t
    rss = [c["replica_peak_rss_mb"] for c in by.values()
           if "replica_peak_rss_mb" in c]
    if rss:
        out["replica_peak_rss_mb"] = {"largest": max(rss), "max": RSS_MAX_MB,
                                      "met": max(rss) <= RSS_MAX_MB}
    one = by.get((1, 1))
    if one is not None and "p50_over_floor" in one:
        t = {"p50_ms": one["p50_ms"], "floor_ms": one["latency_floor_ms"],
             "p50_over_floor": one["p50_over_floor"],
             "max": P50_OVER_FLOOR_MAX,
             "met": one["p50_over_floor"] <= P50_OVER_FLOOR_MAX}
        if "p50_over_floor_in_run" in one:
            t["floor_in_run_ms"] = one["latency_floor_in_run_ms"]
            t["p50_over_floor_in_run"] = one["p50_over_floor_in_run"]
            t["met_in_run"] = one["p50_over_floor_in_run"] <= P50_OVER_FLOOR_MAX
        out["one_client_p50"] = t
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scrape")
    s.add_argument("config")
    fl = sub.add_parser("floor")
    fl.add_argument("--machine", required=True)
    fl.add_argument("--exec", required=True)
    rb = sub.add_parser("batch")  # requests per block, rounded, >= 1
    rb.add_argument("--before", required=True)
    rb.add_argument("--after", required=True)
    c = sub.add_parser("cell")
    for a in ("machine", "exec", "result", "before", "after"):
        c.add_argument("--" + a, required=True)
    c.add_argument("--cpu-s", type=float, required=True)
    c.add_argument("--wall-s", type=float, required=True)
    c.add_argument("--nproc", type=int, required=True)
    c.add_argument("--load", type=float, required=True)
    c.add_argument("--floor-ms", type=float, required=True)
    c.add_argument("--ctx-switches", type=float, default=None)
    c.add_argument("--threads-before", default=None)
    c.add_argument("--threads-after", default=None)
    c.add_argument("--ticks-per-s", type=float, default=100)
    c.add_argument("--probes", nargs=2, default=None)
    c.add_argument("--replicas", type=int, default=4)
    c.add_argument("--checkpoint-interval", type=int, default=128)
    t = sub.add_parser("targets")  # a file of cell lines, one per line
    t.add_argument("cells")
    a = ap.parse_args(argv)
    load = lambda p: json.load(open(p))  # noqa: E731
    if a.cmd == "scrape":
        out = scrape(a.config)
    elif a.cmd == "batch":
        mc = measured_counts(load(a.before), load(a.after))
        out = max(1, round(mc["requests_per_block"]))
    elif a.cmd == "floor":
        out = floor(load(a.machine), load(a.exec))
    elif a.cmd == "targets":
        out = targets([json.loads(l) for l in open(a.cells) if l.strip()])
    else:
        out = cell_line(load(a.machine), load(a.exec), load(a.result),
                        load(a.before), load(a.after), a.cpu_s, a.wall_s, a.nproc,
                        a.load, a.replicas, a.checkpoint_interval, a.floor_ms,
                        a.ctx_switches,
                        (a.threads_before, a.threads_after, a.ticks_per_s)
                        if a.threads_before and a.threads_after else None,
                        [load(p) for p in a.probes] if a.probes else None)
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main(sys.argv[1:])
