// The client API of a replica (ledger.v1.LedgerService) on gRPC's
// completion-queue API, so that thousands of clients waiting for their
// requests to execute cost no thread each.
//
// Submit: the envelope is verified here (UNAUTHENTICATED for an unknown
// client or a bad signature, INVALID_ARGUMENT for a malformed request);
// then the call waits, registered under (client id, request number), until
// the owner calls DeliverReply for that key, or the client gives up. The
// number of waiting calls is bounded, in all and per client: a client over
// its share gets RESOURCE_EXHAUSTED, and so does everyone once the total is
// reached. A request larger than a batch, or with more operations than a
// request may carry, is refused here with RESOURCE_EXHAUSTED before it is
// ordered.
// Query: verified the same way and answered asynchronously by the owner.
// Status: answered at once by the owner's callback.
// Session: a stream of requests, each handled as a Submit or a Query is
// (same checks, intake, shares and limits) and answered on the stream
// with its id; at most Limits::session_window requests of one stream are
// read ahead of their written answers, so a client that does not read its
// answers is held back by flow control, not buffered.
//
// The completion-queue threads only take calls from gRPC: each Submit and
// Query joins a bounded intake, and worker threads check and hand it over.
// The intake has a share per source (the caller's address, hashed into
// kIntakeSources buckets) and a bound in all, in calls and bytes; a call
// beyond it is refused at once with RESOURCE_EXHAUSTED, before its
// signature is checked, so calls that arrive faster than the replica can
// check them are answered instead of piling up inside gRPC. A call whose
// client gave up while it waited is not checked. A call waiting for its
// reply keeps only its key, not the request's bytes.
//
// Thread-safe. Owns its completion-queue threads; Shutdown() stops them
// (call it after the grpc::Server has been shut down).
#ifndef PBFT_LEDGER_REPLICA_NET_CLIENT_SERVICE_H_
#define PBFT_LEDGER_REPLICA_NET_CLIENT_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/fair_queue.h"
#include "common/proto_names.h"
#include "ledger/v1/service.grpc.pb.h"
#include "replica/net/admission.h"
#include "replica/net/verify_pool.h"

namespace pbft::net {

// The shares of waiting Submit calls: at most `total_max` in all and
// `client_max` per client. Not thread-safe (ClientService holds its lock).
class CallShares {
 public:
  enum class Result { kAdded, kFull, kClientFull };
  CallShares(size_t total_max, size_t client_max)
      : total_max_(total_max), client_max_(client_max) {}
  // Takes one of `client`'s share, if neither share is full.
  Result Add(uint64_t client);
  // Gives back one taken by Add; CHECK-fails if `client` holds none.
  void Remove(uint64_t client);
  size_t total() const { return total_; }
  size_t of(uint64_t client) const;

 private:
  const size_t total_max_;
  const size_t client_max_;
  size_t total_ = 0;
  std::map<uint64_t, size_t> by_client_;  // Clients holding at least one.
};

class ClientService {
 public:
  struct Handlers {
    // A verified, decoded request to order, with the client's
    // primary_view hint if it sent one (SubmitRequest). OK: accepted (the
    // reply comes later through DeliverReply); otherwise the status goes
    // to the client.
    std::function<absl::Status(const pbft::v1::Envelope& envelope,
                               const pbft::v1::Request& request,
                               std::optional<uint64_t> primary_view)>
        submit;
    // A verified read-only query; call `done` exactly once, on any thread.
    std::function<void(
        const pbft::v1::Envelope& envelope, const pbft::v1::Request& request,
        std::function<void(absl::StatusOr<pbft::v1::Envelope>)> done)>
        query;
    std::function<ledger::v1::StatusResponse()> status;
  };

