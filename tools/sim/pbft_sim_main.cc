// pbft-sim: runs the deterministic PBFT cluster simulator over many seeds.
//
//   pbft-sim --seeds N [--first-seed S] [--replicas 4|7] [--scenario NAME]
//            [--real-crypto] [--verbose] [--stop-at-failure]
//
// Exit 0 only if every seed passed. A failing seed prints its replay
// command. The last line is one JSON object.
#include <chrono>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/crypto.h"
#include "common/flags.h"
#include "tests/sim/sim.h"

ABSL_FLAG(uint64_t, seeds, 100, "Number of seeds to run.");
ABSL_FLAG(uint64_t, first_seed, 1, "First seed.");
ABSL_FLAG(uint32_t, replicas, 4, "Cluster size n = 3f+1 (4 or 7).");
ABSL_FLAG(
    std::string, scenario, "byzantine",
    "fair | lossy | byzantine | small-window | queue-full | corrupt-primary | "
    "crash | partition | byzantine-primary | byzantine-view-change");
ABSL_FLAG(bool, real_crypto, false,
          "Sign with Ed25519 instead of the simulator's keyed-hash fake.");
ABSL_FLAG(bool, verbose, false, "Print every seed's set-up and outcome.");
ABSL_FLAG(
    bool, deferred_execution, false,
    "Replicas execute committed batches a few ticks later, through an "
    "executor, while their cores go on (SimOptions::deferred_execution).");
ABSL_FLAG(uint64_t, max_ticks, 60000,
          "Give up on a seed after this many ticks.");
ABSL_FLAG(bool, stop_at_failure, false,
          "Stop after the first failing seed (tests/mutation/run.sh).");

