// The deterministic cluster simulator: n replicas (each a pbft::core::Core with
// an in-memory ledger stand-in), several closed-loop clients and a simulated
// network that delays, drops, duplicates and reorders, all in one thread,
// driven by one seeded PRNG and simulated time in ticks. Up to f backups
// can be Byzantine. Checkers run as it goes: agreement, validity,
// exactly-once, certificate validity, core invariants after every step,
// and liveness (every request completes within a bound of ticks).
//
// Same options -> same run, bit for bit: the trace digest (SHA-256 over
// every delivered message and executed block) proves it.
#ifndef PBFT_LEDGER_TESTS_SIM_SIM_H_
#define PBFT_LEDGER_TESTS_SIM_SIM_H_

#include <cstdint>
#include <string>
#include <vector>

namespace pbft::sim {

struct SimOptions {
  uint64_t seed = 1;
  uint32_t replicas = 4;  // 4 or 7 (any 3f+1 works).
  std::string scenario = "byzantine";
  bool real_crypto = false;
  bool verbose = false;
  uint64_t max_ticks = 60000;
  // Replicas execute committed batches through a node::BatchExecutor that
  // runs each 0-3 ticks after the one before, or one in eight up to 39
  // (a slow disk), as an executing thread of its own would, while their
  // cores go on with later inputs; when none is outstanding, one batch in
  // four runs at once on the node's turn instead (ledgerd's small blocks).
  bool deferred_execution = false;
};

struct SimResult {
  bool ok = true;
  std::string failure;  // First checker failure, when !ok.
  uint64_t ticks = 0;
  std::string trace_digest;  // Hex.
  std::string setup;         // The parameters the seed chose.
  uint64_t requests_submitted = 0;
  uint64_t requests_completed = 0;
  uint64_t requests_rejected = 0;  // QUEUE_FULL replies seen by clients.
  uint64_t batches_executed = 0;   // At correct replicas, summed.
  uint64_t messages_sent = 0;
  uint64_t messages_dropped = 0;  // By the network.
  uint64_t core_drops = 0;        // Inputs the correct cores refused.
  uint64_t fetches = 0;
  uint64_t forwarded = 0;  // Requests backups forwarded to a primary.
  // Requests backups held past the forward delay and did not forward: the
  // client said the primary had them (core Stats::requests_primary_has_copy).
  uint64_t primary_has_copy = 0;
  // Replies correct replicas did not sign or send: no client call waited
  // for them there.
  uint64_t replies_unsent = 0;
  uint64_t bodies_fetched = 0;  // Batch bodies fetched by correct replicas.
  // Scenario full-window: a view change came before the window filled (a
  // backup's or the primary's timer ran out first), so the seed ran
  // without the case under test; it must still pass every other check.
  uint64_t full_window_missed = 0;
  uint64_t max_latency_ticks = 0;
  // Rejoin scenarios: ticks from the victim's return until every correct
  // replica was active in one view.
  uint64_t max_rejoin_ticks = 0;
  // Correct replicas that ended changing to a view above the cluster's
  // alone (their timer expired while cut off; docs/protocol.md).
  uint64_t ahead_alone = 0;
  // Highest view a correct replica reached, and the faults that may cause
  // view changes (crashes, partitions, stalls) injected.
  uint64_t max_view = 0;
  uint64_t faults = 0;
  // deferred_execution: the most batches a replica had submitted and not
  // yet executed.
  uint64_t max_execution_backlog = 0;
  // deferred_execution: batches a node executed itself, at once, because
  // the executor said so (BatchExecutor::Inline) with none outstanding.
  uint64_t executed_inline = 0;
};

// The scenario names --scenario accepts.
std::vector<std::string> ScenarioNames();
bool IsScenario(const std::string& name);

SimResult RunSimulation(const SimOptions& options);

}  // namespace pbft::sim

#endif  // PBFT_LEDGER_TESTS_SIM_SIM_H_
