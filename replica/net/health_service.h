// grpc.health.v1.Health (proto/grpc/health/v1/health.proto) for the
// replica's plaintext health port: Check and Watch, over the statuses the
// replica sets (docs/operations.md, "Probes").
//
// Served on gRPC's completion-queue API by one thread that drains the
// queue every `poll` without ever blocking on it. A thread blocked on a
// completion queue is one of the threads that take turns reading every
// socket of the process, and an idle one is the likeliest to be reading
// when a peer's or a client's message comes, which then has to wake the
// thread the message is for. gRPC's own health service runs on its
// callback threads, two such idle readers (docs/benchmarks.md, "The health
// service's threads"). The price: an answer waits up to `poll`.
//
// Bounded: at most `watchers_max` Watch calls at once (more are refused
// with RESOURCE_EXHAUSTED), a request at most `request_bytes_max` (the
// server's limit, set by Register), service names are the ones Set was
// called with.
//
// Thread-safe. Register before the server is built, Start after, and
// Shutdown after the server's Shutdown.
#ifndef PBFT_LEDGER_REPLICA_NET_HEALTH_SERVICE_H_
#define PBFT_LEDGER_REPLICA_NET_HEALTH_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace pbft::net {

class HealthService {
 public:
  struct Options {
    absl::Duration poll = absl::Milliseconds(20);
    int watchers_max = 16;
    int request_bytes_max = 1024;
  };
  explicit HealthService(Options options);
  ~HealthService();
  HealthService(const HealthService&) = delete;
  HealthService& operator=(const HealthService&) = delete;

  // Adds the service, its completion queue and the request size limit to
  // the server being built.
  void Register(grpc::ServerBuilder* builder);
  // Starts answering (the server is built and started).
  void Start();
  // Sets `service`'s status ("" is the whole server). Watchers of it are
  // told at the next drain.
  void Set(const std::string& service, bool serving);
  // Ends the open Watch calls, then stops the thread. After the server's
  // Shutdown (which cancels the calls and stops new ones).
  void Shutdown();

  // Counts: Check calls answered; those of them about an unknown service
  // (NOT_FOUND) and Watch calls refused for the bound, which the replica's
  // metrics mirror.
  uint64_t checks() const { return checks_.load(); }
  uint64_t unknown_services() const { return unknown_services_.load(); }
  uint64_t watchers_refused() const { return watchers_refused_.load(); }

 private:
  class Call;
  class CheckCall;
  class WatchCall;

  grpc::health::v1::ServingStatus StatusOf(const std::string& service,
                                           bool* known) const;
  void Run();
  // Stops starting operations and shuts the queue down (the thread's, or
  // Shutdown's when the thread never started).
  void Close();
  // Handles what the queue has now; false once it is shut down and empty.
  bool Drain();
  // Writes each watcher whose service's status changed since its last write
  // (at most watchers_max look-ups per drain).
  void NotifyWatchers();
  bool AdmitWatcher(WatchCall* w);
  void DropWatcher(WatchCall* w);

  const Options options_;
  grpc::health::v1::Health::AsyncService service_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> checks_{0};
  std::atomic<uint64_t> unknown_services_{0};
  std::atomic<uint64_t> watchers_refused_{0};

  mutable absl::Mutex mu_;
  std::map<std::string, bool> statuses_ ABSL_GUARDED_BY(mu_);

  // The thread's own: whether the queue is closing, and the open Watch
  // calls (each remembers the status it last wrote).
  bool closing_ = false;
  std::set<WatchCall*> watchers_;
};

}  // namespace pbft::net

#endif  // PBFT_LEDGER_REPLICA_NET_HEALTH_SERVICE_H_
