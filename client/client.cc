#include "client/client.h"

#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <optional>
#include <queue>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/first_replicas.h"
#include "client/grpc_client.h"
#include "client/replica_session.h"
#include "client/timer_thread.h"
#include "common/check.h"
#include "common/config.h"
#include "common/crypto.h"
#include "common/envelope.h"
#include "common/proto_names.h"
#include "common/thread_name.h"
#include "ledger/v1/service.grpc.pb.h"
#include "replica/ledger/block.h"

namespace pbft::client {
namespace {

constexpr char kOutcomeUnknownUrl[] = "type.pbft-ledger/outcome-unknown";
// On a call that f+1 replicas refused as stale: the request number the
// client must exceed (decimal).
constexpr char kStaleUrl[] = "type.pbft-ledger/stale-request-number";
// How many times one call is renumbered after stale rejections.
constexpr int kRenumberMax = 3;

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

// Errors that retrying cannot fix: the request itself is bad.
bool IsPermanent(grpc::StatusCode c) {
  return c == grpc::StatusCode::INVALID_ARGUMENT ||
         c == grpc::StatusCode::OUT_OF_RANGE ||  // Answer over its budget.
         c == grpc::StatusCode::UNAUTHENTICATED ||
         c == grpc::StatusCode::PERMISSION_DENIED;
}

uint64_t NowMicros() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
}

class GrpcClient;

// One RPC to one replica, on the client's completion queue. Owned by the
// client from StartRpc until its completion has been handled.
struct RpcAttempt final : public CqTag {
  // The unary call's completion.
  void OnEvent(bool) override;
  GrpcClient* owner = nullptr;
  uint32_t replica = 0;
  bool is_submit = false;
  absl::Time deadline;
  grpc::ClientContext ctx;
  grpc::Status status;
  ledger::v1::SubmitRequest submit;
  ledger::v1::SubmitResponse submit_response;
  ledger::v1::QueryRequest query;
  ledger::v1::QueryResponse query_response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<ledger::v1::SubmitResponse>>
      submit_rpc;
  std::unique_ptr<grpc::ClientAsyncResponseReader<ledger::v1::QueryResponse>>
      query_rpc;
  std::function<void()> on_done;
};

// One logical call (a Submit or a Query) fanned out to every replica.
// Owned by shared_ptr: each in-flight RPC and timer holds a reference.
class FanOut : public std::enable_shared_from_this<FanOut> {
 public:
  enum class Kind { kSubmit, kQuery };
  using Done = std::function<void(absl::StatusOr<std::string> /*payload*/)>;

  FanOut(GrpcClient* client, Kind kind, pbft::v1::Envelope request,
         uint64_t request_number, absl::Time deadline, uint32_t needed,
         uint32_t weak_quorum, Done done)
      : client_(client),
        client_weak_quorum_(weak_quorum),
        kind_(kind),
        request_(std::move(request)),
        request_number_(request_number),
        deadline_(deadline),
        needed_(needed),
        done_(std::move(done)) {}

  ~FanOut();

  void Start();

