// ledger-bench: closed- or open-loop load through the SDK.
//
//   ledger-bench --config cluster.json --clients C --batch B --duration S
//                [--keys-dir DIR] [--warmup S] [--sessions=false]
//                [--send_to_all]
//                [--ids time|client]
//                [--rate R [--arrivals poisson|fixed] [--seed N]
//                 [--interval S] [--issuers K]]
//
// Closed loop (no --rate): C concurrent client loops (each its own
// pbft::client::Client and key: client ids 1..C of the config, keys
// DIR/client-<id>.key) each submit one request of B transfers, wait for f+1
// matching replies, and repeat, for S seconds. Every transfer moves 1 unit
// from the client's genesis account (id = client id) to the next client's.
// Prints progress each second and, as its last line, one JSON object:
// transfers_per_s, requests_per_s, p50_ms, p99_ms, replicas, clients,
// batch, plus counts of errors and non-OK results.
//
// Open loop (--rate R): requests arrive at R per second whatever completes;
// tools/bench/open_loop.h says what is counted and printed.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/crypto.h"
#include "common/flags.h"
#include "common/proto_names.h"
#include "common/thread_name.h"
#include "tools/bench/load_common.h"
#include "tools/bench/open_loop.h"
#include "tools/bench/thread_cpu.h"

ABSL_FLAG(std::string, config, "", "Cluster config (cluster.json).");
ABSL_FLAG(std::string, keys_dir, "",
          "Directory of client key files (default: <config dir>/keys).");
ABSL_FLAG(uint32_t, clients, 4, "Concurrent client loops (C).");
ABSL_FLAG(uint32_t, batch, 100, "Transfers per request (B).");
ABSL_FLAG(double, duration, 10, "Measured seconds (S).");
ABSL_FLAG(double, warmup, 1, "Seconds of load before measuring.");
ABSL_FLAG(double, deadline, 10, "Per-request deadline in seconds.");
ABSL_FLAG(double, rate, 0,
          "Open loop: offered requests/s (0: closed loop). --clients is then "
          "the cap on calls in flight.");
ABSL_FLAG(std::string, arrivals, "poisson",
          "Open loop: poisson (exponential gaps) or fixed (evenly spaced).");
ABSL_FLAG(uint64_t, seed, 1, "Open loop: seed of the Poisson arrivals.");
ABSL_FLAG(double, interval, 1, "Open loop: seconds per interval line.");
ABSL_FLAG(uint32_t, issuers, 2, "Open loop: threads issuing the arrivals.");
ABSL_FLAG(bool, sessions, true,
          "Send on one Session stream per replica (the SDK's default); "
          "false: one unary call per request per replica.");
ABSL_FLAG(bool, send_to_all, false,
          "Send every ordered request to every replica at once; default: to "
          "f+1 first (the SDK's ClientOptions::send_to_all).");
ABSL_FLAG(double, hedge_after_first,
          pbft::client::ClientOptions().hedge_after_first,
          "Ask the other replicas when one first replica answered and the "
          "rest have not within this fraction of its latency; 0: never (the "
          "SDK's ClientOptions::hedge_after_first).");
ABSL_FLAG(std::string, ids, "time",
          "Transfer ids: time (client::NewId, ordered by time, as docs/api.md "
          "recommends) or client (high = client id, low = a counter from a "
          "random base: 64 interleaved runs of keys).");
ABSL_FLAG(bool, retry_refused, true,
          "Re-send requests that replicas refuse for load until the deadline "
          "(the SDK's default); false: fail them with RESOURCE_EXHAUSTED.");

ABSL_FLAG(double, throttle_k, 0,
          "With --retry_refused=false: one client-side throttle shared by "
          "every client, refusing new calls beyond k times what the cluster "
          "accepted over the last 10 s (the SDK's ClientOptions::throttle); "
          "0: none.");

namespace pbft::bench {
namespace {

struct Stats {
  std::mutex mu;
  std::vector<double> latencies_ms;
  uint64_t requests = 0, transfers = 0, errors = 0, not_ok = 0;
  // The longest time without a completed request while measuring.
  absl::Time last_done;
  double max_gap_ms = 0;
  // The SDK's counts over the clients, at the start of the measured
  // interval and at its end.
  client::ClientStats sdk_begin, sdk_end;
  // ledger-bench's threads at the start of the measured interval, and the
  // CPU each thread name used in it.
  std::map<int64_t, ThreadCpu> cpu_begin;
  std::vector<std::pair<std::string, double>> cpu_by_thread;
};

// The open loop's flags into `o`; false after printing what is wrong.
bool ReadOpenLoopFlags(BenchOptions& o) {
  o.rate = absl::GetFlag(FLAGS_rate);
  std::optional<ArrivalKind> kind =
      ParseArrivalKind(absl::GetFlag(FLAGS_arrivals));
  if (!kind) {
    std::cerr << "ledger-bench: --arrivals must be poisson or fixed\n";
    return false;
  }
  o.arrivals = *kind;
  o.seed = absl::GetFlag(FLAGS_seed);
  o.interval = absl::Seconds(absl::GetFlag(FLAGS_interval));
  o.issuers = absl::GetFlag(FLAGS_issuers);
  if (o.rate < 0 || o.interval <= absl::ZeroDuration() || o.issuers == 0) {
    std::cerr << "ledger-bench: --rate must be >= 0, --interval and "
                 "--issuers positive\n";
    return false;
  }
  return true;
}

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
  o.retry_refused = absl::GetFlag(FLAGS_retry_refused);
  o.throttle_k = absl::GetFlag(FLAGS_throttle_k);
  if (o.throttle_k != 0 && (!(o.throttle_k >= 1) || o.retry_refused)) {
    std::cerr << "ledger-bench: --throttle_k must be 0 or at least 1, and "
                 "needs --retry_refused=false\n";
    return std::nullopt;
  }
  o.sessions = absl::GetFlag(FLAGS_sessions);
  o.send_to_all = absl::GetFlag(FLAGS_send_to_all);
  o.hedge_after_first = absl::GetFlag(FLAGS_hedge_after_first);
  if (!(o.hedge_after_first >= 0)) {
    std::cerr << "ledger-bench: --hedge_after_first: must be >= 0\n";
    return std::nullopt;
  }
  const std::string ids = absl::GetFlag(FLAGS_ids);
  if (ids != "time" && ids != "client") {
    std::cerr << "ledger-bench: --ids: '" << ids
              << "' is neither time nor client\n";
    return std::nullopt;
  }
  o.time_ids = ids == "time";
  if (!ReadOpenLoopFlags(o)) return std::nullopt;
  return o;
}

class Bench {
 public:
  explicit Bench(BenchOptions o) : o_(std::move(o)) {}

