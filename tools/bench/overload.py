#!/usr/bin/env python3
"""The open-loop targets of docs/benchmarks.md ("Open loop: 70% of peak and
overload"): p99 <= 3 x p50 at 70% of peak, and 2 x peak for minutes with the
cluster serving >= 90% of peak, refusing the excess, its replicas' RSS flat
and every replica at the same height once the load stops.
deploy/local/bench.sh drives it:

  overload.py scrape CONFIG          each replica's counters for these lines
  overload.py storemem CONFIG        each replica's LevelDB memory in kB, one
                                     line (ledger_store_memory_bytes summed)
  overload.py catchup CONFIG --timeout S
                                     polls heights until all replicas agree
  overload.py load70 --peak P --result R
  overload.py overload --peak P --result R --before S0 --after S1
                       --rss RSSFILE --catchup C --warmup W --wall-s X
                       [--rss-anon RSSFILE] [--store-mem RSSFILE]

P and R are ledger-bench result lines (the closed-loop peak; the open-loop
summary). RSSFILE has one line per sample: seconds since the load started,
then each replica's VmRSS in kB. Every function but scrape, catchup and
main is pure; tests/bench/overload_test.py checks them on fixed inputs.
"""
import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bound  # noqa: E402  (the scrape of /metrics is shared)

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")

# The p99 / p50 target at 70% of peak, and the served share of peak at 2x.
P99_OVER_P50_MAX = 3.0
SERVED_SHARE_MIN = 0.9
# "Refuses the excess": of the arrivals not served, at least this share
# answered RESOURCE_EXHAUSTED (the rest were held back at the load
# generator's cap, where a client would wait rather than be told).
EXCESS_REFUSED_SHARE_MIN = 0.9
# RSS counts as flat if the second half of the load grew it by at most
# this share.
FLAT_GROWTH_MAX = 0.1


def parse_metrics(text):
    """One replica's figures for these lines, from its Prometheus text."""
    out = {"executed_seq": 0, "executed_requests": 0, "view": 0,
           "view_changes": 0, "store_memory_bytes": 0,
           "client_refused": 0, "admission_wait": 0, "core_queue_full": 0,
           "requests_forwarded": 0, "client_dropped": {}}
    for line in text.splitlines():
        mt = _SAMPLE.match(line)
        if not mt:
            continue
        name, labels, value = mt.group(1), mt.group(2) or "", float(mt.group(3))
        if name == "ledger_last_executed_seq":
            out["executed_seq"] = int(value)
        elif name == "ledger_batch_requests_sum":
            out["executed_requests"] = int(value)
        elif name == "ledger_view":
            out["view"] = int(value)
        elif name == "ledger_view_changes_total":
            out["view_changes"] = int(value)
        elif (name == "ledger_protocol_events_total"
              and 'event="request_forwarded"' in labels):
            out["requests_forwarded"] = int(value)
        elif name == "ledger_store_memory_bytes":
            out["store_memory_bytes"] += int(value)
        elif name == "ledger_messages_dropped_total":
            layer = re.search(r'layer="([a-z_]+)"', labels)
            reason = re.search(r'reason="([a-z_]+)"', labels)
            if not layer or not reason:
                continue
            if layer.group(1) == "client":
                out["client_dropped"][reason.group(1)] = int(value)
                if reason.group(1) == "resource_exhausted":
                    out["client_refused"] = int(value)
                elif reason.group(1) == "admission_wait":
                    out["admission_wait"] = int(value)
            elif layer.group(1) == "core" and reason.group(1) == "queue_full":
                out["core_queue_full"] = int(value)
    return out


def scrape(config_path):
    return bound.scrape(config_path, parse_metrics)


