// One Client's Session stream to one replica (ledger.v1.LedgerService.
// Session, docs/api.md "Sessions"): many requests and queries on one
// long-lived gRPC call instead of a unary call each.
//
// Send() writes a request on the stream (opening it on first use, and
// again after it ended) and later calls `done` once with the replica's
// answer: the reply envelope, or the status a unary Submit or Query would
// have failed with. When the stream ends, every request still waiting gets
// UNAVAILABLE (the caller retries as after a failed call); at its deadline
// a request gets DEADLINE_EXCEEDED; once the replica is known not to
// implement Session (UNIMPLEMENTED), Send() returns false and the caller
// uses the unary calls.
//
// Thread-safe. Runs on the Client's completion queue: the Client's poller
// calls CqTag::OnEvent for every tag. Close() before the queue shuts down.
#ifndef PBFT_LEDGER_CLIENT_REPLICA_SESSION_H_
#define PBFT_LEDGER_CLIENT_REPLICA_SESSION_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ledger/v1/service.grpc.pb.h"

namespace pbft::client {

// A tag on the Client's completion queue: the poller calls OnEvent once.
class CqTag {
 public:
  virtual ~CqTag() = default;
  virtual void OnEvent(bool ok) = 0;
};

// Runs callbacks later, on another thread (the Client's timer thread).
class Timers {
 public:
  // One scheduled callback: when it runs, and its place among those due at
  // the same time.
  struct Id {
    std::chrono::steady_clock::time_point when;
    uint64_t seq = 0;
    auto operator<=>(const Id&) const = default;
  };
  virtual ~Timers() = default;
  // Runs `fn` after `d` unless cancelled first.
  virtual Id After(absl::Duration d, std::function<void()> fn) = 0;
  // Nothing if it ran already.
  virtual void Cancel(const Id& id) = 0;
};

class ReplicaSession {
 public:
  // The answer to one request: `status` OK and `reply`, or an error.
  using Done =
      std::function<void(grpc::Status status, pbft::v1::Envelope reply)>;
  // `timers` runs each request's deadline (cancelled once answered).
  ReplicaSession(ledger::v1::LedgerService::Stub* stub,
                 grpc::CompletionQueue* cq, Timers* timers)
      : stub_(stub), cq_(cq), timers_(timers) {}
  ReplicaSession(const ReplicaSession&) = delete;
  ReplicaSession& operator=(const ReplicaSession&) = delete;

  // Sends `request` (a signed pbft.v1.Request envelope) with the hint
  // `primary_view` if set (ledger.v1.SubmitRequest.primary_view); `done`
  // runs once, on the poller or the timer thread. False if the replica does
  // not implement Session or the session is closed (`done` is not called).
  bool Send(const pbft::v1::Envelope& request,
            std::optional<uint64_t> primary_view, absl::Time deadline,
            Done done);
  // Fails what waits with CANCELLED, cancels the stream and waits until
  // every operation on it has completed. Send() returns false afterwards.
  void Close();

  bool unsupported() const {
    absl::MutexLock l(&mu_);
    return unsupported_;
  }

 private:
  struct Stream;
  class OpTag;
  // A request sent or queued: who gets its answer, and its deadline timer.
  struct Waiting {
    Done done;
    Timers::Id timer;
  };
  using Failed = std::vector<Done>;

  void Open() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts one operation on `s` (`start(tag)`); `then(ok)` runs on its
  // completion, and ops_ counts it until then.
  void StartOp(const std::shared_ptr<Stream>& s,
               const std::function<void(void*)>& start,
               std::function<void(bool)> then)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnStarted(const std::shared_ptr<Stream>& s, bool ok);
  void OnRead(const std::shared_ptr<Stream>& s, bool ok);
  void OnWritten(const std::shared_ptr<Stream>& s, bool ok);
  void OnFinished(const std::shared_ptr<Stream>& s);
  void Expire(uint64_t id);
  // Everything waiting fails with `status`.
  Failed TakeAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Fail(Failed failed, const grpc::Status& status);
  void OpDone() ABSL_LOCKS_EXCLUDED(mu_);

  ledger::v1::LedgerService::Stub* const stub_;
  grpc::CompletionQueue* const cq_;
  Timers* const timers_;

  mutable absl::Mutex mu_;
  std::shared_ptr<Stream> stream_ ABSL_GUARDED_BY(mu_);  // Null: none open.
  // Requests not yet written on stream_.
  std::deque<ledger::v1::SessionRequest> out_ ABSL_GUARDED_BY(mu_);
  // Requests sent or queued, by id, until answered.
  std::map<uint64_t, Waiting> waiting_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool unsupported_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int ops_ ABSL_GUARDED_BY(mu_) = 0;  // Operations not yet completed.
};

}  // namespace pbft::client

#endif  // PBFT_LEDGER_CLIENT_REPLICA_SESSION_H_