 private:
  // Asks `replica`, with the hint that the primary of `primary_view` was
  // asked too (ledger.v1.SubmitRequest.primary_view) if set.
  void Send(uint32_t replica, absl::Duration backoff,
            std::optional<uint64_t> primary_view = std::nullopt);
  // True once per call if `refuser` is the primary of the word's view and
  // no reply came: the caller then ArmWithdrawal(refuser)s.
  bool TakeWordLocked(uint32_t refuser) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After as long as the call has taken so far (at least retry_initial: the
  // backups' own answers to the first sends come within about that), sends
  // the first replicas but `primary` (the backups told it had the request)
  // still silent a copy without the word, if no reply came: a backup
  // holding the request then forwards it, and answers both calls alike.
  void ArmWithdrawal(uint32_t primary);
  // Sends to the replicas not asked yet (once per call), counted by
  // `cause` in Client::stats().
  void Widen(WidenCause cause = WidenCause::kEarly);
  // The first answer of a narrow call came: widens (kHedge) unless the
  // others come within ClientOptions::hedge_after_first × its latency.
  void ArmHedge();
  // The first replicas that have not answered though another one has (none
  // if none has); `widened`: the call is finished or every replica asked.
  std::vector<uint32_t> SilentFirst(bool* widened);
  // Strikes the first replicas still silent at widen_after_max from the
  // start (FirstReplicas::Strike).
  void StrikeIfStillSilent();
  // Every replica has been asked: the call is widened (or never narrow).
  bool AllAskedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Widens if every replica asked so far has answered without a quorum.
  void WidenIfAllAnswered();
  // An ordered request completed: tells the client's FirstReplicas its
  // latency and the view the replies named.
  void NoteCompleted(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnReply(uint32_t replica, absl::Duration backoff, const grpc::Status& s,
               const pbft::v1::Envelope& reply);
  void Retry(uint32_t replica, absl::Duration backoff, std::string why);
  // Sends to `replica` again after `backoff` (doubled for the next time).
  void AskLater(uint32_t replica, absl::Duration backoff);
  // A replica refused an ordered request for load (RESOURCE_EXHAUSTED, or a
  // full queue): with ClientOptions::retry_refused off it is not asked
  // again until a reply says the request executed, and refusals from
  // every replica asked, f+1 or more, finish the call. True if handled so.
  bool OnRefused(uint32_t replica, absl::Duration backoff,
                 const grpc::Status& s, const pbft::v1::Reply& rejection);
  bool Refused(Done* done, absl::Status* outcome)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Once a reply says the request executed and fewer than the replies
  // needed can come from replicas asked that did not refuse it: the
  // refusing replicas, taken out of refused_ and voted_ to be asked again
  // (they answer from their stored replies). Otherwise none, and `arm`
  // is set (one timer at a time) if the caller should ArmReask(): a replica
  // that admitted the call may stay silent.
  std::vector<uint32_t> TakeRefusersIfShortLocked(bool* arm)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<uint32_t> TakeRefusersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A well-formed reply came (verified or not yet): for an ordered
  // request, it executed somewhere.
  bool RepliedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !views_.empty();
  }
  // After as long as the call has taken so far (at least retry_initial),
  // asks the replicas that refused it again, if it is not finished.
  void ArmReask();
  // As long as the call has taken so far, at least retry_initial.
  absl::Duration AsLongAsSoFar() const;
  void Finish(absl::StatusOr<std::string> result);
  // Checks a reply envelope; returns the bytes that must match (the
  // result, or the answer) or an error. A query answer's per-replica part
  // (QueryReply.block_commit) is not matched: it goes to `commit`.
  absl::StatusOr<std::string> MatchKey(uint32_t replica,
                                       const pbft::v1::Envelope& reply,
                                       pbft::v1::Reply* rejection,
                                       ledger::v1::BlockCommit* commit,
                                       uint64_t* view);
  // The outcome of a query whose matching answers (`key`, from `voters`) are
  // a block: the key with the first voter's block_commit that verifies
  // against the config (one suffices: docs/api.md "Blocks").
  // Counts a verified answer (or a permanent error) from `replica`; the
  // call's outcome once a quorum agrees.
  std::optional<absl::StatusOr<std::string>> Tally(
      uint32_t replica, const grpc::Status& s, const std::string& key,
      const std::vector<uint32_t>& verified, size_t checked)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool RestartSplitQuery() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AskAgain(absl::Duration backoff);
  absl::StatusOr<std::string> WithBlockCommit(const std::string& key,
                                              const std::set<uint32_t>& voters)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A signed rejection that retrying the same request cannot change
  // (stale number, too large): counted per replica; f+1 of them finish
  // the call. True if it was such a rejection.
  bool OnFinalRejection(uint32_t replica, const pbft::v1::Envelope& reply,
                        const pbft::v1::Reply& rejection);
  // The call's outcome from f+1 such rejections (replica -> last number).
  absl::Status FinalRejection(
      bool stale, const std::map<uint32_t, uint64_t>& by_replica) const;
  // Does `c` certify the block of answer `q` (a block or a receipt)?
  absl::Status VerifyAnswerCommit(const ledger::v1::QueryReply& q,
                                  const ledger::v1::BlockHeader& header,
                                  const ledger::v1::BlockCommit& c) const;

  GrpcClient* client_;
  uint32_t client_weak_quorum_;
  Kind kind_;
  pbft::v1::Envelope request_;
  uint64_t request_number_;
  absl::Time deadline_;
  uint32_t needed_;
  Done done_;

  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // Match key -> replicas that sent it; one vote per replica.
  std::map<std::string, std::set<uint32_t>> votes_ ABSL_GUARDED_BY(mu_);
  // Replies not yet signature-checked, by match key.
  std::map<std::string, std::vector<std::pair<uint32_t, pbft::v1::Envelope>>>
      unverified_ ABSL_GUARDED_BY(mu_);
  std::set<uint32_t> voted_ ABSL_GUARDED_BY(mu_);
  std::map<grpc::StatusCode, std::set<uint32_t>> permanent_
      ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, std::string> last_error_ ABSL_GUARDED_BY(mu_);
  std::set<uint32_t> refused_ ABSL_GUARDED_BY(mu_);
  bool reask_armed_ ABSL_GUARDED_BY(mu_) = false;
  // Queries: each replica's block_commit, if its answer had one.
  std::map<uint32_t, ledger::v1::BlockCommit> block_commits_
      ABSL_GUARDED_BY(mu_);
  // Verified final rejections: reason -> replica -> last_request_number.
  std::map<int, std::map<uint32_t, uint64_t>> final_rejections_
      ABSL_GUARDED_BY(mu_);
  // The replicas sent to so far (all of them once the call is widened).
  std::set<uint32_t> asked_ ABSL_GUARDED_BY(mu_);
  // Sends to each replica not answered yet: more than one only while a
  // copy without the word is out (ArmWithdrawal).
  std::map<uint32_t, int> in_flight_ ABSL_GUARDED_BY(mu_);
  // The view whose primary the first sends named to the backups among them
  // (first_ but that primary), if they did; cleared once the word is taken
  // back.
  std::optional<uint64_t> word_view_ ABSL_GUARDED_BY(mu_);
  std::optional<Timers::Id> widen_timer_;     // Set by Start().
  std::optional<Timers::Id> deadline_timer_;  // Set by Start().
  // The replicas asked first, if not every one. Set by Start() before the
  // first send.
  std::vector<uint32_t> first_;
  // The replicas that answered anything (a reply, a rejection, an error),
  // even after the call finished: the others are silent.
  std::set<uint32_t> heard_ ABSL_GUARDED_BY(mu_);
  bool hedge_armed_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<Timers::Id> hedge_timer_ ABSL_GUARDED_BY(mu_);
  absl::Time started_;
  // Ordered requests: the view each replica's reply named.
  std::map<uint32_t, uint64_t> views_ ABSL_GUARDED_BY(mu_);
};

class GrpcClient final : public Client {
 public:
  GrpcClient(Cluster cluster, uint64_t client_id, crypto::SecretKey key,
             const ClientOptions& options,
             const std::vector<std::shared_ptr<grpc::Channel>>& channels)
      : Client(client_id, cluster.n()),
        cluster_(std::move(cluster)),
        signer_(cluster_.cluster_id(), client_id, std::move(key)),
        verifier_(cluster_.MakeVerifier()),
        options_(options),
        next_request_number_(NowMicros()),
        first_replicas_(FirstReplicas::Options{
            .n = cluster_.n(),
            .client_id = client_id,
            .send_to_all = options.send_to_all,
            .widen_after_initial = options.widen_after_initial,
            .widen_after_min = options.widen_after_min,
            .widen_after_max = options.widen_after_max}) {
    default_deadline_ = options.default_deadline;
    linearizable_reads_ = options.linearizable_reads;
    CHECK_EQ(channels.size(), cluster_.n());
    for (uint32_t i = 0; i < cluster_.n(); ++i) {
      stubs_.push_back(ledger::v1::LedgerService::NewStub(channels[i]));
      sessions_.push_back(std::make_unique<ReplicaSession>(stubs_.back().get(),
                                                           &cq_, &timers_));
    }
  }

  absl::StatusOr<ledger::v1::OperationResults> Submit(
      const ledger::v1::OperationBatch& batch,
      absl::Duration deadline) override {
    std::promise<absl::StatusOr<ledger::v1::OperationResults>> p;
    auto f = p.get_future();
    SubmitAsync(batch, deadline,
                [&p](absl::StatusOr<ledger::v1::OperationResults> r) {
                  p.set_value(std::move(r));
                });
    return f.get();
  }

  void SubmitAsync(const ledger::v1::OperationBatch& batch,
                   absl::Duration deadline, ResultCallback done) override {
    if (batch.operations_size() == 0) {
      done(absl::InvalidArgumentError("batch.operations: must not be empty"));
      return;
    }
    if (static_cast<uint32_t>(batch.operations_size()) >
        cluster_.protocol().request_operations_max) {
      done(absl::InvalidArgumentError(
          absl::StrCat("batch.operations: ", batch.operations_size(),
                       " exceeds the cluster's limit of ",
                       cluster_.protocol().request_operations_max)));
      return;
    }
    auto p = std::make_shared<Ordered>();
    batch.SerializeToString(&p->operation);
    p->deadline = absl::Now() + Deadline(deadline);
    p->done = std::move(done);
    {
      absl::MutexLock l(&order_mu_);
      order_waiting_.push_back(std::move(p));
    }
    SendNextOrdered();
  }