  // 0 on success, else the exit code.
  int Run() {
    std::optional<std::vector<LoadClient>> clients = OpenLoadClients(o_);
    if (!clients) return 1;
    clients_ = *std::move(clients);
    std::cerr << "ledger-bench: " << o_.clients << " clients x " << o_.batch
              << " transfers/request, " << absl::FormatDuration(o_.duration)
              << " against " << clients_[0].sdk->replica_count()
              << " replicas\n";
    std::vector<std::thread> loops;
    for (uint32_t i = 0; i < o_.clients; ++i) {
      loops.emplace_back([this, i] {
        NameThisThread("bench-loop");
        ClientLoop(i);
      });
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
  // Client i's closed loop.
  void ClientLoop(uint32_t i) {
    LoadClient& c = clients_[i];
    const uint64_t me = c.sdk->client_id();
    while (!stop_.load()) {
      const ledger::v1::OperationBatch b = c.NextBatch(o_.batch);
      const absl::Time start = absl::Now();
      absl::StatusOr<ledger::v1::OperationResults> r =
          c.sdk->Submit(b, o_.deadline);
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
      stats_.sdk_begin = SumStats(clients_);
      stats_.cpu_begin = ReadThreadCpu();
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
    stats_.sdk_end = SumStats(clients_);
    stats_.cpu_by_thread = CpuByName(stats_.cpu_begin, ReadThreadCpu());
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
    const std::string json = absl::StrFormat(
        "{\"transfers_per_s\":%.1f,\"requests_per_s\":%.1f,\"p50_ms\":%.2f,"
        "\"p99_ms\":%.2f,\"replicas\":%u,\"clients\":%u,\"batch\":%u,"
        "\"duration_s\":%.1f,\"requests\":%llu,\"errors\":%llu,"
        "\"not_ok\":%llu,\"max_gap_ms\":%.0f,\"sessions\":%s,"
        "\"send_to_all\":%s,\"hedge_after_first\":%.2f,\"ids\":\"%s\",%s,"
        "%s}",
        static_cast<double>(stats_.transfers) / secs,
        static_cast<double>(stats_.requests) / secs, pct(0.50), pct(0.99),
        clients_[0].sdk->replica_count(), o_.clients, o_.batch, secs,
        static_cast<unsigned long long>(stats_.requests),
        static_cast<unsigned long long>(stats_.errors),
        static_cast<unsigned long long>(stats_.not_ok), stats_.max_gap_ms,
        o_.sessions ? "true" : "false", o_.send_to_all ? "true" : "false",
        o_.hedge_after_first, o_.time_ids ? "time" : "client",
        SdkStatsJson(stats_.sdk_end - stats_.sdk_begin).c_str(),
        CpuJson().c_str());
    std::cout << json << std::endl;
  }

  // ledger-bench's own CPU over the measured interval per request counted,
  // in all and by thread name, as JSON fields without braces. Under
  // stats_.mu.
  std::string CpuJson() const {
    const double n =
        static_cast<double>(std::max<uint64_t>(1, stats_.requests));
    double total = 0;
    std::string by;
    for (const auto& [name, seconds] : stats_.cpu_by_thread) {
      total += seconds;
      std::string key = name;  // A JSON key: only plain characters.
      for (char& c : key) {
        if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
          c = '_';
        }
      }
      absl::StrAppendFormat(&by, "%s\"%s\":%.1f", by.empty() ? "" : ",", key,
                            seconds * 1e6 / n);
    }
    return absl::StrFormat(
        "\"bench_cpu_us_per_request\":%.1f,"
        "\"bench_cpu_us_per_request_by_thread\":{%s}",
        total * 1e6 / n, by);
  }

  const BenchOptions o_;
  std::vector<LoadClient> clients_;
  Stats stats_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> measuring_{false};
};

int Run() {
  std::optional<BenchOptions> o = ReadFlags();
  if (!o) return 2;
  if (o->rate > 0) return RunOpenLoop(*std::move(o));
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
      "ledger-bench --config FILE --clients C --batch B --duration S "
      "[--rate R]");
  return pbft::bench::Run();
}
