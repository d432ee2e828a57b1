// ledger-bench: closed-loop load through the SDK.
//
//   ledger-bench --config cluster.json --clients C --batch B --duration S
//                [--keys-dir DIR] [--warmup S]
//
// C concurrent client loops (each its own pbft::client::Client and key: client
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
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/crypto.h"
#include "common/flags.h"
#include "common/proto_names.h"

ABSL_FLAG(std::string, config, "", "Cluster config (cluster.json).");
ABSL_FLAG(std::string, keys_dir, "",
          "Directory of client key files (default: <config dir>/keys).");
ABSL_FLAG(uint32_t, clients, 4, "Concurrent client loops (C).");
ABSL_FLAG(uint32_t, batch, 100, "Transfers per request (B).");
ABSL_FLAG(double, duration, 10, "Measured seconds (S).");
ABSL_FLAG(double, warmup, 1, "Seconds of load before measuring.");
ABSL_FLAG(double, deadline, 10, "Per-request deadline in seconds.");

namespace pbft::bench {
namespace {

struct Stats {
  std::mutex mu;
  std::vector<double> latencies_ms;
  uint64_t requests = 0, transfers = 0, errors = 0, not_ok = 0;
  // The longest time without a completed request while measuring.
  absl::Time last_done;
  double max_gap_ms = 0;
};

struct BenchOptions {
  std::string config;
  std::string keys_dir;
  uint32_t clients = 0;
  uint32_t batch = 0;
  absl::Duration duration, warmup, deadline;
};

// The flags, checked; nullopt after printing what is wrong.
std::optional<BenchOptions> ReadFlags() {
  BenchOptions o;
  o.config = absl::GetFlag(FLAGS_config);
  if (o.config.empty()) {
    std::cerr << "ledger-bench: --config FILE is required\n";
    return std::nullopt;
  }
  o.keys_dir = absl::GetFlag(FLAGS_keys_dir);
  if (o.keys_dir.empty()) {
    o.keys_dir =
        (std::filesystem::path(o.config).parent_path() / "keys").string();
  }
  o.clients = absl::GetFlag(FLAGS_clients);
  o.batch = absl::GetFlag(FLAGS_batch);
  if (o.clients == 0 || o.batch == 0) {
    std::cerr << "ledger-bench: --clients and --batch must be positive\n";
    return std::nullopt;
  }
  o.duration = absl::Seconds(absl::GetFlag(FLAGS_duration));
  o.warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup));
  o.deadline = absl::Seconds(absl::GetFlag(FLAGS_deadline));
  return o;
}

class Bench {
 public:
  explicit Bench(BenchOptions o) : o_(std::move(o)) {}

  // 0 on success, else the exit code.
  int Run() {
    if (!OpenClients() || !CreateSoloSink()) return 1;
    std::cerr << "ledger-bench: " << o_.clients << " clients x " << o_.batch
              << " transfers/request, " << absl::FormatDuration(o_.duration)
              << " against " << sdk_[0]->replica_count() << " replicas\n";
    std::vector<std::thread> loops;
    for (uint32_t i = 0; i < o_.clients; ++i) {
      loops.emplace_back([this, i] { ClientLoop(i); });
    }
    absl::SleepFor(o_.warmup);
    const double secs = Measure();
    stop_ = true;
    for (std::thread& t : loops) t.join();
    Report(secs);
    std::lock_guard<std::mutex> l(stats_.mu);
    return stats_.requests > 0 ? 0 : 1;
  }

 private:
  bool OpenClients() {
    for (uint32_t c = 1; c <= o_.clients; ++c) {
      client::ClientOptions co;
      co.config_path = o_.config;
      co.key_path = absl::StrCat(o_.keys_dir, "/client-", c, ".key");
      co.default_deadline = o_.deadline;
      absl::StatusOr<std::unique_ptr<client::Client>> client =
          client::Client::Create(co);
      if (!client.ok()) {
        std::cerr << "ledger-bench: client " << c << ": "
                  << client.status().message() << "\n";
        return false;
      }
      sdk_.push_back(*std::move(client));
    }
    solo_sink_ = client::MakeId(sdk_[0]->client_id(), 0xb3ac);
    return true;
  }

  // With one client there is no peer account to credit: it creates its own
  // (idempotent across runs: RESULT_CODE_OK or EXISTS).
  bool CreateSoloSink() {
    if (o_.clients != 1) return true;
    ledger::v1::CreateAccount a;
    *a.mutable_id() = solo_sink_;
    a.set_ledger(1);
    absl::StatusOr<ledger::v1::OperationResults> r =
        sdk_[0]->CreateAccounts({a}, o_.deadline);
    if (!r.ok()) {
      std::cerr << "ledger-bench: creating the sink account: "
                << r.status().message() << "\n";
      return false;
    }
    return true;
  }