  absl::StatusOr<ledger::v1::QueryReply> Query(
      const ledger::v1::Query& query, absl::Duration deadline) override;
  absl::StatusOr<ledger::v1::StatusResponse> ReplicaStatus(
      uint32_t replica_id, absl::Duration deadline) override;
  ~GrpcClient() override;

  // Starts `attempt` to `replica` unless the client is closing: on the
  // replica's session (ClientOptions::sessions), else as a unary call.
  void StartRpc(uint32_t replica, bool submit,
                std::unique_ptr<RpcAttempt> attempt);
  // Hands a finished attempt's outcome to its caller and frees it.
  void CompleteAttempt(RpcAttempt* a);

  // Which replicas ordered requests go to first.
  FirstReplicas& first_replicas() { return first_replicas_; }
  void NoteWordWithdrawn() {
    words_withdrawn_.fetch_add(1, std::memory_order_relaxed);
  }
  ClientStats stats() const override {
    ClientStats s = first_replicas_.counts();
    s.throttled = throttled_.load(std::memory_order_relaxed);
    s.words_withdrawn = words_withdrawn_.load(std::memory_order_relaxed);
    return s;
  }

  const EnvelopeVerifier& verifier() const { return verifier_; }
  const Cluster& cluster() const override { return cluster_; }
  const ClientOptions& options() const { return options_; }
  ledger::v1::LedgerService::Stub* stub(uint32_t i) { return stubs_[i].get(); }
  TimerThread& timers() { return timers_; }

 private:
  // An ordered request waiting for its turn or in flight.
  struct Ordered {
    std::string operation;  // ledger.v1.OperationBatch bytes.
    absl::Time deadline;
    ResultCallback done;
    int renumbered = 0;
  };
  void SendNextOrdered();
  void SendOrdered(std::shared_ptr<Ordered> p);
  void OnOrderedDone(std::shared_ptr<Ordered> p, absl::StatusOr<std::string> r);
  void FinishOrdered(const std::shared_ptr<Ordered>& p,
                     absl::StatusOr<ledger::v1::OperationResults> r);

  uint64_t NextRequestNumber() {
    // Strictly increasing, and above anything an earlier process of this
    // client used (that one counted from its own start time).
    uint64_t now = NowMicros();
    uint64_t prev = next_request_number_.load();
    uint64_t next;
    do {
      next = std::max(prev + 1, now);
    } while (!next_request_number_.compare_exchange_weak(prev, next));
    return next;
  }

  // Numbers above `last` from now on (learned from stale rejections).
  void RaiseRequestNumber(uint64_t last) {
    uint64_t prev = next_request_number_.load();
    while (prev < last &&
           !next_request_number_.compare_exchange_weak(prev, last)) {
    }
  }

  absl::Mutex order_mu_;
  std::deque<std::shared_ptr<Ordered>> order_waiting_
      ABSL_GUARDED_BY(order_mu_);
  bool order_sending_ ABSL_GUARDED_BY(order_mu_) = false;
  bool order_closing_ ABSL_GUARDED_BY(order_mu_) = false;

  Cluster cluster_;
  EnvelopeSigner signer_;
  EnvelopeVerifier verifier_;
  ClientOptions options_;
  std::atomic<uint64_t> next_request_number_;
  std::atomic<uint64_t> throttled_{0};        // ClientStats::throttled
  std::atomic<uint64_t> words_withdrawn_{0};  // ClientStats::words_withdrawn
  FirstReplicas first_replicas_;
  std::vector<std::unique_ptr<ledger::v1::LedgerService::Stub>> stubs_;
  // One per replica (ClientOptions::sessions); destroyed after the poller
  // has stopped and before the stubs.
  std::vector<std::unique_ptr<ReplicaSession>> sessions_;
  using InflightMap = std::map<RpcAttempt*, std::unique_ptr<RpcAttempt>>;
  void StartUnary(RpcAttempt* a);
  void Poll() {
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) static_cast<CqTag*>(tag)->OnEvent(ok);
  }

  absl::Mutex inflight_mu_;
  bool closing_ ABSL_GUARDED_BY(inflight_mu_) = false;
  InflightMap inflight_ ABSL_GUARDED_BY(inflight_mu_);
  grpc::CompletionQueue cq_;
  std::thread poller_{[this] {
    NameThisThread("sdk-poll");
    Poll();
  }};
  TimerThread timers_;  // Declared last: joins before the stubs go away.
};

absl::StatusOr<ledger::v1::QueryReply> GrpcClient::Query(
    const ledger::v1::Query& query, absl::Duration deadline) {
  const uint64_t t = NextRequestNumber();
  pbft::v1::Request req;
  req.set_client_id(client_id());
  req.set_request_number(t);
  req.set_read_only(true);
  query.SerializeToString(req.mutable_operation());
  pbft::v1::Envelope env =
      signer_.SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, req);
  std::promise<absl::StatusOr<std::string>> p;
  auto f = p.get_future();
  auto call = std::make_shared<FanOut>(
      this, FanOut::Kind::kQuery, std::move(env), t,
      absl::Now() + Deadline(deadline), cluster_.quorum(),
      cluster_.weak_quorum(),
      [&p](absl::StatusOr<std::string> r) { p.set_value(std::move(r)); });
  call->Start();
  absl::StatusOr<std::string> r = f.get();
  if (!r.ok()) return r.status();
  ledger::v1::QueryReply reply;
  if (!reply.ParseFromString(*r)) {
    return absl::DataLossError("query reply: undecodable answer");
  }
  return reply;
}