  struct Limits {
    size_t pending_max = 10000;            // Waiting Submit calls, in all.
    size_t client_pending_max = 10000;     // ... of one client.
    size_t request_bytes_max = 4 << 20;    // RequestBytes of one request.
    size_t request_operations_max = 8192;  // Operations in one request.
    // Calls taken from gRPC and waiting for their signature check: per
    // source, in all, and their bytes (per source and in all). A call alone
    // in its source's share is always let in.
    size_t intake_per_source_max = 256;
    size_t intake_max = 4096;
    size_t intake_source_bytes_max = 16 << 20;
    size_t intake_bytes_max = 64 << 20;
    // Requests of one Session stream read but not yet answered: the
    // stream is not read further until some are.
    size_t session_window = 256;
    // Answers of one Session waiting to be written: reading stops at half
    // of this; beyond it, while a write has waited session_stall for the
    // client to read, the stream is cancelled.
    size_t session_answer_bytes_max = 64 << 20;
    absl::Duration session_stall = absl::Seconds(5);
    // Admission by expected wait (replica/net/admission.h): a Submit or an
    // ordered Session request that would wait longer than this behind the
    // calls already waiting here is refused before its signature is
    // checked; while nothing was answered in the last second, only once
    // admission_waiting_min wait.
    absl::Duration admission_wait_max = absl::InfiniteDuration();
    size_t admission_waiting_min = 64;
  };
  static constexpr size_t kIntakeSources = 64;
  ClientService(VerifyPool* verifier, Handlers handlers, Limits limits);
  // Older form: no per-client share, no operation count check.
  ClientService(VerifyPool* verifier, Handlers handlers, size_t pending_max,
                size_t operation_bytes_max);
  ~ClientService();

  // Registers the service with `builder` and adds its completion queue.
  void Register(grpc::ServerBuilder* builder);
  // Starts `threads` completion-queue threads and `threads` workers that
  // check taken calls; after the server is built.
  void Start(int threads);
  // Completes every waiting Submit for (client, request number) with
  // `reply`. Returns how many calls it completed.
  int DeliverReply(uint64_t client_id, uint64_t request_number,
                   const pbft::v1::Envelope& reply);
  // True if a Submit (or a Session's ordered request) waits for the reply
  // to (client, request number).
  bool Waiting(uint64_t client_id, uint64_t request_number) const;
  // How many such calls wait for it.
  size_t WaitingCalls(uint64_t client_id, uint64_t request_number) const;
  // The replica has a reply for (client, request number): it executed the
  // request (or answered it with a rejection). A call asking for it again
  // (answered from the replica's stored reply), or for an earlier number
  // of the client (answered with a stale rejection), is never refused for
  // its expected wait. Kept for kAnsweredClientsMax clients at most (a
  // table of at most 131,072 slots of 16 bytes and a control byte each,
  // 2.2 MB by that count; then forgotten all at once: a forgotten
  // client's call may be refused again, and the client asks again later).
  // A no-op with admission off. Thread-safe.
  void NoteAnswered(uint64_t client_id, uint64_t request_number);
  static constexpr size_t kAnsweredClientsMax = 65536;
  // Stops the threads; call after grpc::Server::Shutdown().
  void Shutdown();

  size_t pending() const;
  // Calls taken and waiting for their signature check.
  size_t intake() const { return intake_.size(); }
  uint64_t rejected(absl::StatusCode code) const;
  // Of the RESOURCE_EXHAUSTED refusals, those for the expected wait.
  uint64_t refused_for_wait() const { return refused_for_wait_.load(); }
  // The calls waiting here now: their expected wait at the rate they have
  // been answered, and the share of new calls refused at it (0 with
  // admission off).
  AdmissionGate::Verdict AdmissionNow();

  // What Submit (read_only false) and Query (true) check before anything
  // else: the type, the client's signature (cluster id, known sender), the
  // wire limits, the decoding of the request, its client id and number, and
  // the size limits. OK fills `request`; otherwise the status is the gRPC
  // answer (counted in rejected()). Thread-safe.
  absl::Status Admit(const pbft::v1::Envelope& e, bool read_only,
                     pbft::v1::Request* request);

 private:
  class Call;
  class Intake;
  class Waiter;
  class QueuedCall;
  class SubmitCall;
  class QueryCall;
  class StatusCall;
  class SessionCall;
  class SessionItem;
  friend class Call;
  friend class QueuedCall;
  friend class SubmitCall;
  friend class QueryCall;
  friend class StatusCall;
  friend class SessionCall;
  friend class SessionItem;

