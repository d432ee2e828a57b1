// Wall-clock time for the shell. The PBFT core and the ledger never read a
// clock: time reaches them as data (the primary's pre-prepare timestamp).
#ifndef PBFT_LEDGER_COMMON_CLOCK_H_
#define PBFT_LEDGER_COMMON_CLOCK_H_

#include <atomic>
#include <cstdint>

namespace pbft {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual uint64_t NowMs() const = 0;
};

// The system's real-time clock. Thread-safe.
class SystemClock final : public Clock {
 public:
  uint64_t NowMs() const override;
};

// A clock that moves only when told to; for tests and the simulator.
// Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(uint64_t now_ms = 0) : now_ms_(now_ms) {}
  uint64_t NowMs() const override { return now_ms_.load(); }
  void Set(uint64_t now_ms) { now_ms_.store(now_ms); }
  void Advance(uint64_t delta_ms) { now_ms_.fetch_add(delta_ms); }

 private:
  std::atomic<uint64_t> now_ms_;
};

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_CLOCK_H_
