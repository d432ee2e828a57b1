#include "tools/bench/open_loop.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace pbft::bench {
namespace {

// What happened in one interval, or in the whole measured run.
struct Tally {
  uint64_t arrivals = 0, served = 0, refused = 0, errors = 0, dropped = 0;
  uint64_t not_ok = 0, outcome_unknown = 0;
  std::map<std::string, uint64_t> by_status;  // Non-OK completions.
  std::vector<double> latencies_ms;           // Of the served.
  double cpu_s = 0;                           // The bench process's CPU.

  void Add(const Tally& o) {
    arrivals += o.arrivals;
    served += o.served;
    refused += o.refused;
    errors += o.errors;
    dropped += o.dropped;
    not_ok += o.not_ok;
    outcome_unknown += o.outcome_unknown;
    for (const auto& [k, v] : o.by_status) by_status[k] += v;
    latencies_ms.insert(latencies_ms.end(), o.latencies_ms.begin(),
                        o.latencies_ms.end());
    cpu_s += o.cpu_s;
  }
};

// User + system CPU seconds of this process so far.
double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) +
           1e-6 * static_cast<double>(t.tv_usec);
  };
  return s(u.ru_utime) + s(u.ru_stime);
}

// The p-th quantile of `v` (sorted in place); 0 when empty.
double Quantile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(
      v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

std::string StatusJson(const std::map<std::string, uint64_t>& m) {
  std::string out = "{";
  for (const auto& [k, v] : m) {
    absl::StrAppend(&out, out.size() > 1 ? "," : "", "\"", k, "\":", v);
  }
  return out + "}";
}

// The fields an interval line and the summary share.
std::string TallyJson(Tally& t, double secs) {
  const double p50 = Quantile(t.latencies_ms, 0.50);
  const double p99 = Quantile(t.latencies_ms, 0.99);
  return absl::StrFormat(
      "\"arrivals\":%u,\"served\":%u,\"refused\":%u,\"errors\":%u,"
      "\"dropped_at_cap\":%u,\"outcome_unknown\":%u,\"not_ok\":%u,"
      "\"requests_per_s\":%.1f,\"refused_per_s\":%.1f,"
      "\"dropped_at_cap_per_s\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
      "\"p99_over_p50\":%.2f,\"by_status\":%s,\"bench_cpu_s\":%.2f,"
      "\"bench_cores\":%.2f",
      t.arrivals, t.served, t.refused, t.errors, t.dropped, t.outcome_unknown,
      t.not_ok, static_cast<double>(t.served) / secs,
      static_cast<double>(t.refused) / secs,
      static_cast<double>(t.dropped) / secs, p50, p99,
      p50 > 0 ? p99 / p50 : 0.0, StatusJson(t.by_status), t.cpu_s,
      t.cpu_s / secs);
}

class OpenLoop {
 public:
  OpenLoop(BenchOptions o, std::vector<LoadClient> clients)
      : o_(std::move(o)), clients_(std::move(clients)) {
    const double n = std::ceil(absl::FDivDuration(o_.duration, o_.interval));
    intervals_.resize(std::max<size_t>(1, static_cast<size_t>(n)));
    for (uint32_t i = 0; i < clients_.size(); ++i) idle_.push_back(i);
  }

  int Run() {
    std::cerr << absl::StreamFormat(
        "ledger-bench: open loop, %.1f requests/s offered (%s), cap %u calls "
        "in flight, %u transfers/request, %s\n",
        o_.rate, o_.arrivals == ArrivalKind::kFixed ? "fixed" : "poisson",
        o_.clients, o_.batch, absl::FormatDuration(o_.duration));
    start_ = absl::Now() + absl::Milliseconds(50);
    begin_ = start_ + o_.warmup;
    end_ = begin_ + o_.duration;
    std::vector<std::thread> issuers;
    for (uint32_t i = 0; i < o_.issuers; ++i) {
      issuers.emplace_back([this, i] { Issuer(i); });
    }
    Progress();
    for (std::thread& t : issuers) t.join();
    const uint64_t unfinished = Drain();
    Report(unfinished);
    const bool served = Total().served > 0;
    clients_.clear();  // Cancels what is left while the tallies exist.
    return served ? 0 : 1;
  }

 private:
  // Walks the whole schedule and issues arrival k when k mod K == id.
  void Issuer(uint32_t id) {
    ArrivalSchedule s(o_.arrivals, o_.rate, o_.seed);
    for (uint64_t k = 0;; ++k) {
      const absl::Time when = start_ + absl::Seconds(s.Next());
      if (when >= end_) return;
      if (k % o_.issuers != id) continue;
      const absl::Time now = absl::Now();
      if (when > now) absl::SleepFor(when - now);
      const int64_t lag_us = absl::ToInt64Microseconds(absl::Now() - when);
      if (lag_us > 10000) late_10ms_.fetch_add(1);
      int64_t prev = max_lag_us_.load();
      while (lag_us > prev &&
             !max_lag_us_.compare_exchange_weak(prev, lag_us)) {
      }
      Issue(when);
    }
  }

  void Issue(absl::Time scheduled) {
    uint32_t c;
    {
      absl::MutexLock l(&mu_);
      ++arrivals_all_;
      Tally* t = TallyAt(scheduled);
      if (t != nullptr) ++t->arrivals;
      if (idle_.empty()) {
        ++dropped_all_;
        if (t != nullptr) ++t->dropped;
        return;
      }
      c = idle_.back();
      idle_.pop_back();
      ++in_flight_;
    }
    LoadClient& lc = clients_[c];
    lc.sdk->SubmitAsync(
        lc.NextBatch(o_.batch), o_.deadline,
        [this, c, scheduled](absl::StatusOr<ledger::v1::OperationResults> r) {
          OnDone(c, scheduled, r);
        });
  }

  void OnDone(uint32_t c, absl::Time scheduled,
              const absl::StatusOr<ledger::v1::OperationResults>& r) {
    const absl::Time now = absl::Now();
    absl::MutexLock l(&mu_);
    idle_.push_back(c);
    --in_flight_;
    ++completed_all_;
    if (r.ok()) ++served_all_;
    if (r.status().code() == absl::StatusCode::kResourceExhausted) {
      ++refused_all_;
    }
    if (now >= end_) ++drained_;
    Tally* t = TallyAt(now);
    if (t == nullptr) return;
    if (r.ok()) {
      ++t->served;
      t->latencies_ms.push_back(absl::ToDoubleMilliseconds(now - scheduled));
      for (const ledger::v1::OperationResult& res : r->results()) {
        if (res.code() != ledger::v1::RESULT_CODE_OK) ++t->not_ok;
      }
      return;
    }
    const absl::StatusCode code = r.status().code();
    ++t->by_status[absl::StatusCodeToString(code)];
    if (client::IsOutcomeUnknown(r.status())) ++t->outcome_unknown;
    if (code == absl::StatusCode::kResourceExhausted) {
      ++t->refused;
    } else {
      ++t->errors;
      if (++errors_logged_ <= 5) {
        std::cerr << "ledger-bench: " << r.status().message() << "\n";
      }
    }
  }

  // The tally of the interval holding `t`; null outside the measured span.
  Tally* TallyAt(absl::Time t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (t < begin_ || t >= end_) return nullptr;
    absl::Duration rem;
    const size_t i =
        static_cast<size_t>(absl::IDivDuration(t - begin_, o_.interval, &rem));
    return &intervals_[std::min(i, intervals_.size() - 1)];
  }

  // Sleeps through the intervals; their CPU, and a progress line each.
  void Progress() {
    absl::SleepFor(begin_ - absl::Now());
    double cpu = CpuSeconds();
    for (size_t i = 0; i < intervals_.size(); ++i) {
      const absl::Time to = std::min(end_, begin_ + (i + 1) * o_.interval);
      absl::SleepFor(to - absl::Now());
      const double now_cpu = CpuSeconds();
      absl::MutexLock l(&mu_);
      Tally& t = intervals_[i];
      t.cpu_s = now_cpu - cpu;
      cpu = now_cpu;
      std::cerr << "  interval " << i + 1 << ": arrivals=" << t.arrivals
                << " served=" << t.served << " refused=" << t.refused
                << " errors=" << t.errors << " dropped_at_cap=" << t.dropped
                << " in_flight=" << in_flight_ << " bench_cpu_s=" << t.cpu_s
                << "\n";
    }
  }

  // Waits for the calls in flight (up to the deadline + 2 s); how many are
  // still unfinished.
  uint64_t Drain() {
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](uint64_t* n) { return *n == 0; }, &in_flight_),
                         o_.deadline + absl::Seconds(2));
    return in_flight_;
  }

  Tally Total() {
    absl::MutexLock l(&mu_);
    Tally all;
    for (const Tally& t : intervals_) all.Add(t);
    return all;
  }

  void Report(uint64_t unfinished) {
    std::vector<Tally> intervals;
    {
      absl::MutexLock l(&mu_);
      intervals = intervals_;
    }
    Tally all;
    for (size_t i = 0; i < intervals.size(); ++i) {
      all.Add(intervals[i]);
      const absl::Time from = begin_ + i * o_.interval;
      const double secs =
          absl::ToDoubleSeconds(std::min(end_, from + o_.interval) - from);
      std::cout << absl::StreamFormat(
          "{\"kind\":\"interval\",\"t_s\":%.1f,\"interval_s\":%.1f,%s}\n",
          absl::ToDoubleSeconds(from - begin_) + secs, secs,
          TallyJson(intervals[i], secs));
    }
    std::cout << Summary(all, unfinished) << std::endl;
  }

  std::string Summary(Tally& all, uint64_t unfinished) {
    const double secs = absl::ToDoubleSeconds(o_.duration);
    absl::MutexLock l(&mu_);
    return absl::StrFormat(
        "{\"mode\":\"open\",\"arrival_process\":\"%s\",\"seed\":%u,"
        "\"retry_refused\":%s,\"throttle_k\":%.2f,\"send_to_all\":%s,"
        "\"hedge_after_first\":%.2f,"
        "\"offered_per_s\":%.1f,\"arrivals_per_s\":%.1f,%s,"
        "\"transfers_per_s\":%.1f,\"max_schedule_lag_ms\":%.1f,"
        "\"arrivals_late_10ms\":%u,"
        "\"replicas\":%u,\"clients\":%u,\"batch\":%u,\"duration_s\":%.1f,"
        "\"drained\":%u,\"accounting\":{\"arrivals\":%u,\"dropped_at_cap\":%u,"
        "\"completed\":%u,\"served\":%u,\"refused\":%u,\"unfinished\":%u},%s}",
        o_.arrivals == ArrivalKind::kFixed ? "fixed" : "poisson", o_.seed,
        o_.retry_refused ? "true" : "false", o_.throttle_k,
        o_.send_to_all ? "true" : "false", o_.hedge_after_first, o_.rate,
        static_cast<double>(all.arrivals) / secs, TallyJson(all, secs),
        static_cast<double>(all.served) * o_.batch / secs,
        static_cast<double>(max_lag_us_.load()) / 1e3, late_10ms_.load(),
        clients_[0].sdk->replica_count(), o_.clients, o_.batch, secs, drained_,
        arrivals_all_, dropped_all_, completed_all_, served_all_, refused_all_,
        unfinished, SdkStatsJson(SumStats(clients_)));
  }

  const BenchOptions o_;
  std::vector<LoadClient> clients_;
  // First arrival; the measured span is [begin_, end_).
  absl::Time start_, begin_, end_;
  std::atomic<int64_t> max_lag_us_{0};
  std::atomic<uint64_t> late_10ms_{0};  // Arrivals issued > 10 ms late.

  absl::Mutex mu_;
  std::vector<uint32_t> idle_ ABSL_GUARDED_BY(mu_);  // Clients not in use.
  std::vector<Tally> intervals_ ABSL_GUARDED_BY(mu_);
  uint64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Warm-up and drain included: arrivals_all_ = dropped_all_ +
  // completed_all_ + what never completed; of the completed, those served
  // (OK) and refused (RESOURCE_EXHAUSTED).
  uint64_t arrivals_all_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_all_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t completed_all_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t served_all_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t refused_all_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t drained_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t errors_logged_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

int RunOpenLoop(BenchOptions o) {
  std::optional<std::vector<LoadClient>> clients = OpenLoadClients(o);
  if (!clients) return 1;
  return OpenLoop(std::move(o), *std::move(clients)).Run();
}

}  // namespace pbft::bench
