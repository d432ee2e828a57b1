// ledgerd: one pbft-ledger replica.
//
//   ledgerd --config FILE --id I --data-dir DIR [--key FILE]
//           [--listen-host H] [--log-level L] [--log-json]
//           [--memory-trim-s S] [--storage-nice N]
//           [--inline-execution-bytes B]
//
// Exit status: 0 after a graceful stop (SIGTERM or SIGINT), 1 if it cannot
// start (the message names the file, field or address), 2 on usage errors.
#include <signal.h>

#include <csignal>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/logging.h"
#include "replica/replica_server.h"

ABSL_FLAG(std::string, config, "", "Cluster config file (cluster.json).");
ABSL_FLAG(uint32_t, id, 0, "This replica's id in the config.");
ABSL_FLAG(std::string, data_dir, "",
          "Directory for this replica's ledger and state.");
ABSL_FLAG(std::string, key, "",
          "This replica's private key file (default <config "
          "dir>/keys/replica-<id>.key).");
ABSL_FLAG(std::string, listen_host, "",
          "Host to bind the API, health and metrics ports (default: the "
          "configured host).");
ABSL_FLAG(std::string, log_level, "info",
          "trace, debug, info, warn, error, off.");
ABSL_FLAG(bool, log_json, false, "Structured JSON logs, one object per line.");
ABSL_FLAG(int32_t, verify_threads, 0,
          "Peer message verification: 0 = on the thread of each peer's "
          "stream; N = a pool of N threads.");
ABSL_FLAG(uint32_t, peer_queue_mb, 24,
          "MiB of messages queued per peer in each of the verification, "
          "intake and send queues (the memory budget of peer traffic; at "
          "least message_bytes_max).");
ABSL_FLAG(double, memory_trim_s, 10,
          "Seconds between returns of the allocator's free pages to the "
          "system (0: never).");
ABSL_FLAG(int32_t, storage_nice, 10,
          "Added to the nice value of LevelDB's background thread (memtable "
          "writes and compactions), 0-19 (0: unchanged).");
ABSL_FLAG(int64_t, inline_execution_bytes, -1,
          "Committed blocks whose requests total at most this many bytes "
          "execute on the core thread, larger ones on an execution thread, "
          "overlapped with agreement on the next blocks. -1 (no limit): "
          "every block on the core thread, no execution thread.");
ABSL_FLAG(double, fetch_rate, 20,
          "FETCH requests served per peer per second (burst: half as many).");

int main(int argc, char** argv) {
  // Abseil's lock-order graph is for tests (they keep it); in a production
  // process it cost 2% of a busy replica's CPU (docs/benchmarks.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  pbft::ParseFlags(argc, argv,
                   "ledgerd --config FILE --id I --data-dir DIR [--key FILE]");
  if (absl::GetFlag(FLAGS_config).empty() ||
      absl::GetFlag(FLAGS_data_dir).empty()) {
    std::cerr << "ledgerd: --config and --data-dir are required (see --help)\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_memory_trim_s) < 0) {
    std::cerr << "ledgerd: --memory-trim-s must be 0 (never) or positive\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_inline_execution_bytes) < -1) {
    std::cerr << "ledgerd: --inline-execution-bytes must be -1 (no limit, "
                 "no execution thread) or a byte count\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_storage_nice) < 0 ||
      absl::GetFlag(FLAGS_storage_nice) > 19) {
    std::cerr << "ledgerd: --storage-nice must be 0 to 19\n";
    return 2;
  }
  absl::Status log = pbft::InitLogging({.level = absl::GetFlag(FLAGS_log_level),
                                        .json = absl::GetFlag(FLAGS_log_json),
                                        .component = "ledgerd"});
  if (!log.ok()) {
    std::cerr << "ledgerd: " << log.message() << "\n";
    return 2;
  }
  // Handle SIGTERM/SIGINT synchronously on this thread: block them before
  // any other thread starts so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  pbft::replica::ReplicaServerOptions o;
  o.config_path = absl::GetFlag(FLAGS_config);
  o.id = absl::GetFlag(FLAGS_id);
  o.data_dir = absl::GetFlag(FLAGS_data_dir);
  o.key_path = absl::GetFlag(FLAGS_key);
  o.listen_host = absl::GetFlag(FLAGS_listen_host);
  o.verify_threads = std::max(0, absl::GetFlag(FLAGS_verify_threads));
  o.peer_queue_bytes_max = size_t{absl::GetFlag(FLAGS_peer_queue_mb)} << 20;
  o.fetch_rate_per_s = std::max(1.0, absl::GetFlag(FLAGS_fetch_rate));
  o.fetch_burst = std::max(1.0, o.fetch_rate_per_s / 2);
  o.storage_nice = absl::GetFlag(FLAGS_storage_nice);
  o.inline_execution_bytes = absl::GetFlag(FLAGS_inline_execution_bytes);
  absl::StatusOr<std::unique_ptr<pbft::replica::ReplicaServer>> server =
      pbft::replica::ReplicaServer::Start(o);
  if (!server.ok()) {
    LOG_ERROR("cannot start: {}", server.status().message());
    std::cerr << "ledgerd: " << server.status().message() << "\n";
    return 1;
  }
  // This thread is idle until a signal: it returns the allocator's free
  // pages to the system meanwhile.
  const double trim_s = absl::GetFlag(FLAGS_memory_trim_s);
  int sig = 0;
  if (trim_s > 0) {
    const absl::Duration every = absl::Seconds(trim_s);
    const timespec wait = absl::ToTimespec(every);
    while ((sig = sigtimedwait(&signals, nullptr, &wait)) < 0) {
      (*server)->ReleaseFreeMemory();
    }
  } else {
    sigwait(&signals, &sig);
  }
  LOG_INFO("received signal {}; stopping", sig);
  (*server)->Stop();
  return 0;
}
