#include "common/trace.h"

#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

namespace pbft::trace {
namespace {

FILE* File() {
  static FILE* const file = []() -> FILE* {
    const char* prefix = std::getenv("PBFT_TRACE_EVENTS");
    if (prefix == nullptr || *prefix == '\0') return nullptr;
    const std::string path =
        std::string(prefix) + "." + std::to_string(getpid());
    FILE* f = std::fopen(path.c_str(), "a");
    if (f != nullptr) std::setvbuf(f, nullptr, _IOLBF, 0);
    return f;
  }();
  return file;
}

}  // namespace

bool Enabled() { return File() != nullptr; }

void Event(const char* what, uint64_t a, uint64_t b) {
  FILE* f = File();
  if (f == nullptr) return;
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const int64_t us = static_cast<int64_t>(ts.tv_sec) * 1'000'000 +
                     static_cast<int64_t>(ts.tv_nsec) / 1'000;
  std::fprintf(f, "%" PRId64 " %s %" PRIu64 " %" PRIu64 "\n", us, what, a, b);
}

}  // namespace pbft::trace