absl::StatusOr<ledger::v1::StatusResponse> GrpcClient::ReplicaStatus(
    uint32_t replica_id, absl::Duration deadline) {
  if (replica_id >= stubs_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("replica id ", replica_id, " is not in the cluster"));
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  ledger::v1::StatusRequest req;
  ledger::v1::StatusResponse resp;
  grpc::Status s = stubs_[replica_id]->Status(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  return resp;
}

GrpcClient::~GrpcClient() {
  // Ordered requests not sent yet fail at once; then cancel what is in
  // flight and wait until every completion has been handled (handlers use
  // this object); then stop the poller.
  std::deque<std::shared_ptr<Ordered>> waiting;
  {
    absl::MutexLock l(&order_mu_);
    order_closing_ = true;
    waiting.swap(order_waiting_);
  }
  for (auto& p : waiting) {
    p->done(absl::CancelledError("client closed; the request was not sent"));
  }
  {
    absl::MutexLock l(&inflight_mu_);
    closing_ = true;
    for (const auto& [a, owned] : inflight_) a->ctx.TryCancel();
  }
  // What waits on a session fails with CANCELLED; its stream is cancelled.
  for (auto& session : sessions_) session->Close();
  {
    absl::MutexLock l(&inflight_mu_);
    inflight_mu_.Await(absl::Condition(
        +[](InflightMap* m) { return m->empty(); }, &inflight_));
  }
  cq_.Shutdown();
  poller_.join();
}

void RpcAttempt::OnEvent(bool) { owner->CompleteAttempt(this); }

void GrpcClient::CompleteAttempt(RpcAttempt* a) {
  a->on_done();
  std::unique_ptr<RpcAttempt> done;  // Freed after the lock is released.
  absl::MutexLock l(&inflight_mu_);
  auto it = inflight_.find(a);
  CHECK(it != inflight_.end());
  done = std::move(it->second);
  inflight_.erase(it);
}

void GrpcClient::StartRpc(uint32_t replica, bool submit,
                          std::unique_ptr<RpcAttempt> attempt) {
  RpcAttempt* a = attempt.get();
  a->owner = this;
  a->replica = replica;
  a->is_submit = submit;
  {
    absl::MutexLock l(&inflight_mu_);
    if (closing_) return;
    inflight_.emplace(a, std::move(attempt));
  }
  if (options_.sessions &&
      sessions_[replica]->Send(
          submit ? a->submit.request() : a->query.query(),
          submit && a->submit.has_primary_view()
              ? std::optional<uint64_t>(a->submit.primary_view())
              : std::nullopt,
          a->deadline,
          [this, a](grpc::Status status, pbft::v1::Envelope reply) {
            if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
              return StartUnary(a);  // A replica without sessions.
            }
            a->status = std::move(status);
            (a->is_submit ? a->submit_response.mutable_reply()
                          : a->query_response.mutable_reply())
                ->Swap(&reply);
            CompleteAttempt(a);
          })) {
    return;
  }
  StartUnary(a);
}

void GrpcClient::StartUnary(RpcAttempt* a) {
  const uint32_t replica = a->replica;
  if (a->is_submit) {
    a->submit_rpc =
        stubs_[replica]->PrepareAsyncSubmit(&a->ctx, a->submit, &cq_);
    a->submit_rpc->StartCall();
    a->submit_rpc->Finish(&a->submit_response, &a->status,
                          static_cast<CqTag*>(a));
  } else {
    a->query_rpc = stubs_[replica]->PrepareAsyncQuery(&a->ctx, a->query, &cq_);
    a->query_rpc->StartCall();
    a->query_rpc->Finish(&a->query_response, &a->status,
                         static_cast<CqTag*>(a));
  }
}

// Whether an ordered call that ended with `s` was accepted by the cluster
// (LoadThrottle): every end but a refusal for load (RESOURCE_EXHAUSTED with
// an unknown outcome) and no answer before the deadline.
bool AcceptedByTheCluster(const absl::Status& s) {
  if (s.code() == absl::StatusCode::kDeadlineExceeded) return false;
  return !(s.code() == absl::StatusCode::kResourceExhausted &&
           IsOutcomeUnknown(s));
}

// Ordered requests (docs/protocol.md, "Request numbers"): one at a time per
// Client, each numbered when it is sent, so that no number of this client
// can be overtaken by a higher one while in flight and turn stale.
void GrpcClient::SendNextOrdered() {
  std::shared_ptr<Ordered> next;
  {
    absl::MutexLock l(&order_mu_);
    if (order_sending_ || order_waiting_.empty() || order_closing_) return;
    order_sending_ = true;
    next = std::move(order_waiting_.front());
    order_waiting_.pop_front();
  }
  SendOrdered(std::move(next));
}

void GrpcClient::SendOrdered(std::shared_ptr<Ordered> p) {
  bool closing;
  {
    absl::MutexLock l(&order_mu_);
    closing = order_closing_;
  }
  if (closing) {
    return FinishOrdered(
        p, absl::CancelledError("client closed; the request was not sent"));
  }
  if (absl::Now() >= p->deadline) {
    // Never sent: it did not execute (not an unknown outcome).
    return FinishOrdered(
        p, absl::DeadlineExceededError(
               "deadline passed while earlier requests of this client were "
               "in flight; the request was not sent"));
  }
  if (options_.throttle != nullptr && !options_.throttle->Admit(absl::Now())) {
    throttled_.fetch_add(1, std::memory_order_relaxed);
    return FinishOrdered(
        p, absl::ResourceExhaustedError(
               "not sent: the cluster has been refusing this client's "
               "requests for load and the client's throttle refused this "
               "one (ClientOptions::throttle); it did not execute, send it "
               "again later"));
  }
  const uint64_t t = NextRequestNumber();
  pbft::v1::Request req;
  req.set_client_id(client_id());
  req.set_request_number(t);
  req.set_operation(p->operation);
  pbft::v1::Envelope env =
      signer_.SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, req);
  auto call = std::make_shared<FanOut>(
      this, FanOut::Kind::kSubmit, std::move(env), t, p->deadline,
      cluster_.weak_quorum(), cluster_.weak_quorum(),
      [this, p](absl::StatusOr<std::string> r) {
        OnOrderedDone(p, std::move(r));
      });
  call->Start();
}

void GrpcClient::OnOrderedDone(std::shared_ptr<Ordered> p,
                               absl::StatusOr<std::string> r) {
  if (options_.throttle != nullptr) {
    options_.throttle->Ended(absl::Now(), AcceptedByTheCluster(r.status()));
  }
  if (!r.ok()) {
    auto stale = r.status().GetPayload(kStaleUrl);
    uint64_t last = 0;
    if (stale && absl::SimpleAtoi(std::string(*stale), &last) &&
        p->renumbered < kRenumberMax) {
      // f+1 replicas refused the number as stale before executing it (this
      // Client had nothing else in flight, so the higher number is another
      // process's or an earlier run's): renumber above it and send again.
      ++p->renumbered;
      RaiseRequestNumber(last);
      return SendOrdered(std::move(p));
    }
    return FinishOrdered(p, r.status());
  }
  ledger::v1::OperationResults results;
  if (!results.ParseFromString(*r)) {
    return FinishOrdered(
        p, absl::DataLossError("reply.result: f+1 replicas sent undecodable "
                               "results"));
  }
  FinishOrdered(p, std::move(results));
}

void GrpcClient::FinishOrdered(const std::shared_ptr<Ordered>& p,
                               absl::StatusOr<ledger::v1::OperationResults> r) {
  ResultCallback done = std::move(p->done);
  {
    absl::MutexLock l(&order_mu_);
    order_sending_ = false;
  }
  done(std::move(r));
  SendNextOrdered();
}

FanOut::~FanOut() {
  // A pending widening or deadline has nothing left to do: its wake-up is
  // saved.
  if (widen_timer_.has_value()) client_->timers().Cancel(*widen_timer_);
  if (deadline_timer_.has_value()) {
    client_->timers().Cancel(*deadline_timer_);
  }
  std::optional<Timers::Id> hedge;
  {
    absl::MutexLock l(&mu_);
    hedge = hedge_timer_;
  }
  if (hedge.has_value()) client_->timers().Cancel(*hedge);
  Finish(absl::DeadlineExceededError(""));
}

