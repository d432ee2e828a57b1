// The CPU time of a process's threads, read from /proc, and the difference
// between two readings summed by thread name: ledger-bench reports where
// its own CPU went over the measured interval (docs/benchmarks.md, "Each
// cell line also carries").
#ifndef PBFT_LEDGER_TOOLS_BENCH_THREAD_CPU_H_
#define PBFT_LEDGER_TOOLS_BENCH_THREAD_CPU_H_

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace pbft::bench {

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
      uint64_t utime = 0, stime = 0;
      for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
      }
      t.seconds = static_cast<double>(utime + stime) /
                  static_cast<double>(sysconf(_SC_CLK_TCK));
    }
    out.emplace(tid, std::move(t));
  }
  return out;
}

// The CPU each thread name used between `before` and `after`, largest
// first: a thread in both counts its difference, one only in `after`
// (started meanwhile) all of its time; one that ended meanwhile is lost.
inline std::vector<std::pair<std::string, double>> CpuByName(
    const std::map<int64_t, ThreadCpu>& before,
    const std::map<int64_t, ThreadCpu>& after) {
  std::map<std::string, double> sum;
  for (const auto& [tid, t] : after) {
    auto it = before.find(tid);
    const double used = it == before.end() || it->second.name != t.name
                            ? t.seconds
                            : t.seconds - it->second.seconds;
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