  enum class Kind { kSubmit, kQuery, kEither };
  absl::Status AdmitAs(const pbft::v1::Envelope& e, Kind kind,
                       pbft::v1::Request* request);
  absl::Status CheckSize(const pbft::v1::Envelope& e,
                         const pbft::v1::Request& request);
  enum class AddResult { kAdded, kFull, kClientFull, kCallDone };
  AddResult AddPending(std::pair<uint64_t, uint64_t> key, Waiter* waiter);
  // The answer to a full share (kFull or kClientFull), counted.
  absl::Status Refusal(AddResult full, uint64_t client);
  // Takes `call` out of pending_ if it is there (its key is read under mu_:
  // the done notification may run while the call's arrival is handled).
  // Also marks the call done: it will not be added again.
  void RemovePending(SubmitCall* call);
  // Takes `waiter` out of pending_ if it is still there (true), without
  // touching it otherwise: it may have been answered and deleted.
  bool Unregister(std::pair<uint64_t, uint64_t> key, Waiter* waiter);
  bool ErasePendingLocked(std::pair<uint64_t, uint64_t> key, Waiter* waiter)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  using PendingMap = std::multimap<std::pair<uint64_t, uint64_t>, Waiter*>;
  // Takes the waiter at `it` out (its share back, detached); the next one.
  PendingMap::iterator EraseAtLocked(PendingMap::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountRejected(absl::StatusCode code);
  // Queues an item just taken from gRPC (`bytes` of request, from `peer`)
  // for a worker, or refuses it (RESOURCE_EXHAUSTED) when its source's
  // share or the whole intake is full, or (with `draw`, from
  // WaitCheckDraw) when it would wait too long (admission_).
  void Take(Intake* item, const std::string& peer, size_t bytes,
            std::optional<double> draw);
  // The refusal of an ordered call with `draw` that would wait too long,
  // counted; OK if it is let in. Admission on only.
  absl::Status CheckWait(double draw);
  // Whether admission by expected wait applies to `request` (an envelope
  // of a pbft.v1.Request, not yet checked): an ordered request this replica
  // has not answered and for which not exactly one call waits here (a
  // copy of a waiting request passes, one); then its draw
  // (AdmissionGate::CallDraw). Read from the wire format, before the signature
  // check; bytes that do not scan are treated as a new ordered request with
  // draw 0, refused first.
  std::optional<double> WaitCheckDraw(const pbft::v1::Envelope& request) const;
  void Poll();
  void Work();
  // Runs `start` (which starts one operation on cq_) unless the queue is
  // closed; false then. gRPC aborts on an operation started after
  // cq_->Shutdown(), and replies and query answers arrive from other
  // threads until the owner has stopped them.
  template <typename F>
  bool StartOp(F start) {
    absl::ReaderMutexLock l(&cq_mu_);
    if (cq_closed_) return false;
    start();
    return true;
  }

  VerifyPool* verifier_;
  Handlers handlers_;
  const Limits limits_;
  ledger::v1::LedgerService::AsyncService service_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::vector<std::thread> threads_;
  std::vector<std::thread> workers_;
  // Taken calls and the bytes they were charged; intake_bytes_ is the
  // bytes of all of them (the queue bounds only each source's).
  FairQueue<std::pair<Intake*, size_t>> intake_;
  std::atomic<size_t> intake_bytes_{0};
  bool shut_down_ = false;
  absl::Mutex cq_mu_;
  bool cq_closed_ ABSL_GUARDED_BY(cq_mu_) = false;

  mutable absl::Mutex mu_;
  PendingMap pending_ ABSL_GUARDED_BY(mu_);
  CallShares shares_ ABSL_GUARDED_BY(mu_);
  // shares_.total(), for the admission check without mu_.
  std::atomic<size_t> waiting_{0};
  // Off (admission_wait_max infinite): no clock read or lock per call.
  const bool admission_on_;
  AdmissionGate admission_;
  std::atomic<uint64_t> refused_for_wait_{0};
  // Client id -> the highest request number answered (NoteAnswered).
  mutable absl::Mutex answered_mu_;
  absl::flat_hash_map<uint64_t, uint64_t> answered_
      ABSL_GUARDED_BY(answered_mu_);
  std::array<std::atomic<uint64_t>, 17> rejected_{};
};

}  // namespace pbft::net

#endif  // PBFT_LEDGER_REPLICA_NET_CLIENT_SERVICE_H_