void FanOut::Start() {
  started_ = absl::Now();
  // Queries need 2f+1 matching answers from replicas that may lag: every
  // replica at once. Ordered requests: f+1 first (ClientOptions::send_to_all).
  std::optional<uint64_t> view;
  const std::vector<uint32_t> first = client_->first_replicas().Choose(
      kind_ == Kind::kSubmit ? needed_ : client_->replica_count(), started_,
      &view);
  // f+1 headed by the primary: the backups among them are told that the
  // primary has the request too, so that they need not forward it. Not when
  // every replica is asked (the primary may be the one left out, and none
  // would remain to forward the request if it failed).
  const auto hint = [&](uint32_t r) {
    return kind_ == Kind::kSubmit && view.has_value() &&
           r != *view % client_->replica_count();
  };
  if (first.size() < client_->replica_count()) first_ = first;
  {
    // All of them before the first send: an answer that comes back at
    // once must not find the others unasked and widen the call.
    absl::MutexLock l(&mu_);
    asked_.insert(first.begin(), first.end());
    if (std::any_of(first.begin(), first.end(), hint)) word_view_ = view;
  }
  for (uint32_t r : first) {
    Send(r, client_->options().retry_initial, hint(r) ? view : std::nullopt);
  }
  // Timers hold only a weak reference: a call whose RPCs all ended is
  // destroyed at once (and, if unfinished, reports its outcome as unknown
  // then).
  std::weak_ptr<FanOut> weak = weak_from_this();
  if (first.size() < client_->replica_count()) {
    widen_timer_ =
        client_->timers().After(client_->first_replicas().WidenAfter(), [weak] {
          auto self = weak.lock();
          if (self == nullptr) return;  // Every replica asked has answered.
          // The first replicas that have not answered while others have are
          // struck. None answered: a slow cluster or a cold start, not a
          // sign against any one of them.
          bool widened = false;
          const std::vector<uint32_t> silent = self->SilentFirst(&widened);
          if (widened) {
            // Hedged (or finished) already: the silent ones cost this call
            // little, and a busy correct one answers late. Struck only if
            // still silent at widen_after_max from the start.
            if (!silent.empty()) self->StrikeIfStillSilent();
            return;
          }
          self->client_->first_replicas().NoteWidenedByTimer(silent,
                                                             absl::Now());
          self->Widen(WidenCause::kTimer);
        });
  }
  // The deadline finishes the call even if an RPC hangs.
  deadline_timer_ = client_->timers().After(deadline_ - absl::Now(), [weak] {
    if (auto self = weak.lock()) self->Finish(absl::DeadlineExceededError(""));
  });
}

bool FanOut::AllAskedLocked() const {
  return asked_.size() == client_->replica_count();
}

void FanOut::Widen(WidenCause cause) {
  std::vector<uint32_t> rest;
  {
    absl::MutexLock l(&mu_);
    if (finished_) return;
    for (uint32_t r = 0; r < client_->replica_count(); ++r) {
      if (!asked_.contains(r)) rest.push_back(r);
    }
    // Marked before sending: a second Widen meanwhile finds nothing to do.
    asked_.insert(rest.begin(), rest.end());
  }
  if (!rest.empty()) client_->first_replicas().CountWidened(cause);
  for (uint32_t r : rest) Send(r, client_->options().retry_initial);
}

std::vector<uint32_t> FanOut::SilentFirst(bool* widened) {
  std::vector<uint32_t> silent;
  absl::MutexLock l(&mu_);
  *widened = finished_ || AllAskedLocked();
  if (heard_.empty()) return silent;
  for (uint32_t r : first_) {
    if (!heard_.contains(r)) silent.push_back(r);
  }
  return silent;
}

void FanOut::StrikeIfStillSilent() {
  std::weak_ptr<FanOut> weak = weak_from_this();
  client_->timers().After(
      client_->options().widen_after_max - (absl::Now() - started_), [weak] {
        // Gone: every replica asked has answered.
        if (auto self = weak.lock()) {
          bool widened = false;
          const std::vector<uint32_t> silent = self->SilentFirst(&widened);
          self->client_->first_replicas().Strike(silent, absl::Now());
        }
      });
}

void FanOut::ArmHedge() {
  const double fraction = client_->options().hedge_after_first;
  if (!(fraction > 0)) return;
  std::weak_ptr<FanOut> weak = weak_from_this();
  const Timers::Id id =
      client_->timers().After((absl::Now() - started_) * fraction, [weak] {
        if (auto self = weak.lock()) self->Widen(WidenCause::kHedge);
      });
  absl::MutexLock l(&mu_);
  hedge_timer_ = id;
}

void FanOut::WidenIfAllAnswered() {
  {
    absl::MutexLock l(&mu_);
    if (finished_ || AllAskedLocked()) return;
    for (uint32_t r : asked_) {
      if (!voted_.contains(r)) return;
    }
  }
  Widen();
}

void FanOut::NoteCompleted(const std::string& key) {
  if (kind_ != Kind::kSubmit) return;
  auto it = votes_.find(key);
  if (it == votes_.end() || it->second.empty()) return;
  // The lowest view among f+1 matching replies: a faulty replica cannot
  // raise it on its own.
  uint64_t view = UINT64_MAX;
  for (uint32_t r : it->second) {
    auto v = views_.find(r);
    view = std::min(view, v == views_.end() ? 0 : v->second);
  }
  client_->first_replicas().NoteView(view);
  client_->first_replicas().NoteAnswered(it->second);
  // Widened calls count too: leaving out the slow ones (as TCP does with
  // retransmitted segments) would keep the delay below what most calls
  // take, and widen many.
  client_->first_replicas().NoteLatency(absl::Now() - started_);
}

void FanOut::Send(uint32_t replica, absl::Duration backoff,
                  std::optional<uint64_t> primary_view) {
  {
    absl::MutexLock l(&mu_);
    if (finished_) return;
    asked_.insert(replica);
    if (absl::Now() >= deadline_) return;
    ++in_flight_[replica];
  }
  auto attempt = std::make_unique<RpcAttempt>();
  attempt->ctx.set_deadline(absl::ToChronoTime(deadline_));
  attempt->deadline = deadline_;
  auto self = shared_from_this();
  RpcAttempt* a = attempt.get();
  a->on_done = [self, a, replica, backoff] {
    self->OnReply(replica, backoff, a->status,
                  self->kind_ == Kind::kSubmit ? a->submit_response.reply()
                                               : a->query_response.reply());
  };
  if (kind_ == Kind::kSubmit) {
    a->submit.mutable_request()->CopyFrom(request_);
    if (primary_view.has_value()) a->submit.set_primary_view(*primary_view);
  } else {
    a->query.mutable_query()->CopyFrom(request_);
  }
  client_->StartRpc(replica, kind_ == Kind::kSubmit, std::move(attempt));
}

