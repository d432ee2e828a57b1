// CPU time for the benchmark tools: of the calling thread or the process
// (CpuSeconds), and of each of a process's threads read from /proc, with
// the difference between two readings summed by thread name (ledger-bench
// reports where its own CPU went over the measured interval;
// docs/benchmarks.md, "Each cell line also carries").
#ifndef PBFT_LEDGER_TOOLS_BENCH_THREAD_CPU_H_
#define PBFT_LEDGER_TOOLS_BENCH_THREAD_CPU_H_

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"

namespace pbft::bench {

// CPU seconds of `clock`: CLOCK_THREAD_CPUTIME_ID (the calling thread) or
// CLOCK_PROCESS_CPUTIME_ID (every thread of the process). CPU rather than
// wall time: the machine may be shared, and wall time then counts other
// processes' time slices too.
inline double CpuSeconds(clockid_t clock) {
  timespec ts;
  CHECK_EQ(clock_gettime(clock, &ts), 0);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct ThreadCpu {
  std::string name;
  double seconds = 0;
};

// Every thread under `task_dir` (a /proc/PID/task directory) by thread id:
// its name and the CPU it has used, from `schedstat` (the scheduler's run
// time in ns) where the kernel keeps it, else `stat`'s utime + stime
// (clock ticks). A thread that ends while the directory is read is left
// out.
inline std::map<int64_t, ThreadCpu> ReadThreadCpu(
    const std::string& task_dir = "/proc/self/task") {
  std::map<int64_t, ThreadCpu> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(task_dir, ec)) {
    int64_t tid = 0;
    try {
      tid = std::stoll(entry.path().filename().string());
    } catch (const std::exception&) {
      continue;
    }
    ThreadCpu t;
    if (!std::getline(std::ifstream(entry.path() / "comm"), t.name)) continue;
    std::ifstream sched(entry.path() / "schedstat");
    uint64_t ns = 0;
    if (sched >> ns) {
      t.seconds = static_cast<double>(ns) / 1e9;
    } else {
      // Fields 14 and 15 (utime, stime), after the name in parentheses,
      // which may itself hold spaces and parentheses.
      std::string stat;
      if (!std::getline(std::ifstream(entry.path() / "stat"), stat)) continue;
      const size_t close = stat.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(stat.substr(close + 1));
      std::string field;
      uint64_t ticks[2] = {0, 0};  // utime, stime; 0 where unreadable.
      for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i < 14) continue;
        std::from_chars(field.data(), field.data() + field.size(),
                        ticks[i - 14]);
      }
      t.seconds = static_cast<double>(ticks[0] + ticks[1]) /
                  static_cast<double>(sysconf(_SC_CLK_TCK));
    }
    out.emplace(tid, std::move(t));
  }
  return out;
}

// The CPU each thread name used between `before` and `after`, largest
// first, under its name in `after`: a thread in both counts its
// difference, one only in `after` (started meanwhile) all of its time; one
// that ended meanwhile is lost.
inline std::vector<std::pair<std::string, double>> CpuByName(
    const std::map<int64_t, ThreadCpu>& before,
    const std::map<int64_t, ThreadCpu>& after) {
  std::map<std::string, double> sum;
  for (const auto& [tid, t] : after) {
    auto it = before.find(tid);
    const double used =
        it == before.end() ? t.seconds : t.seconds - it->second.seconds;
    sum[t.name] += std::max(0.0, used);
  }
  std::vector<std::pair<std::string, double>> out(sum.begin(), sum.end());
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.second > b.second;
  });
  return out;
}

}  // namespace pbft::bench

#endif  // PBFT_LEDGER_TOOLS_BENCH_THREAD_CPU_H_
