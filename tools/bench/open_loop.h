// ledger-bench's open loop (--rate R).
//
// Requests arrive at R per second on a fixed or a seeded Poisson schedule
// (tools/bench/arrivals.h), each issued at its time whether or not earlier
// ones have completed, by K issuing threads (arrival k by thread k mod K,
// all walking the same schedule). An arrival takes an idle client key and
// calls the SDK's SubmitAsync (the SDK orders one request per key at a
// time, so --clients C is the cap on calls in flight); when all C are busy
// the arrival is dropped at the cap and counted as such, apart from what the
// cluster refuses. Latency runs from the arrival's scheduled time, so a
// bench that falls behind its schedule shows it (and max_schedule_lag_ms
// says by how much).
//
// Counted over the measured seconds after the warm-up, per interval
// (arrivals by their scheduled time, completions by the time they
// completed) and in all: arrivals, served (OK status), refused
// (RESOURCE_EXHAUSTED), errors (any other status), every non-OK completion
// by status code, outcome-unknown completions, arrivals dropped at the cap,
// p50/p99 of the served, and the bench process's own CPU. After the
// measured seconds no request is issued; the ones in flight get up to the
// deadline plus 2 s to complete (counted as drained, or as unfinished).
//
// stdout: one {"kind":"interval",...} line per interval, then the summary
// line ({"mode":"open",...}; docs/benchmarks.md lists its fields).
#ifndef PBFT_LEDGER_TOOLS_BENCH_OPEN_LOOP_H_
#define PBFT_LEDGER_TOOLS_BENCH_OPEN_LOOP_H_

#include "tools/bench/load_common.h"

namespace pbft::bench {

// Opens the clients and runs the open loop: 0 if anything was served,
// else an exit code.
int RunOpenLoop(BenchOptions o);

}  // namespace pbft::bench

#endif  // PBFT_LEDGER_TOOLS_BENCH_OPEN_LOOP_H_
