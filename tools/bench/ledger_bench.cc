// ledger-bench: closed-loop load through the SDK.
//
//   ledger-bench --config cluster.json --clients C --batch B --duration S
//                [--keys-dir DIR] [--warmup S]
//
// C concurrent client loops (each its own ledger::Client and key: client
// ids 1..C of the config, keys DIR/client-<id>.key) each submit one request
// of B transfers, wait for f+1 matching replies, and repeat, for S seconds.
// Every transfer moves 1 unit from the client's genesis account (id = client
// id) to the next client's. Prints progress each second and, as its last
// line, one JSON object: transfers_per_s, requests_per_s, p50_ms, p99_ms,
// replicas, clients, batch, plus counts of errors and non-OK results.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/crypto.h"
#include "common/flags.h"

ABSL_FLAG(std::string, config, "", "Cluster config (cluster.json).");
ABSL_FLAG(std::string, keys_dir, "",
          "Directory of client key files (default: <config dir>/keys).");
ABSL_FLAG(uint32_t, clients, 4, "Concurrent client loops (C).");
ABSL_FLAG(uint32_t, batch, 100, "Transfers per request (B).");
ABSL_FLAG(double, duration, 10, "Measured seconds (S).");
ABSL_FLAG(double, warmup, 1, "Seconds of load before measuring.");
ABSL_FLAG(double, deadline, 10, "Per-request deadline in seconds.");