def catchup(config_path, timeout_s, poll_s=0.5):
    """After the load stopped: how long until every replica reports the
    same executed height (and that height)."""
    t0 = time.monotonic()
    first = None
    while True:
        try:
            heights = [r["executed_seq"] for r in scrape(config_path)["replicas"]]
        except OSError:
            heights = None
        waited = time.monotonic() - t0
        if heights is not None and first is None:
            first = heights
        if heights is not None and len(set(heights)) == 1:
            return catchup_line(first, heights, waited, True, timeout_s)
        if waited >= timeout_s:
            return catchup_line(first, heights, waited, False, timeout_s)
        time.sleep(poll_s)


def catchup_line(first, last, seconds, equal, timeout_s):
    return {
        "kind": "catchup",
        "heights_at_stop": first,
        "spread_at_stop": (max(first) - min(first)) if first else None,
        "heights": last,
        "equal": equal,
        "seconds": round(seconds, 2),
        "timeout_s": timeout_s,
    }


def load70_line(peak, result):
    p50, p99 = result["p50_ms"], result["p99_ms"]
    ratio = round(p99 / p50, 2) if p50 > 0 else None
    return {
        "kind": "load70",
        "peak_requests_per_s": peak["requests_per_s"],
        "offered_per_s": result["offered_per_s"],
        "offered_share_of_peak": round(
            result["offered_per_s"] / peak["requests_per_s"], 3),
        "served_per_s": result["requests_per_s"],
        "p50_ms": p50,
        "p99_ms": p99,
        "p99_over_p50": ratio,
        "target_p99_over_p50_max": P99_OVER_P50_MAX,
        "met": ratio is not None and ratio <= P99_OVER_P50_MAX,
        "refused": result["refused"],
        "errors": result["errors"],
        "dropped_at_cap": result["dropped_at_cap"],
        "bench_cores": result["bench_cores"],
    }