namespace {

// The exit code of a range: 1 if a seed failed, or if the range did not
// test what its scenario is for.
int RangeExitCode(const std::string& scenario, uint64_t seeds, uint64_t failed,
                  uint64_t full_window_missed, uint64_t bodies,
                  uint64_t primary_has_copy) {
  // A range of the full-window scenario in which more than one seed in ten
  // changed views before the window filled tests too little of its case.
  if (scenario == "full-window" && full_window_missed * 10 > seeds) {
    std::printf(
        "full-window: %llu of %llu seeds changed views before the "
        "window filled\n",
        static_cast<unsigned long long>(full_window_missed),
        static_cast<unsigned long long>(seeds));
    return 1;
  }
  // A range of the missing-bodies scenario that never fetched a body did
  // not test what it is for.
  if (scenario == "missing-bodies" && bodies == 0) {
    std::printf("missing-bodies: no batch body was fetched in %llu seeds\n",
                static_cast<unsigned long long>(seeds));
    return 1;
  }
  // A range of the lying-hint scenario in which no backup heeded a
  // client's word did not test what it is for.
  if (scenario == "lying-hint" && primary_has_copy == 0) {
    std::printf(
        "lying-hint: no backup held a request for the primary in "
        "%llu seeds\n",
        static_cast<unsigned long long>(seeds));
    return 1;
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  pbft::ParseFlags(argc, argv,
                   "pbft-sim --seeds N [--first-seed S] [--replicas 4|7] "
                   "[--scenario NAME]");
  pbft::sim::SimOptions o;
  o.replicas = absl::GetFlag(FLAGS_replicas);
  o.scenario = absl::GetFlag(FLAGS_scenario);
  o.real_crypto = absl::GetFlag(FLAGS_real_crypto);
  o.verbose = absl::GetFlag(FLAGS_verbose);
  o.max_ticks = absl::GetFlag(FLAGS_max_ticks);
  o.deferred_execution = absl::GetFlag(FLAGS_deferred_execution);
  if (!pbft::sim::IsScenario(o.scenario)) {
    std::fprintf(stderr, "--scenario: unknown '%s' (one of: %s)\n",
                 o.scenario.c_str(),
                 absl::StrJoin(pbft::sim::ScenarioNames(), ", ").c_str());
    return 2;
  }
  if (o.replicas < 4 || (o.replicas - 1) % 3 != 0 || o.replicas > 31) {
    std::fprintf(stderr, "--replicas: must be 3f+1 in [4, 31], got %u\n",
                 o.replicas);
    return 2;
  }
  const uint64_t seeds = absl::GetFlag(FLAGS_seeds);
  const uint64_t first = absl::GetFlag(FLAGS_first_seed);
  const auto start = std::chrono::steady_clock::now();
  uint64_t failed = 0, ticks = 0, requests = 0, batches = 0, messages = 0,
           dropped = 0, fetches = 0, forwarded = 0, primary_has_copy = 0,
           unsent = 0, max_latency = 0, max_rejoin = 0, ahead = 0, max_view = 0,
           bodies = 0, full_window_missed = 0, backlog = 0, executed_inline = 0;
  pbft::crypto::Sha256Hasher all;
  std::string last_digest;
  for (uint64_t seed = first; seed < first + seeds; ++seed) {
    o.seed = seed;
    const pbft::sim::SimResult r = pbft::sim::RunSimulation(o);
    ticks += r.ticks;
    requests += r.requests_completed;
    batches += r.batches_executed;
    messages += r.messages_sent;
    dropped += r.messages_dropped;
    fetches += r.fetches;
    forwarded += r.forwarded;
    primary_has_copy += r.primary_has_copy;
    unsent += r.replies_unsent;
    bodies += r.bodies_fetched;
    full_window_missed += r.full_window_missed;
    max_latency = std::max(max_latency, r.max_latency_ticks);
    max_rejoin = std::max(max_rejoin, r.max_rejoin_ticks);
    ahead += r.ahead_alone;
    max_view = std::max(max_view, r.max_view);
    backlog = std::max(backlog, r.max_execution_backlog);
    executed_inline += r.executed_inline;
    all.Update(r.trace_digest);
    last_digest = r.trace_digest;
    if (o.verbose || seeds == 1 || !r.ok) {
      std::printf(
          "seed %llu %s: %s | ticks=%llu requests=%llu/%llu "
          "rejected=%llu batches=%llu messages=%llu net_dropped=%llu "
          "core_drops=%llu fetches=%llu trace=%s\n",
          static_cast<unsigned long long>(seed), r.ok ? "ok" : "FAILED",
          r.setup.c_str(), static_cast<unsigned long long>(r.ticks),
          static_cast<unsigned long long>(r.requests_completed),
          static_cast<unsigned long long>(r.requests_submitted),
          static_cast<unsigned long long>(r.requests_rejected),
          static_cast<unsigned long long>(r.batches_executed),
          static_cast<unsigned long long>(r.messages_sent),
          static_cast<unsigned long long>(r.messages_dropped),
          static_cast<unsigned long long>(r.core_drops),
          static_cast<unsigned long long>(r.fetches), r.trace_digest.c_str());
    }
    if (!r.ok) {
      ++failed;
      std::printf("  failure: %s\n", r.failure.c_str());
      std::printf(
          "  replay: build/bin/pbft-sim --seeds 1 --first-seed %llu "
          "--replicas %u --scenario %s%s%s\n",
          static_cast<unsigned long long>(seed), o.replicas, o.scenario.c_str(),
          o.real_crypto ? " --real-crypto" : "",
          o.deferred_execution ? " --deferred-execution" : "");
    }
    std::fflush(stdout);
    if (!r.ok && absl::GetFlag(FLAGS_stop_at_failure)) break;
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  const std::string digest = seeds == 1 ? last_digest : all.Finish().ToHex();
  std::printf(
      "{\"seeds\":%llu,\"failed\":%llu,\"scenario\":\"%s\",\"replicas\":%u,"
      "\"first_seed\":%llu,\"ticks\":%llu,\"requests\":%llu,\"batches\":%llu,"
      "\"messages\":%llu,\"net_dropped\":%llu,\"fetches\":%llu,"
      "\"forwarded\":%llu,\"primary_has_copy\":%llu,"
      "\"replies_unsent\":%llu,\"bodies_fetched\":%llu,"
      "\"max_latency_ticks\":%llu,\"max_rejoin_ticks\":%llu,"
      "\"ahead_alone\":%llu,\"max_view\":%llu,\"real_crypto\":%s,"
      "\"deferred_execution\":%s,\"max_execution_backlog\":%llu,"
      "\"executed_inline\":%llu,"
      "\"wall_s\":%.3f,"
      "\"trace_digest\":\"%s\"}\n",
      static_cast<unsigned long long>(seeds),
      static_cast<unsigned long long>(failed), o.scenario.c_str(), o.replicas,
      static_cast<unsigned long long>(first),
      static_cast<unsigned long long>(ticks),
      static_cast<unsigned long long>(requests),
      static_cast<unsigned long long>(batches),
      static_cast<unsigned long long>(messages),
      static_cast<unsigned long long>(dropped),
      static_cast<unsigned long long>(fetches),
      static_cast<unsigned long long>(forwarded),
      static_cast<unsigned long long>(primary_has_copy),
      static_cast<unsigned long long>(unsent),
      static_cast<unsigned long long>(bodies),
      static_cast<unsigned long long>(max_latency),
      static_cast<unsigned long long>(max_rejoin),
      static_cast<unsigned long long>(ahead),
      static_cast<unsigned long long>(max_view),
      o.real_crypto ? "true" : "false", o.deferred_execution ? "true" : "false",
      static_cast<unsigned long long>(backlog),
      static_cast<unsigned long long>(executed_inline), wall, digest.c_str());
  return RangeExitCode(o.scenario, seeds, failed, full_window_missed, bodies,
                       primary_has_copy);
}