namespace ledger {
namespace {

struct Stats {
  std::mutex mu;
  std::vector<double> latencies_ms;
  uint64_t requests = 0, transfers = 0, errors = 0, not_ok = 0;
  // The longest time without a completed request while measuring.
  absl::Time last_done;
  double max_gap_ms = 0;
};

int Run() {
  const std::string config = absl::GetFlag(FLAGS_config);
  if (config.empty()) {
    std::cerr << "ledger-bench: --config FILE is required\n";
    return 2;
  }
  std::string keys_dir = absl::GetFlag(FLAGS_keys_dir);
  if (keys_dir.empty()) {
    keys_dir = (std::filesystem::path(config).parent_path() / "keys").string();
  }
  const uint32_t clients = absl::GetFlag(FLAGS_clients);
  const uint32_t batch = absl::GetFlag(FLAGS_batch);
  if (clients == 0 || batch == 0) {
    std::cerr << "ledger-bench: --clients and --batch must be positive\n";
    return 2;
  }
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_duration));
  const absl::Duration warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup));
  const absl::Duration deadline = absl::Seconds(absl::GetFlag(FLAGS_deadline));

  std::vector<std::unique_ptr<Client>> sdk;
  for (uint32_t c = 1; c <= clients; ++c) {
    ClientOptions o;
    o.config_path = config;
    o.key_path = absl::StrCat(keys_dir, "/client-", c, ".key");
    o.default_deadline = deadline;
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(o);
    if (!client.ok()) {
      std::cerr << "ledger-bench: client " << c << ": "
                << client.status().message() << "\n";
      return 1;
    }
    sdk.push_back(*std::move(client));
  }
  const uint32_t replicas = sdk[0]->replica_count();
  std::cerr << "ledger-bench: " << clients << " clients x " << batch
            << " transfers/request, " << absl::FormatDuration(duration)
            << " against " << replicas << " replicas\n";

  // With one client there is no peer account to credit: it creates its own
  // (idempotent across runs: RESULT_CODE_OK or EXISTS).
  const v1::Uint128 solo_sink = MakeId(sdk[0]->client_id(), 0xb3ac);
  if (clients == 1) {
    v1::CreateAccount a;
    *a.mutable_id() = solo_sink;
    a.set_ledger(1);
    absl::StatusOr<v1::OperationResults> r =
        sdk[0]->CreateAccounts({a}, deadline);
    if (!r.ok()) {
      std::cerr << "ledger-bench: creating the sink account: "
                << r.status().message() << "\n";
      return 1;
    }
  }

  Stats stats;
  std::atomic<bool> stop{false};
  std::atomic<bool> measuring{false};
  // Transfer ids: high = client id, low = a random base + counter, so
  // reruns against the same cluster never collide.
  std::vector<std::thread> loops;
  for (uint32_t i = 0; i < clients; ++i) {
    loops.emplace_back([&, i] {
      Client& c = *sdk[i];
      const uint64_t me = c.client_id();
      const uint64_t peer = (i + 1) % clients + 1;
      std::string rnd = crypto::RandomBytes(8);
      uint64_t counter = 0;
      for (char ch : rnd) counter = (counter << 8) | static_cast<uint8_t>(ch);
      counter &= 0x0000ffffffffffffull;
      while (!stop.load()) {
        std::vector<v1::Transfer> ts(batch);
        for (v1::Transfer& t : ts) {
          *t.mutable_id() = MakeId(me, ++counter);
          *t.mutable_debit_account_id() = MakeId(0, me);
          *t.mutable_credit_account_id() =
              clients == 1 ? solo_sink : MakeId(0, peer);
          t.set_amount(1);
          t.set_ledger(1);
        }
        const absl::Time start = absl::Now();
        absl::StatusOr<v1::OperationResults> r = c.Transfers(ts, deadline);
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
        if (!measuring.load()) continue;
        std::lock_guard<std::mutex> l(stats.mu);
        if (!r.ok()) {
          ++stats.errors;
          if (stats.errors <= 5) {
            std::cerr << "ledger-bench: client " << me << ": "
                      << r.status().message() << "\n";
          }
          continue;
        }
        const absl::Time done = absl::Now();
        stats.max_gap_ms =
            std::max(stats.max_gap_ms,
                     absl::ToDoubleMilliseconds(done - stats.last_done));
        stats.last_done = done;
        ++stats.requests;
        stats.transfers += batch;
        stats.latencies_ms.push_back(ms);
        for (const v1::OperationResult& res : r->results()) {
          if (res.code() != v1::RESULT_CODE_OK) ++stats.not_ok;
        }
      }
    });
  }

  absl::SleepFor(warmup);
  const absl::Time begin = absl::Now();
  {
    std::lock_guard<std::mutex> l(stats.mu);
    stats.last_done = begin;
  }
  measuring = true;
  uint64_t last = 0;
  for (int s = 1; absl::Now() - begin < duration; ++s) {
    absl::SleepFor(
        std::min(absl::Seconds(1), duration - (absl::Now() - begin)));
    std::lock_guard<std::mutex> l(stats.mu);
    std::cerr << "  t=" << s << "s requests=" << stats.requests << " (+"
              << stats.requests - last << ") transfers=" << stats.transfers
              << " errors=" << stats.errors << "\n";
    last = stats.requests;
  }
  measuring = false;
  const absl::Time end = absl::Now();
  const double secs = absl::ToDoubleSeconds(end - begin);
  {
    std::lock_guard<std::mutex> l(stats.mu);
    stats.max_gap_ms = std::max(
        stats.max_gap_ms, absl::ToDoubleMilliseconds(end - stats.last_done));
  }
  stop = true;
  for (std::thread& t : loops) t.join();

  std::lock_guard<std::mutex> l(stats.mu);
  std::vector<double>& lat = stats.latencies_ms;
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    if (lat.empty()) return 0.0;
    size_t i =
        std::min(lat.size() - 1,
                 static_cast<size_t>(p * static_cast<double>(lat.size())));
    return lat[i];
  };
  char json[512];
  std::snprintf(
      json, sizeof json,
      "{\"transfers_per_s\":%.1f,\"requests_per_s\":%.1f,\"p50_ms\":%.2f,"
      "\"p99_ms\":%.2f,\"replicas\":%u,\"clients\":%u,\"batch\":%u,"
      "\"duration_s\":%.1f,\"requests\":%llu,\"errors\":%llu,\"not_ok\":%llu,"
      "\"max_gap_ms\":%.0f}",
      static_cast<double>(stats.transfers) / secs,
      static_cast<double>(stats.requests) / secs, pct(0.50), pct(0.99),
      replicas, clients, batch, secs,
      static_cast<unsigned long long>(stats.requests),
      static_cast<unsigned long long>(stats.errors),
      static_cast<unsigned long long>(stats.not_ok), stats.max_gap_ms);
  std::cout << json << std::endl;
  return stats.requests > 0 ? 0 : 1;
}

}  // namespace
}  // namespace ledger

int main(int argc, char** argv) {
  // Abseil's lock-order graph is for tests (they keep it); in a production
  // process it cost 2% of a busy replica's CPU (docs/benchmarks.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  ledger::ParseFlags(
      argc, argv,
      "ledger-bench --config FILE --clients C --batch B --duration S");
  return ledger::Run();
}
