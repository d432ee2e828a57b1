// What ledger-bench's closed and open loops share: the options, and one SDK
// client per client key with the transfers it sends.
#ifndef PBFT_LEDGER_TOOLS_BENCH_LOAD_COMMON_H_
#define PBFT_LEDGER_TOOLS_BENCH_LOAD_COMMON_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/client.h"
#include "common/proto_names.h"
#include "tools/bench/arrivals.h"

namespace pbft::bench {

struct BenchOptions {
  std::string config;
  std::string keys_dir;
  uint32_t clients = 0;
  uint32_t batch = 0;
  absl::Duration duration, warmup, deadline;
  // client::ClientOptions::retry_refused of every client.
  bool retry_refused = true;
  // > 0: one client::LoadThrottle with this k shared by every client
  // (needs retry_refused off); 0: none.
  double throttle_k = 0;
  // client::ClientOptions::sessions of every client.
  bool sessions = true;
  // client::ClientOptions::send_to_all of every client.
  bool send_to_all = false;
  // client::ClientOptions::hedge_after_first of every client.
  double hedge_after_first = client::ClientOptions().hedge_after_first;
  // Transfer ids from client::NewId (ordered by time); false: high = client
  // id, low = a counter from a random base (LoadClient).
  bool time_ids = true;
  // Open loop (rate > 0): offered requests/s, arrival kind and seed, the
  // interval of the per-interval lines, threads issuing arrivals.
  double rate = 0;
  ArrivalKind arrivals = ArrivalKind::kPoisson;
  uint64_t seed = 1;
  absl::Duration interval;
  uint32_t issuers = 1;
};

// Client key i+1 of the config: its SDK client and its transfers. Every
// transfer moves 1 unit from the client's genesis account (id = client id)
// to the next client's (with one client, to a sink account of its own).
// Transfer ids: client::NewId(), or with `time_ids` false high = client id,
// low = a random base + counter; either way reruns against the same cluster
// never collide. Not thread-safe: one caller at a time.
struct LoadClient {
  std::unique_ptr<client::Client> sdk;
  bool time_ids = true;
  uint64_t counter = 0;
  ledger::v1::Uint128 debit, credit;

  // The next request of `batch` transfers.
  ledger::v1::OperationBatch NextBatch(uint32_t batch);
};

// Clients 1..o.clients, keys from o.keys_dir; with one client, its sink
// account created (idempotent across runs). nullopt after printing why not.
std::optional<std::vector<LoadClient>> OpenLoadClients(const BenchOptions& o);

// The clients' SDK counts, summed.
client::ClientStats SumStats(const std::vector<LoadClient>& clients);
// `s` as JSON fields ("sdk_sends":...,...) without braces; docs/benchmarks.md
// lists them.
std::string SdkStatsJson(const client::ClientStats& s);

}  // namespace pbft::bench

#endif  // PBFT_LEDGER_TOOLS_BENCH_LOAD_COMMON_H_