  // Client i's closed loop. Transfer ids: high = client id, low = a random
  // base + counter, so reruns against the same cluster never collide.
  void ClientLoop(uint32_t i) {
    client::Client& c = *sdk_[i];
    const uint64_t me = c.client_id();
    const uint64_t peer = (i + 1) % o_.clients + 1;
    std::string rnd = crypto::RandomBytes(8);
    uint64_t counter = 0;
    for (char ch : rnd) counter = (counter << 8) | static_cast<uint8_t>(ch);
    counter &= 0x0000ffffffffffffull;
    while (!stop_.load()) {
      std::vector<ledger::v1::Transfer> ts(o_.batch);
      for (ledger::v1::Transfer& t : ts) {
        *t.mutable_id() = client::MakeId(me, ++counter);
        *t.mutable_debit_account_id() = client::MakeId(0, me);
        *t.mutable_credit_account_id() =
            o_.clients == 1 ? solo_sink_ : client::MakeId(0, peer);
        t.set_amount(1);
        t.set_ledger(1);
      }
      const absl::Time start = absl::Now();
      absl::StatusOr<ledger::v1::OperationResults> r =
          c.Transfers(ts, o_.deadline);
      const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
      if (measuring_.load()) Count(me, r, ms);
    }
  }

  void Count(uint64_t me, const absl::StatusOr<ledger::v1::OperationResults>& r,
             double ms) {
    std::lock_guard<std::mutex> l(stats_.mu);
    if (!r.ok()) {
      ++stats_.errors;
      if (stats_.errors <= 5) {
        std::cerr << "ledger-bench: client " << me << ": "
                  << r.status().message() << "\n";
      }
      return;
    }
    const absl::Time done = absl::Now();
    stats_.max_gap_ms = std::max(
        stats_.max_gap_ms, absl::ToDoubleMilliseconds(done - stats_.last_done));
    stats_.last_done = done;
    ++stats_.requests;
    stats_.transfers += o_.batch;
    stats_.latencies_ms.push_back(ms);
    for (const ledger::v1::OperationResult& res : r->results()) {
      if (res.code() != ledger::v1::RESULT_CODE_OK) ++stats_.not_ok;
    }
  }

  // The measured interval, with a progress line a second; its seconds.
  double Measure() {
    const absl::Time begin = absl::Now();
    {
      std::lock_guard<std::mutex> l(stats_.mu);
      stats_.last_done = begin;
    }
    measuring_ = true;
    uint64_t last = 0;
    for (int s = 1; absl::Now() - begin < o_.duration; ++s) {
      absl::SleepFor(
          std::min(absl::Seconds(1), o_.duration - (absl::Now() - begin)));
      std::lock_guard<std::mutex> l(stats_.mu);
      std::cerr << "  t=" << s << "s requests=" << stats_.requests << " (+"
                << stats_.requests - last << ") transfers=" << stats_.transfers
                << " errors=" << stats_.errors << "\n";
      last = stats_.requests;
    }
    measuring_ = false;
    const absl::Time end = absl::Now();
    std::lock_guard<std::mutex> l(stats_.mu);
    stats_.max_gap_ms = std::max(
        stats_.max_gap_ms, absl::ToDoubleMilliseconds(end - stats_.last_done));
    return absl::ToDoubleSeconds(end - begin);
  }

  // The result line (JSON, read by deploy/local/bench.sh).
  void Report(double secs) {
    std::lock_guard<std::mutex> l(stats_.mu);
    std::vector<double>& lat = stats_.latencies_ms;
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
        "\"duration_s\":%.1f,\"requests\":%llu,\"errors\":%llu,"
        "\"not_ok\":%llu,\"max_gap_ms\":%.0f}",
        static_cast<double>(stats_.transfers) / secs,
        static_cast<double>(stats_.requests) / secs, pct(0.50), pct(0.99),
        sdk_[0]->replica_count(), o_.clients, o_.batch, secs,
        static_cast<unsigned long long>(stats_.requests),
        static_cast<unsigned long long>(stats_.errors),
        static_cast<unsigned long long>(stats_.not_ok), stats_.max_gap_ms);
    std::cout << json << std::endl;
  }

  const BenchOptions o_;
  std::vector<std::unique_ptr<client::Client>> sdk_;
  ledger::v1::Uint128 solo_sink_;
  Stats stats_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> measuring_{false};
};

int Run() {
  std::optional<BenchOptions> o = ReadFlags();
  if (!o) return 2;
  return Bench(*std::move(o)).Run();
}

}  // namespace
}  // namespace pbft::bench

int main(int argc, char** argv) {
  // Abseil's lock-order graph is for tests (they keep it); in a production
  // process it cost 2% of a busy replica's CPU (docs/benchmarks.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  pbft::ParseFlags(
      argc, argv,
      "ledger-bench --config FILE --clients C --batch B --duration S");
  return pbft::bench::Run();
}
