#include "common/clock.h"

#include <chrono>

namespace pbft {

uint64_t SystemClock::NowMs() const {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
}

}  // namespace pbft
