// An opt-in trace of where a message's time goes inside a replica, for
// latency analysis (docs/benchmarks.md, "Where a hop's time goes").
//
// With PBFT_TRACE_EVENTS=PREFIX in a process's environment, Event appends
// one line "<CLOCK_MONOTONIC µs> <what> <a> <b>" to the file PREFIX.<pid>
// (line-buffered, any thread). Without it Event returns after one test of a
// pointer set once. The monotonic clock is shared by the processes of one
// machine, so the files of a local cluster line up: tools/bench/hops.py
// reads them. The events and their arguments are listed there.
#ifndef PBFT_LEDGER_COMMON_TRACE_H_
#define PBFT_LEDGER_COMMON_TRACE_H_

#include <cstdint>

namespace pbft::trace {

// True when PBFT_TRACE_EVENTS named a file this process could open.
bool Enabled();
void Event(const char* what, uint64_t a, uint64_t b);

}  // namespace pbft::trace

#endif  // PBFT_LEDGER_COMMON_TRACE_H_
