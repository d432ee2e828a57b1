// Arrival times of an open-loop load: a fixed schedule (one arrival every
// 1/rate seconds) or a Poisson process (exponential gaps of mean 1/rate)
// from a seed. The same kind, rate and seed give the same times on every
// run and machine (a 64-bit Mersenne Twister, and the uniform variate built
// from its top 53 bits, not a library distribution).
#ifndef PBFT_LEDGER_TOOLS_BENCH_ARRIVALS_H_
#define PBFT_LEDGER_TOOLS_BENCH_ARRIVALS_H_

#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <string>

namespace pbft::bench {

enum class ArrivalKind { kFixed, kPoisson };

// "fixed" or "poisson"; nullopt for anything else.
inline std::optional<ArrivalKind> ParseArrivalKind(const std::string& s) {
  if (s == "fixed") return ArrivalKind::kFixed;
  if (s == "poisson") return ArrivalKind::kPoisson;
  return std::nullopt;
}

class ArrivalSchedule {
 public:
  // rate_per_s > 0.
  ArrivalSchedule(ArrivalKind kind, double rate_per_s, uint64_t seed)
      : kind_(kind), rate_(rate_per_s), rng_(seed) {}

  // Seconds from the start of the next arrival; non-decreasing.
  double Next() {
    if (kind_ == ArrivalKind::kFixed) {
      return static_cast<double>(count_++) / rate_;
    }
    ++count_;
    // u in (0, 1]: -log(u) is finite.
    const double u =
        (static_cast<double>(rng_() >> 11) + 1.0) * 0x1.0p-53;  // 2^-53
    t_ += -std::log(u) / rate_;
    return t_;
  }

  uint64_t count() const { return count_; }

 private:
  ArrivalKind kind_;
  double rate_;
  std::mt19937_64 rng_;
  uint64_t count_ = 0;
  double t_ = 0;
};

}  // namespace pbft::bench

#endif  // PBFT_LEDGER_TOOLS_BENCH_ARRIVALS_H_