bool FanOut::TakeWordLocked(uint32_t refuser) {
  if (!word_view_.has_value() || RepliedLocked() ||
      refuser != *word_view_ % client_->replica_count()) {
    return false;
  }
  word_view_.reset();
  return true;
}

absl::Duration FanOut::AsLongAsSoFar() const {
  return std::max(client_->options().retry_initial, absl::Now() - started_);
}

void FanOut::ArmWithdrawal(uint32_t primary) {
  std::weak_ptr<FanOut> weak = weak_from_this();
  client_->timers().After(AsLongAsSoFar(), [weak, primary] {
    auto self = weak.lock();
    if (self == nullptr) return;  // Every replica asked has answered.
    std::vector<uint32_t> silent;
    {
      absl::MutexLock l(&self->mu_);
      if (self->finished_ || self->RepliedLocked()) return;
      for (uint32_t r : self->first_) {
        if (r != primary && !self->voted_.contains(r)) silent.push_back(r);
      }
    }
    if (!silent.empty()) self->client_->NoteWordWithdrawn();
    for (uint32_t r : silent) {
      self->Send(r, self->client_->options().retry_initial);
    }
  });
}

absl::StatusOr<std::string> FanOut::MatchKey(uint32_t replica,
                                             const pbft::v1::Envelope& reply,
                                             pbft::v1::Reply* rejection,
                                             ledger::v1::BlockCommit* commit,
                                             uint64_t* view) {
  const pbft::v1::MessageType want = kind_ == Kind::kSubmit
                                         ? pbft::v1::MESSAGE_TYPE_REPLY
                                         : pbft::v1::MESSAGE_TYPE_QUERY_REPLY;
  if (reply.type() != want || reply.sender() != replica) {
    return absl::InvalidArgumentError("reply: wrong type or sender");
  }
  // The signature is checked later, only for replies that could complete a
  // quorum (OnReply): most calls then verify f+1 replies, not n.
  if (kind_ == Kind::kSubmit) {
    pbft::v1::Reply r;
    if (!r.ParseFromString(reply.payload())) {
      return absl::InvalidArgumentError("reply: undecodable payload");
    }
    if (r.client_id() != client_->client_id() ||
        r.request_number() != request_number_ || r.replica_id() != replica) {
      return absl::InvalidArgumentError("reply: for another request");
    }
    *view = r.view();
    if (r.rejected() != pbft::v1::REJECT_REASON_UNSPECIFIED) {
      *rejection = r;
      return absl::ResourceExhaustedError(
          absl::StrCat("replica refused the request: ",
                       pbft::v1::RejectReason_Name(r.rejected())));
    }
    return r.result();
  }
  ledger::v1::QueryReply q;
  if (!q.ParseFromString(reply.payload())) {
    return absl::InvalidArgumentError("query reply: undecodable payload");
  }
  if (q.client_id() != client_->client_id() ||
      q.request_number() != request_number_ || q.replica_id() != replica) {
    return absl::InvalidArgumentError("query reply: for another query");
  }
  q.clear_replica_id();  // Everything else must match across replicas,
  // except how each replica saw a block committed (verified instead).
  if (q.has_block_commit()) {
    *commit = std::move(*q.mutable_block_commit());
    q.clear_block_commit();
  }
  std::string key;
  google::protobuf::io::StringOutputStream sos(&key);
  google::protobuf::io::CodedOutputStream cos(&sos);
  cos.SetSerializationDeterministic(true);
  q.SerializeToCodedStream(&cos);
  cos.Trim();
  return key;
}

void FanOut::OnReply(uint32_t replica, absl::Duration backoff,
                     const grpc::Status& s, const pbft::v1::Envelope& reply) {
  // An answer other than a reply, from a replica that another call for
  // this request is still out at (a copy without the word): that call's
  // answer is the one counted. So a refusal of one copy does not count
  // while the other may be admitted and ordered.
  bool other_in_flight = false;
  {
    absl::MutexLock l(&mu_);
    heard_.insert(replica);
    other_in_flight = --in_flight_[replica] > 0;
  }
  if (!s.ok() && !IsPermanent(s.error_code())) {
    if (other_in_flight) return;
    if (OnRefused(replica, backoff, s, pbft::v1::Reply())) return;
    Retry(replica, backoff, s.error_message());
    return;
  }
  std::string key;
  ledger::v1::BlockCommit commit;
  uint64_t view = 0;
  if (s.ok()) {
    pbft::v1::Reply rejection;
    absl::StatusOr<std::string> k =
        MatchKey(replica, reply, &rejection, &commit, &view);
    if (!k.ok()) {
      if (OnFinalRejection(replica, reply, rejection)) return;
      if (other_in_flight) return;
      if (OnRefused(replica, backoff, s, rejection)) return;
      Retry(replica, backoff, std::string(k.status().message()));
      return;
    }
    key = *std::move(k);
  }

  // Replies are handled on the client's single poller thread, so no other
  // OnReply runs while this one verifies outside the lock.
  std::vector<std::pair<uint32_t, pbft::v1::Envelope>> to_verify;
  {
    absl::MutexLock l(&mu_);
    if (finished_ || !voted_.insert(replica).second) return;
    if (s.ok()) {
      views_[replica] = view;
      if (commit.has_certificate()) block_commits_[replica] = std::move(commit);
      auto& pending = unverified_[key];
      pending.emplace_back(replica, reply);
      if (votes_[key].size() + pending.size() >= needed_)
        to_verify.swap(pending);
    }
  }
  std::vector<uint32_t> verified;
  for (const auto& [r, env] : to_verify) {
    if (client_->verifier().Check(env) == EnvelopeError::kOk)
      verified.push_back(r);
  }
  std::optional<absl::StatusOr<std::string>> outcome;
  bool ask_again = false;
  bool arm_hedge = false;
  std::vector<uint32_t> reask;
  bool arm_reask = false;
  Done done;
  {
    absl::MutexLock l(&mu_);
    if (finished_) return;
    outcome = Tally(replica, s, key, verified, to_verify.size());
    if (outcome.has_value()) {
      if (outcome->ok()) NoteCompleted(key);
      finished_ = true;
      done = std::move(done_);
    }
    ask_again = !finished_ && RestartSplitQuery();
    if (!finished_) reask = TakeRefusersIfShortLocked(&arm_reask);
    arm_hedge = !finished_ && s.ok() && !hedge_armed_ && !AllAskedLocked();
    hedge_armed_ = hedge_armed_ || arm_hedge;
  }
  if (done) {
    // For a query the match key is the answer less the replica id: a
    // complete QueryReply that the caller decodes.
    done(*std::move(outcome));
    return;
  }
  if (ask_again) AskAgain(backoff);
  for (uint32_t r : reask) Send(r, backoff);
  if (arm_reask) ArmReask();
  if (arm_hedge) ArmHedge();
  WidenIfAllAnswered();
}