def rss_figures(samples, start_s, end_s, prefix="rss"):
    """Per replica, the sampled figure in MB (VmRSS, or with prefix
    "anon_rss" RssAnon) at the first sample at or after start_s, at the
    middle one, at the last one at or before end_s, and the largest of all.
    "<prefix>_flat": the second half grew by at most FLAT_GROWTH_MAX
    (end <= (1 + FLAT_GROWTH_MAX) x middle) at every replica.
    One sample each is at the mercy of when the allocator last returned
    pages, so beside them: "<prefix>_tenths_max_mb", per replica the
    largest sample in each tenth of the samples (the trend), and
    "<prefix>_halves_max_mb" / "<prefix>_flat_max": the largest sample of
    each half, flat if the second half's is at most (1 + FLAT_GROWTH_MAX) x
    the first half's at every replica (memory that keeps growing raises
    its ceiling; memory that swings under a ceiling does not)."""
    inside = [s for s in samples if start_s <= s[0] <= end_s]
    if not inside:
        return None
    first, mid, last = inside[0], inside[len(inside) // 2], inside[-1]
    n = len(first) - 1
    mb = lambda kb: round(kb / 1024.0, 1)  # noqa: E731
    half = max(1, len(inside) // 2)
    halves = [inside[:half], inside[half:] or inside[-1:]]
    halves_max = [[max(s[i + 1] for s in h) for h in halves]
                  for i in range(n)]
    tenths = [inside[len(inside) * k // 10:len(inside) * (k + 1) // 10]
              for k in range(10)]
    tenths = [t for t in tenths if t]
    return {
        prefix + "_tenths_max_mb": [[mb(max(s[i + 1] for s in t))
                                     for t in tenths] for i in range(n)],
        prefix + "_halves_max_mb": [[mb(x) for x in h] for h in halves_max],
        prefix + "_flat_max": all(h[1] <= (1 + FLAT_GROWTH_MAX) * h[0]
                                  for h in halves_max),
        prefix + "_start_mb": [mb(first[i + 1]) for i in range(n)],
        prefix + "_mid_mb": [mb(mid[i + 1]) for i in range(n)],
        prefix + "_end_mb": [mb(last[i + 1]) for i in range(n)],
        prefix + "_max_mb": [mb(max(s[i + 1] for s in inside))
                             for i in range(n)],
        prefix + "_start_s": first[0],
        prefix + "_end_s": last[0],
        prefix + "_flat": all(last[i + 1] <= (1 + FLAT_GROWTH_MAX) * mid[i + 1]
                              for i in range(n)),
    }


def less(samples, minus):
    """Samples minus samples taken in the same sampler rounds (line by line,
    as many as both have): RssAnon less what LevelDB holds."""
    return [[a[0]] + [x - y for x, y in zip(a[1:], b[1:])]
            for a, b in zip(samples, minus)]


def parse_rss(text):
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out.append([float(parts[0])] + [float(p) for p in parts[1:]])
    return out


def excess_refused_share(result):
    """Refused / (refused + dropped at the cap), per second; 1.0 if the
    run had no excess."""
    refused = result["refused_per_s"]
    excess = refused + result["dropped_at_cap_per_s"]
    return round(refused / excess, 3) if excess > 0 else 1.0


def overload_line(peak, result, intervals, before, after, rss, catch,
                  wall_s=None, anon_rss=None, stores=None):
    """The overload line: served against peak (whole run and per interval),
    what was refused and by whom, RSS start and end, and the catch-up.
    wall_s: seconds between the scrapes `before` and `after`."""
    p = peak["requests_per_s"]
    secs = result["duration_s"]
    per = [{"t_s": iv["t_s"], "served_per_s": iv["requests_per_s"],
            "ratio": round(iv["requests_per_s"] / p, 3),
            "refused_per_s": iv["refused_per_s"],
            "dropped_at_cap_per_s": iv["dropped_at_cap_per_s"],
            "p50_ms": iv["p50_ms"], "p99_ms": iv["p99_ms"],
            "bench_cores": iv["bench_cores"]} for iv in intervals]
    delta = lambda k: [a[k] - b[k] for a, b in  # noqa: E731
                       zip(after["replicas"], before["replicas"])]
    min_ratio = min((x["ratio"] for x in per), default=None)
    out = {
        "kind": "overload",
        "peak_requests_per_s": p,
        "offered_per_s": result["offered_per_s"],
        "offered_over_peak": round(result["offered_per_s"] / p, 3),
        "duration_s": secs,
        "served_per_s": result["requests_per_s"],
        "served_over_peak": round(result["requests_per_s"] / p, 3),
        # Client requests replica 0 executed between the scrapes (warm-up
        # and drain included), per second: beside served_per_s it shows
        # requests executed that no client was told of.
        "executed_per_s": round(delta("executed_requests")[0] / wall_s, 1)
        if wall_s else None,
        "min_interval_served_over_peak": min_ratio,
        "per_interval": per,
        "sdk_refused_per_s": result["refused_per_s"],
        "sdk_by_status": result["by_status"],
        # Of the SDK's refusals, those its throttle made without sending
        # (the whole run, warm-up included; --throttle-k).
        "sdk_throttled": result.get("sdk_throttled", 0),
        "outcome_unknown": result["outcome_unknown"],
        "dropped_at_cap_per_s": result["dropped_at_cap_per_s"],
        # Of the arrivals not served (the excess), the share the cluster
        # answered RESOURCE_EXHAUSTED rather than the load generator holding
        # them back at its cap of calls in flight.
        "excess_refused_share": excess_refused_share(result),
        "cluster_intake_refused_per_s": [round(x / secs, 1) for x in
                                         delta("client_refused")],
        # Of the intake's refusals, those for the expected wait
        # (protocol.admission_wait_ms).
        "cluster_admission_wait_per_s": [round(x / secs, 1) for x in
                                         delta("admission_wait")],
        "cluster_core_queue_full_per_s": [round(x / secs, 1) for x in
                                          delta("core_queue_full")],
        # Requests each backup sent on to the primary, having held them
        # longer than its forward delay without seeing them proposed.
        "cluster_forwarded_per_s": [round(x / secs, 1) for x in
                                    delta("requests_forwarded")],
        "view_changes": delta("view_changes"),
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "bench_cores": result["bench_cores"],
        "max_schedule_lag_ms": result["max_schedule_lag_ms"],
    }
    if rss:
        out.update(rss)
    if anon_rss:
        out.update(anon_rss)
    if stores:
        out.update(stores)
    out["catchup"] = {k: catch[k] for k in
                      ("equal", "seconds", "spread_at_stop", "heights")}
    out["targets"] = {
        "served_over_peak_min": SERVED_SHARE_MIN,
        "served_met": min_ratio is not None and min_ratio >= SERVED_SHARE_MIN,
        "refused_with_resource_exhausted": result["refused"] > 0
        and result["errors"] == 0,
        "excess_refused_share_min": EXCESS_REFUSED_SHARE_MIN,
        "excess_refused_met": excess_refused_share(result) >=
        EXCESS_REFUSED_SHARE_MIN and result["errors"] == 0,
        "caught_up": catch["equal"],
        "anon_rss_flat": anon_rss["anon_rss_flat"] if anon_rss else None,
        "anon_rss_less_stores_flat":
        stores["anon_rss_less_stores_flat"] if stores else None,
        "anon_rss_less_stores_flat_max":
        stores.get("anon_rss_less_stores_flat_max") if stores else None,
    }
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scrape")
    s.add_argument("config")
    c = sub.add_parser("catchup")
    c.add_argument("config")
    c.add_argument("--timeout", type=float, default=60)
    l7 = sub.add_parser("load70")
    l7.add_argument("--peak", required=True)
    l7.add_argument("--result", required=True)
    o = sub.add_parser("overload")
    for a in ("peak", "result", "before", "after", "rss", "catchup"):
        o.add_argument("--" + a, required=True)
    o.add_argument("--rss-anon", help="RssAnon samples, as --rss")
    o.add_argument("--store-mem", help="LevelDB memory samples (kB), as "
                   "--rss, taken in the same rounds as --rss-anon")
    m = sub.add_parser("storemem")
    m.add_argument("config")
    o.add_argument("--warmup", type=float, required=True)
    o.add_argument("--wall-s", type=float, required=True)
    a = ap.parse_args(argv)

    def lines(path):
        with open(path) as fh:
            return [json.loads(x) for x in fh if x.strip().startswith("{")]

    if a.cmd == "storemem":
        print(" ".join(str(r["store_memory_bytes"] // 1024)
                       for r in scrape(a.config)["replicas"]))
        return
    if a.cmd == "scrape":
        out = scrape(a.config)
    elif a.cmd == "catchup":
        out = catchup(a.config, a.timeout)
    elif a.cmd == "load70":
        out = load70_line(lines(a.peak)[-1], lines(a.result)[-1])
    else:
        res = lines(a.result)
        result = res[-1]
        intervals = [x for x in res if x.get("kind") == "interval"]
        span = (a.warmup, a.warmup + result["duration_s"])
        with open(a.rss) as fh:
            rss = rss_figures(parse_rss(fh.read()), *span)
        anon = stores = None
        if a.rss_anon:
            with open(a.rss_anon) as fh:
                anon_samples = parse_rss(fh.read())
            anon = rss_figures(anon_samples, *span, "anon_rss")
            if a.store_mem:
                with open(a.store_mem) as fh:
                    mem = parse_rss(fh.read())
                stores = rss_figures(mem, *span, "store_mem") or {}
                stores.update(rss_figures(less(anon_samples, mem), *span,
                                          "anon_rss_less_stores") or {})
        out = overload_line(lines(a.peak)[-1], result, intervals,
                            lines(a.before)[-1], lines(a.after)[-1], rss,
                            lines(a.catchup)[-1], a.wall_s, anon, stores)
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main(sys.argv[1:])