std::optional<absl::StatusOr<std::string>> FanOut::Tally(
    uint32_t replica, const grpc::Status& s, const std::string& key,
    const std::vector<uint32_t>& verified, size_t checked) {
  if (!s.ok()) {
    // f+1 replicas agree that the request itself is bad: at least one of
    // them is correct, so it is.
    std::set<uint32_t>& set = permanent_[s.error_code()];
    set.insert(replica);
    if (set.size() < client_weak_quorum_) return std::nullopt;
    return absl::StatusOr<std::string>(absl::Status(
        static_cast<absl::StatusCode>(s.error_code()), s.error_message()));
  }
  std::set<uint32_t>& v = votes_[key];
  v.insert(verified.begin(), verified.end());
  if (verified.size() < checked) {
    last_error_[replica] = "a reply's signature does not verify";
  }
  if (v.size() < needed_) return std::nullopt;
  return kind_ == Kind::kQuery ? WithBlockCommit(key, v)
                               : absl::StatusOr<std::string>(key);
}

// A query whose answers split (replicas at different heights) is asked
// again once every replica has answered.
bool FanOut::RestartSplitQuery() {
  if (kind_ != Kind::kQuery || voted_.size() != client_->replica_count()) {
    return false;
  }
  voted_.clear();
  votes_.clear();
  unverified_.clear();
  permanent_.clear();
  block_commits_.clear();
  return true;
}

void FanOut::AskAgain(absl::Duration backoff) {
  auto self = shared_from_this();
  absl::Duration next = std::min(backoff * 2, client_->options().retry_max);
  client_->timers().At(
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(backoff),
      [self, next] {
        for (uint32_t r = 0; r < self->client_->replica_count(); ++r) {
          self->Send(r, next);
        }
      });
}

absl::StatusOr<std::string> FanOut::WithBlockCommit(
    const std::string& key, const std::set<uint32_t>& voters) {
  ledger::v1::QueryReply q;
  if (!q.ParseFromString(key) || (!q.has_block() && !q.has_receipt())) {
    return key;
  }
  const ledger::v1::BlockHeader& header =
      q.has_block() ? q.block().header() : q.receipt().header();
  std::string why = "no answer carried one";
  for (uint32_t r : voters) {
    auto it = block_commits_.find(r);
    if (it == block_commits_.end()) continue;
    absl::Status s = VerifyAnswerCommit(q, header, it->second);
    if (!s.ok()) {
      why = absl::StrCat("replica ", r, "'s: ", s.message());
      continue;
    }
    *q.mutable_block_commit() = it->second;
    return q.SerializeAsString();
  }
  // 2f+1 matching answers include f+1 correct replicas, each with a valid
  // certificate: none valid means the answers cannot be trusted.
  return absl::DataLossError(absl::StrCat(
      "block ", header.height(),
      ": no valid commit certificate among the matching answers (", why, ")"));
}

bool FanOut::OnFinalRejection(uint32_t replica, const pbft::v1::Envelope& reply,
                              const pbft::v1::Reply& rejection) {
  const pbft::v1::RejectReason reason = rejection.rejected();
  const bool stale = reason == pbft::v1::REJECT_REASON_STALE_REQUEST_NUMBER &&
                     rejection.last_request_number() > request_number_;
  if (!stale && reason != pbft::v1::REJECT_REASON_TOO_LARGE) return false;
  // Acted upon, so checked at once (a rare path).
  if (client_->verifier().Check(reply) != EnvelopeError::kOk) return false;
  Done done;
  absl::Status outcome;
  {
    absl::MutexLock l(&mu_);
    if (finished_ || !voted_.insert(replica).second) return true;
    auto& by_replica = final_rejections_[reason];
    by_replica[replica] = rejection.last_request_number();
    last_error_[replica] = pbft::v1::RejectReason_Name(reason);
    if (by_replica.size() >= client_weak_quorum_) {
      finished_ = true;
      done = std::move(done_);
      outcome = FinalRejection(stale, by_replica);
    }
  }
  if (!done) {
    WidenIfAllAnswered();  // Fewer than f+1 so far: ask the others.
    return true;
  }
  done(outcome);
  return true;
}

absl::Status FanOut::FinalRejection(
    bool stale, const std::map<uint32_t, uint64_t>& by_replica) const {
  if (!stale) {
    return absl::ResourceExhaustedError(
        "request refused by f+1 replicas: larger than the cluster's "
        "batch_bytes_max; it was not executed");
  }
  // The (f+1)-th highest number named: at least one correct replica
  // vouches for it, so no faulty replica can push the client's numbers up
  // on its own.
  std::vector<uint64_t> lasts;
  for (const auto& [r, last] : by_replica) lasts.push_back(last);
  std::sort(lasts.begin(), lasts.end(), std::greater<uint64_t>());
  const uint64_t last = lasts[client_weak_quorum_ - 1];
  absl::Status outcome = absl::FailedPreconditionError(
      absl::StrCat("request number ", request_number_,
                   " is stale: the client's last request number is ", last,
                   " (f+1 replicas say so)"));
  outcome.SetPayload(kStaleUrl, absl::Cord(absl::StrCat(last)));
  return outcome;
}

absl::Status FanOut::VerifyAnswerCommit(
    const ledger::v1::QueryReply& q, const ledger::v1::BlockHeader& header,
    const ledger::v1::BlockCommit& c) const {
  if (q.has_block()) {
    return ledger::VerifyBlockCommit(client_->cluster(), client_->verifier(),
                                     header, c.view(), c.pre_prepare(),
                                     c.certificate());
  }
  // A receipt: the certificate of its batch (the header's timestamp is
  // bound by the transfer record and result, VerifyReceipt).
  absl::StatusOr<Digest> digest = Digest::FromBytes(header.batch_digest());
  if (!digest.ok()) return absl::InvalidArgumentError("batch_digest");
  return ledger::VerifyCommitCertificate(
      client_->cluster(), client_->verifier(), c.view(), header.height(),
      *digest, c.certificate());
}

bool FanOut::OnRefused(uint32_t replica, absl::Duration backoff,
                       const grpc::Status& s,
                       const pbft::v1::Reply& rejection) {
  const bool refused =
      s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
      rejection.rejected() == pbft::v1::REJECT_REASON_QUEUE_FULL ||
      rejection.rejected() == pbft::v1::REJECT_REASON_CLIENT_SHARE_FULL;
  if (!refused || kind_ != Kind::kSubmit || client_->options().retry_refused) {
    return false;
  }
  // The call fails when every replica asked so far refused it and they are
  // at least f+1 (one of them correct): none of them holds the request, so
  // unless a faulty one kept it, it is not ordered. Otherwise a replica
  // that admitted it forwards it to the primary and it may execute: the
  // call goes on, and once a reply says it executed, the replicas that
  // refused are asked again if those that admitted it are too few to
  // complete it (a replica answers a request it executed from its stored
  // reply, whatever its load).
  Done done;
  absl::Status outcome;
  bool widen = false;
  std::vector<uint32_t> reask;
  bool arm_reask = false;
  bool withdraw = false;
  {
    absl::MutexLock l(&mu_);
    if (finished_ || voted_.contains(replica)) return true;
    const std::string error =
        s.ok() ? pbft::v1::RejectReason_Name(rejection.rejected())
               : s.error_message();
    voted_.insert(replica);
    refused_.insert(replica);
    last_error_[replica] = error;
    // The backups told the primary has the request would hold it half a
    // view-change timeout before forwarding it: a copy without the word
    // has them forward it now.
    withdraw = TakeWordLocked(replica);
    if (RepliedLocked()) {
      // A reply came: the request executed. This replica has not executed
      // it yet (or no longer holds its reply).
      reask = TakeRefusersIfShortLocked(&arm_reask);
    } else {
      widen = Refused(&done, &outcome);
    }
  }
  if (withdraw) ArmWithdrawal(replica);
  // Not a failure of these replicas (every replica carries the same load):
  // neither avoided by later calls nor a reason to widen.
  for (uint32_t r : reask) AskLater(r, backoff);
  if (arm_reask) ArmReask();
  if (!reask.empty() || arm_reask) return true;
  if (widen) {
    Widen();  // Ask the replicas not asked yet.
    return true;
  }
  if (done) done(outcome);
  return true;
}

std::vector<uint32_t> FanOut::TakeRefusersIfShortLocked(bool* arm) {
  *arm = false;
  if (!RepliedLocked() || refused_.empty()) return {};
  uint32_t admitted = 0;
  for (uint32_t r : asked_) admitted += refused_.contains(r) ? 0 : 1;
  if (admitted >= needed_) {
    // They can complete it, unless one of them stays silent: then ask the
    // refusers anyway, a little later (one timer at a time).
    *arm = !reask_armed_;
    reask_armed_ = true;
    return {};
  }
  return TakeRefusersLocked();
}

std::vector<uint32_t> FanOut::TakeRefusersLocked() {
  std::vector<uint32_t> out(refused_.begin(), refused_.end());
  for (uint32_t r : out) voted_.erase(r);
  refused_.clear();
  return out;
}

void FanOut::ArmReask() {
  std::weak_ptr<FanOut> weak = weak_from_this();
  // As long as the reply in hand took, at least retry_initial: a replica
  // that admitted the call and is merely slower answers within it.
  const absl::Duration after = AsLongAsSoFar();
  client_->timers().After(after, [weak, after] {
    auto self = weak.lock();
    if (self == nullptr) return;  // Every replica asked has answered.
    std::vector<uint32_t> reask;
    {
      absl::MutexLock l(&self->mu_);
      self->reask_armed_ = false;  // A refusal after this may arm another.
      if (self->finished_) return;
      reask = self->TakeRefusersLocked();
    }
    for (uint32_t r : reask) self->Send(r, after);
  });
}

// With every replica asked refusing it, f+1 or more, the call ends: moves
// its callback to `done` with the outcome. Otherwise true if the replicas
// not asked yet should be asked now.
bool FanOut::Refused(Done* done, absl::Status* outcome) {
  bool all_asked_refused = true;
  bool all_asked_answered = true;
  for (uint32_t r : asked_) {
    if (!refused_.contains(r)) all_asked_refused = false;
    if (!voted_.contains(r)) all_asked_answered = false;
  }
  if (!all_asked_refused || refused_.size() < client_weak_quorum_) {
    // Ask the others only once every replica asked has answered: the
    // refusal of one still on its way must not turn a call that none of
    // them holds into one that others do. One that admitted it and stays
    // silent is covered by the call's widening timer.
    return all_asked_answered;
  }
  finished_ = true;
  *done = std::move(done_);
  std::string detail;
  for (const auto& [r, e] : last_error_) {
    absl::StrAppend(&detail, "; replica ", r, ": ", e);
  }
  *outcome = absl::ResourceExhaustedError(absl::StrCat(
      "refused for load by ", refused_.size(), " of ", client_->replica_count(),
      " replicas (every replica asked; none of them holds it): outcome "
      "unknown, resubmit the same operations later",
      detail));
  outcome->SetPayload(kOutcomeUnknownUrl, absl::Cord("1"));
  return false;
}

void FanOut::Retry(uint32_t replica, absl::Duration backoff, std::string why) {
  {
    absl::MutexLock l(&mu_);
    if (finished_) return;
    last_error_[replica] = std::move(why);
  }
  client_->first_replicas().Avoid(replica, absl::Now());
  Widen();  // One of the first replicas failed: ask the others now.
  AskLater(replica, backoff);
}

void FanOut::AskLater(uint32_t replica, absl::Duration backoff) {
  absl::Duration next = std::min(backoff * 2, client_->options().retry_max);
  auto self = shared_from_this();
  client_->timers().At(
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(backoff),
      [self, replica, next] { self->Send(replica, next); });
}

void FanOut::Finish(absl::StatusOr<std::string> result) {
  Done done;
  std::string detail;
  {
    absl::MutexLock l(&mu_);
    if (finished_) return;
    finished_ = true;
    done = std::move(done_);
    size_t best = 0;
    for (const auto& [k, v] : votes_) best = std::max(best, v.size());
    detail = absl::StrCat(best, " of ", needed_, " matching replies");
    for (const auto& [r, e] : last_error_) {
      absl::StrAppend(&detail, "; replica ", r, ": ", e);
    }
  }
  if (result.ok()) return done(std::move(result));
  absl::Status s = absl::DeadlineExceededError(absl::StrCat(
      kind_ == Kind::kSubmit ? "outcome unknown: " : "no quorum answer: ",
      "deadline passed with ", detail));
  if (kind_ == Kind::kSubmit) s.SetPayload(kOutcomeUnknownUrl, absl::Cord("1"));
  done(s);
}

}  // namespace

bool IsOutcomeUnknown(const absl::Status& s) {
  return s.GetPayload(kOutcomeUnknownUrl).has_value();
}

namespace internal {

std::unique_ptr<Client> NewGrpcClient(
    Cluster cluster, uint64_t client_id, crypto::SecretKey key,
    const ClientOptions& options,
    const std::vector<std::shared_ptr<grpc::Channel>>& channels) {
  return std::make_unique<GrpcClient>(std::move(cluster), client_id,
                                      std::move(key), options, channels);
}

}  // namespace internal

}  // namespace pbft::client
