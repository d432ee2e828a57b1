#include "replica/net/client_service.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <algorithm>
#include <deque>
#include <set>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/envelope.h"
#include "common/proto_names.h"
#include "common/thread_name.h"

namespace pbft::net {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

// The number of operations in ledger.v1.OperationBatch bytes (field 1,
// repeated), counted from the wire format without decoding them. Bytes that
// do not scan count as 0: the ledger answers them as MALFORMED_BATCH.
size_t CountOperations(const std::string& batch) {
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(batch.data()),
      static_cast<int>(batch.size()));
  size_t n = 0;
  while (uint32_t tag = in.ReadTag()) {
    if (google::protobuf::internal::WireFormatLite::GetTagFieldNumber(tag) ==
        1) {
      ++n;
    }
    if (!google::protobuf::internal::WireFormatLite::SkipField(&in, tag)) {
      return 0;
    }
  }
  return n;
}

// What admission by expected wait needs of a request envelope's
// pbft.v1.Request (fields 1, 2 and 4: client_id, request_number,
// read_only), read from the wire format without decoding the rest: the
// admission check comes before the signature check.
struct RequestFields {
  bool scanned = false;  // The payload parsed as far as the wire format.
  bool read_only = false;
  uint64_t client_id = 0;
  uint64_t request_number = 0;
};

RequestFields ScanRequest(const pbft::v1::Envelope& e) {
  const std::string& payload = e.payload();
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(payload.data()),
      static_cast<int>(payload.size()));
  RequestFields r;
  using google::protobuf::internal::WireFormatLite;
  while (uint32_t tag = in.ReadTag()) {
    uint64_t* field = nullptr;
    uint64_t read_only = 0;
    switch (tag) {
      case WireFormatLite::MakeTag(1, WireFormatLite::WIRETYPE_VARINT):
        field = &r.client_id;
        break;
      case WireFormatLite::MakeTag(2, WireFormatLite::WIRETYPE_VARINT):
        field = &r.request_number;
        break;
      case WireFormatLite::MakeTag(4, WireFormatLite::WIRETYPE_VARINT):
        field = &read_only;
        break;
      default:
        if (!WireFormatLite::SkipField(&in, tag)) return RequestFields();
        continue;
    }
    if (!in.ReadVarint64(field)) return RequestFields();
    if (field == &read_only) r.read_only = read_only != 0;
  }
  r.scanned = true;
  return r;
}

// The client's primary_view hint of a SubmitRequest or SessionRequest.
template <typename Call>
std::optional<uint64_t> PrimaryView(const Call& call) {
  if (!call.has_primary_view()) return std::nullopt;
  return call.primary_view();
}

// A completion-queue tag: runs `fn(ok)` once, then deletes itself.
struct Tag {
  std::function<void(bool)> fn;
  static Tag* Make(std::function<void(bool)> fn) {
    return new Tag{std::move(fn)};
  }
};

}  // namespace

// Life cycle shared by the three calls: the object frees itself once its
// "done" notification (call finished or cancelled) has arrived, its arrival
// has been handled, and, if it sent an answer, that answer's completion has
// arrived too. The completion queue has several threads, and a client that
// cancels (the SDK does once it has its quorum) makes the done notification
// run on one thread while the arrival is still being handled on another:
// both hold a reference from the start.
class ClientService::Call {
 public:
  explicit Call(ClientService* owner) : owner_(owner) {}
  virtual ~Call() = default;

  // Waits for the next call of type T (T::Request asks gRPC for it,
  // T::OnArrived handles it); nothing once the completion queue is closed.
  template <typename T>
  static void Accept(ClientService* owner) {
    T* call = new T(owner);
    Tag* arrived = Tag::Make([call](bool ok) { call->OnArrived(ok); });
    if (!owner->StartOp([&] {
          call->ArmDone();
          call->Request(arrived);
        })) {
      delete arrived;
      call->DropUnstarted();
    }
  }

 protected:
  friend class ClientService;
  // Arms the done notification; must precede the Request* call.
  void ArmDone() {
    done_tag_ = Tag::Make([this](bool) {
      gone_.store(true);
      OnDone();
      Release();
    });
    ctx_.AsyncNotifyWhenDone(done_tag_);
  }
  // For a call that never started (server shutting down), gRPC never
  // delivers the done tag: free it with the call.
  void DropUnstarted() {
    delete done_tag_;
    delete this;
  }
  virtual void OnDone() {}
  void Hold() {
    absl::MutexLock l(&mu_);
    ++refs_;
  }
  void Release() {
    bool last;
    {
      absl::MutexLock l(&mu_);
      last = --refs_ == 0;
    }
    if (last) delete this;
  }
  // Starts the answer's operation (`start(tag)`), whose completion gives
  // back the reference ClaimAnswer took; if the completion queue is closed
  // (shutting down) the reference goes at once.
  template <typename F>
  void StartAnswer(F start) {
    Tag* tag = Tag::Make([this](bool) { Release(); });
    if (!owner_->StartOp([&] { start(tag); })) {
      delete tag;
      Release();
    }
  }
  // True the first time only: one answer per call.
  bool ClaimAnswer() {
    absl::MutexLock l(&mu_);
    if (answered_) return false;
    answered_ = true;
    ++refs_;  // Released when the answer's completion arrives.
    return true;
  }

  ClientService* owner_;
  Tag* done_tag_ = nullptr;
  // The done notification has run: the call finished or its client gave up.
  std::atomic<bool> gone_{false};
  grpc::ServerContext ctx_;
  absl::Mutex mu_;
  // The done notification and the arrival.
  int refs_ ABSL_GUARDED_BY(mu_) = 2;
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
};

// Something taken from gRPC that waits in the intake (Take) to be checked
// on a worker: a Submit or Query call, or one request of a Session.
class ClientService::Intake {
 public:
  virtual ~Intake() = default;
  // On a worker: checks it and hands it over (or answers it). Gives up the
  // intake's hold on it.
  virtual void Check() = 0;
  // Answers `s` instead (the intake is full). Gives up the intake's hold.
  virtual void Refuse(const absl::Status& s) = 0;
};

// What waits in pending_ for DeliverReply: a Submit call or one ordered
// request of a Session. Its fields are guarded by the owner's mu_.
class ClientService::Waiter {
 public:
  virtual ~Waiter() = default;
  // Under the owner's mu_. Answers with the reply. True: the waiter is done
  // (DeliverReply takes it out of pending_ and deletes it); false: it stays
  // until its call's done notification removes it.
  virtual bool Answer(const pbft::v1::Envelope& reply) = 0;
  // Under the owner's mu_, when it is added to pending_ (false: its client
  // is gone, do not add it) and when it leaves pending_.
  virtual bool Attach() = 0;
  virtual void Detach() {}
};

// A call that goes through the intake: checked on a worker.
class ClientService::QueuedCall : public Call, public Intake {
 public:
  using Call::Call;
  // Check(): gives back the arrival's reference.
  // Refuse(s): answers `s` and gives back the arrival's reference.
};

class ClientService::SubmitCall final : public QueuedCall, public Waiter {
 public:
  explicit SubmitCall(ClientService* owner)
      : QueuedCall(owner), responder_(&ctx_) {}

  bool Answer(const pbft::v1::Envelope& reply) override {
    if (!ClaimAnswer()) return false;
    ledger::v1::SubmitResponse resp;
    *resp.mutable_reply() = reply;
    StartAnswer([&](Tag* t) { responder_.Finish(resp, grpc::Status::OK, t); });
    return false;
  }
  bool Attach() override {
    if (done_) return false;
    registered_ = true;
    return true;
  }
  void Detach() override { registered_ = false; }

  void Fail(const absl::Status& s) {
    if (!ClaimAnswer()) return;
    StartAnswer([&](Tag* t) { responder_.FinishWithError(ToGrpc(s), t); });
  }

 private:
  friend class Call;
  void Request(Tag* arrived) {
    owner_->service_.RequestSubmit(&ctx_, &request_, &responder_,
                                   owner_->cq_.get(), owner_->cq_.get(),
                                   arrived);
  }

  void OnArrived(bool ok) {
    if (!ok) return DropUnstarted();
    Accept<SubmitCall>(owner_);  // Keep accepting.
    owner_->Take(this, ctx_.peer(), request_.request().ByteSizeLong(),
                 owner_->WaitCheckDraw(request_.request()));
  }

  void Check() override {
    if (!gone_.load()) Process();
    Release();  // The arrival's reference.
  }

  void Refuse(const absl::Status& s) override {
    Fail(s);
    Release();  // The arrival's reference.
  }

  void Process() {
    absl::Status s =
        owner_->Admit(request_.request(), /*read_only=*/false, &decoded_);
    if (!s.ok()) return Fail(s);
    key_ = {decoded_.client_id(), decoded_.request_number()};
    // Register before handing over: the reply may come at once (e.g. the
    // stored reply of an already executed request).
    const AddResult added = owner_->AddPending(key_, this);
    if (added == AddResult::kCallDone) return;  // The client is gone.
    if (added != AddResult::kAdded) {
      return Fail(owner_->Refusal(added, key_.first));
    }
    absl::Status accepted = owner_->handlers_.submit(
        request_.request(), decoded_, PrimaryView(request_));
    if (!accepted.ok()) {
      owner_->CountRejected(accepted.code());
      owner_->RemovePending(this);
      Fail(accepted);
    }
    // Waiting for the reply needs only key_: free the request's bytes.
    ledger::v1::SubmitRequest().Swap(&request_);
    pbft::v1::Request().Swap(&decoded_);
  }

  void OnDone() override { owner_->RemovePending(this); }

  friend class ClientService;
  ledger::v1::SubmitRequest request_;
  pbft::v1::Request decoded_;
  std::pair<uint64_t, uint64_t> key_;
  // Guarded by owner_->mu_: whether the call is in pending_, and whether
  // its done notification has run (then it must never be added).
  bool registered_ = false;
  bool done_ = false;
  grpc::ServerAsyncResponseWriter<ledger::v1::SubmitResponse> responder_;
};

class ClientService::QueryCall final : public QueuedCall {
 public:
  explicit QueryCall(ClientService* owner)
      : QueuedCall(owner), responder_(&ctx_) {}

 private:
  friend class Call;
  void Request(Tag* arrived) {
    owner_->service_.RequestQuery(&ctx_, &request_, &responder_,
                                  owner_->cq_.get(), owner_->cq_.get(),
                                  arrived);
  }

  void OnArrived(bool ok) {
    if (!ok) return DropUnstarted();
    Accept<QueryCall>(owner_);
    owner_->Take(this, ctx_.peer(), request_.query().ByteSizeLong(),
                 /*draw=*/std::nullopt);
  }

  void Refuse(const absl::Status& s) override {
    Answer(s);
    Release();  // The arrival's reference.
  }

  void Check() override {
    if (gone_.load()) return Release();
    absl::Status s =
        owner_->Admit(request_.query(), /*read_only=*/true, &decoded_);
    if (!s.ok()) {
      Answer(s);
    } else {
      Hold();  // Until `done` runs.
      owner_->handlers_.query(request_.query(), decoded_,
                              [this](absl::StatusOr<pbft::v1::Envelope> r) {
                                Answer(std::move(r));
                                Release();
                              });
    }
    Release();  // The arrival's reference.
  }

  void Answer(absl::StatusOr<pbft::v1::Envelope> r) {
    if (!ClaimAnswer()) return;
    if (!r.ok()) {
      StartAnswer(
          [&](Tag* t) { responder_.FinishWithError(ToGrpc(r.status()), t); });
      return;
    }
    ledger::v1::QueryResponse resp;
    *resp.mutable_reply() = *std::move(r);
    StartAnswer([&](Tag* t) { responder_.Finish(resp, grpc::Status::OK, t); });
  }

  ledger::v1::QueryRequest request_;
  pbft::v1::Request decoded_;
  grpc::ServerAsyncResponseWriter<ledger::v1::QueryResponse> responder_;
};

class ClientService::StatusCall final : public Call {
 public:
  explicit StatusCall(ClientService* owner) : Call(owner), responder_(&ctx_) {}

 private:
  friend class Call;
  void Request(Tag* arrived) {
    owner_->service_.RequestStatus(&ctx_, &request_, &responder_,
                                   owner_->cq_.get(), owner_->cq_.get(),
                                   arrived);
  }

  void OnArrived(bool ok) {
    if (!ok) return DropUnstarted();
    Accept<StatusCall>(owner_);
    ClaimAnswer();
    const ledger::v1::StatusResponse status = owner_->handlers_.status();
    StartAnswer(
        [&](Tag* t) { responder_.Finish(status, grpc::Status::OK, t); });
    Release();  // The arrival's reference.
  }

  ledger::v1::StatusRequest request_;
  grpc::ServerAsyncResponseWriter<ledger::v1::StatusResponse> responder_;
};

// One Session stream. It reads requests while fewer than
// Limits::session_window of them wait for their answer to be written (and
// while the answers waiting to be written hold less than half of
// Limits::session_answer_bytes_max; beyond all of it, with a write stuck
// for Limits::session_stall, the stream is cancelled, counted as
// RESOURCE_EXHAUSTED),
// hands each to the intake as a SessionItem, and writes the answers back
// one at a time in the order they come. Every started operation (read,
// write, finish) and every item holds a reference.
class ClientService::SessionCall final : public Call {
 public:
  explicit SessionCall(ClientService* owner) : Call(owner), stream_(&ctx_) {}

  // Queues the answer to request `id` for writing; it leaves the window
  // once written. Nothing if the stream is gone.
  void Respond(uint64_t id, absl::StatusOr<pbft::v1::Envelope> r) {
    ledger::v1::SessionResponse resp;
    resp.set_id(id);
    if (r.ok()) {
      *resp.mutable_reply() = *std::move(r);
    } else {
      resp.set_status_code(static_cast<int32_t>(r.status().code()));
      resp.set_status_message(std::string(r.status().message()));
    }
    const size_t bytes = resp.ByteSizeLong();
    absl::MutexLock l(&io_mu_);
    if (broken_) return;
    if (out_bytes_ + bytes > owner_->limits_.session_answer_bytes_max &&
        writing_ &&
        absl::Now() - write_started_ >= owner_->limits_.session_stall) {
      // The client has not read its answers for a while: end the stream
      // rather than hold more for it.
      owner_->CountRejected(absl::StatusCode::kResourceExhausted);
      broken_ = true;
      out_.clear();
      out_bytes_ = 0;
      ctx_.TryCancel();
      return;
    }
    out_bytes_ += bytes;
    out_.push_back({std::move(resp), bytes});
    MaybeWrite();
  }
  bool gone() const { return gone_.load(); }

 private:
  friend class Call;
  friend class ClientService;
  friend class SessionItem;

  void Request(Tag* arrived) {
    owner_->service_.RequestSession(&ctx_, &stream_, owner_->cq_.get(),
                                    owner_->cq_.get(), arrived);
  }

  void OnArrived(bool ok) {
    if (!ok) return DropUnstarted();
    Accept<SessionCall>(owner_);
    peer_ = ctx_.peer();
    {
      absl::MutexLock l(&io_mu_);
      MaybeRead();
    }
    Release();  // The arrival's reference.
  }

  // Starts an operation holding a reference; `then(ok)` runs on its
  // completion. Not started once the completion queue is closed.
  template <typename F>
  bool StartHeld(F start, std::function<void(bool)> then) {
    Hold();
    Tag* tag = Tag::Make([this, then = std::move(then)](bool ok) {
      then(ok);
      Release();
    });
    if (owner_->StartOp([&] { start(tag); })) return true;
    delete tag;
    Release();
    return false;
  }

  void MaybeRead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_) {
    if (reading_ || read_done_ || broken_ ||
        in_window_ >= owner_->limits_.session_window ||
        out_bytes_ >= owner_->limits_.session_answer_bytes_max / 2) {
      return;
    }
    reading_ = true;
    if (!StartHeld([&](Tag* t) { stream_.Read(&incoming_, t); },
                   [this](bool ok) { OnRead(ok); })) {
      reading_ = false;
      read_done_ = true;
    }
  }

  // A request read (or the end of the client's side).
  void OnRead(bool ok);

  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_) {
    if (writing_ || out_.empty() || broken_) return;
    writing_ = true;
    write_started_ = absl::Now();
    writing_now_ = std::move(out_.front().first);
    out_bytes_ -= out_.front().second;
    out_.pop_front();
    if (!StartHeld([&](Tag* t) { stream_.Write(writing_now_, t); },
                   [this](bool ok) { OnWritten(ok); })) {
      writing_ = false;
      broken_ = true;
      out_.clear();
      out_bytes_ = 0;
    }
  }

  void OnWritten(bool ok) {
    absl::MutexLock l(&io_mu_);
    writing_ = false;
    --in_window_;
    if (!ok) {
      broken_ = true;
      out_.clear();
      out_bytes_ = 0;
      return;
    }
    MaybeWrite();
    MaybeRead();
    MaybeFinish();
  }

  // Ends the call once the client closed its side and every request read
  // has been answered.
  void MaybeFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_) {
    if (!read_done_ || in_window_ > 0 || writing_ || finishing_ || broken_ ||
        gone_.load()) {
      return;
    }
    finishing_ = true;
    StartHeld([&](Tag* t) { stream_.Finish(grpc::Status::OK, t); },
              [](bool) {});
  }

  // The call is over (finished or cancelled): its requests still waiting
  // for a reply leave pending_.
  void OnDone() override;

  grpc::ServerAsyncReaderWriter<ledger::v1::SessionResponse,
                                ledger::v1::SessionRequest>
      stream_;
  std::string peer_;
  ledger::v1::SessionRequest incoming_;  // Only the read in flight uses it.
  absl::Mutex io_mu_;
  bool reading_ ABSL_GUARDED_BY(io_mu_) = false;
  bool read_done_ ABSL_GUARDED_BY(io_mu_) = false;
  bool writing_ ABSL_GUARDED_BY(io_mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(io_mu_) = false;
  // A write failed or the call is over: nothing more is written.
  bool broken_ ABSL_GUARDED_BY(io_mu_) = false;
  // Requests read whose answer has not been written yet.
  size_t in_window_ ABSL_GUARDED_BY(io_mu_) = 0;
  // Answers waiting to be written, with their bytes, and those bytes.
  std::deque<std::pair<ledger::v1::SessionResponse, size_t>> out_
      ABSL_GUARDED_BY(io_mu_);
  size_t out_bytes_ ABSL_GUARDED_BY(io_mu_) = 0;
  absl::Time write_started_ ABSL_GUARDED_BY(io_mu_);
  ledger::v1::SessionResponse writing_now_ ABSL_GUARDED_BY(io_mu_);
  // Guarded by owner_->mu_: its items in pending_, and whether OnDone has
  // run (then no item may be added).
  std::set<SessionItem*> waiting_;
  bool closed_ = false;
};

// One request of a Session: in the intake, then (ordered requests) in
// pending_ until its reply comes. Holds a reference to its session.
class ClientService::SessionItem final : public Intake, public Waiter {
 public:
  SessionItem(SessionCall* session, ledger::v1::SessionRequest request)
      : session_(session), request_(std::move(request)) {
    session_->Hold();
  }
  ~SessionItem() override { session_->Release(); }

  void Refuse(const absl::Status& s) override {
    session_->Respond(request_.id(), s);
    delete this;
  }

  void Check() override {
    ClientService* owner = session_->owner_;
    if (session_->gone()) {
      delete this;
      return;
    }
    const pbft::v1::Envelope& e = request_.request();
    pbft::v1::Request decoded;
    absl::Status s = owner->AdmitAs(e, Kind::kEither, &decoded);
    if (!s.ok()) return Refuse(s);
    if (decoded.read_only()) {
      SessionCall* session = session_;
      const uint64_t id = request_.id();
      session->Hold();  // Until `done` runs.
      owner->handlers_.query(
          e, decoded, [session, id](absl::StatusOr<pbft::v1::Envelope> r) {
            session->Respond(id, std::move(r));
            session->Release();
          });
      delete this;
      return;
    }
    key_ = {decoded.client_id(), decoded.request_number()};
    const std::pair<uint64_t, uint64_t> key = key_;
    SessionCall* session = session_;
    const uint64_t id = request_.id();
    // Waiting for the reply needs only the id: the request's bytes go with
    // the hand-over.
    const pbft::v1::Envelope envelope = std::move(*request_.mutable_request());
    const std::optional<uint64_t> primary_view = PrimaryView(request_);
    // Register before handing over: the reply may come at once. From here
    // on the item may be answered and deleted on another thread: only the
    // locals are used, and the session is held until the end.
    session->Hold();
    const AddResult added = owner->AddPending(key, this);
    if (added == AddResult::kCallDone) {
      delete this;
    } else if (added != AddResult::kAdded) {
      Refuse(owner->Refusal(added, key.first));
    } else {
      const absl::Status accepted =
          owner->handlers_.submit(envelope, decoded, primary_view);
      if (!accepted.ok()) {
        owner->CountRejected(accepted.code());
        if (owner->Unregister(key, this)) {
          session->Respond(id, accepted);
          delete this;
        }
      }
    }
    session->Release();
  }

  bool Answer(const pbft::v1::Envelope& reply) override {
    session_->Respond(request_.id(), reply);
    return true;
  }
  bool Attach() override {
    if (session_->closed_) return false;
    session_->waiting_.insert(this);
    return true;
  }
  void Detach() override { session_->waiting_.erase(this); }

 private:
  friend class SessionCall;
  SessionCall* session_;
  ledger::v1::SessionRequest request_;
  std::pair<uint64_t, uint64_t> key_;
};

void ClientService::SessionCall::OnRead(bool ok) {
  if (!ok) {  // The client closed its side, or the stream broke.
    absl::MutexLock l(&io_mu_);
    reading_ = false;
    read_done_ = true;
    MaybeFinish();
    return;
  }
  const size_t bytes = incoming_.request().ByteSizeLong();
  const std::optional<double> draw = owner_->WaitCheckDraw(incoming_.request());
  auto* item = new SessionItem(this, std::move(incoming_));
  incoming_.Clear();
  {
    absl::MutexLock l(&io_mu_);
    reading_ = false;
    ++in_window_;
    MaybeRead();
  }
  owner_->Take(item, peer_, bytes, draw);
}

void ClientService::SessionCall::OnDone() {
  std::vector<SessionItem*> dropped;
  {
    absl::MutexLock l(&owner_->mu_);
    closed_ = true;
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      SessionItem* item = *it++;  // Erasing detaches it from waiting_.
      CHECK(owner_->ErasePendingLocked(item->key_, item));
      dropped.push_back(item);
    }
  }
  {
    absl::MutexLock l(&io_mu_);
    broken_ = true;
    out_.clear();
    out_bytes_ = 0;
  }
  for (SessionItem* item : dropped) delete item;
}

ClientService::ClientService(VerifyPool* verifier, Handlers handlers,
                             Limits limits)
    : verifier_(verifier),
      handlers_(std::move(handlers)),
      limits_(limits),
      intake_(kIntakeSources,
              QueueShare{limits.intake_per_source_max,
                         limits.intake_source_bytes_max},
              FairQueue<std::pair<Intake*, size_t>>::Overflow::kRefuseNew),
      shares_(limits.pending_max, limits.client_pending_max),
      admission_on_(limits.admission_wait_max != absl::InfiniteDuration()),
      admission_(AdmissionGate::Options{limits.admission_wait_max,
                                        limits.admission_waiting_min},
                 absl::Now()) {}

ClientService::ClientService(VerifyPool* verifier, Handlers handlers,
                             size_t pending_max, size_t operation_bytes_max)
    : ClientService(
          verifier, std::move(handlers),
          Limits{pending_max, pending_max, operation_bytes_max, SIZE_MAX}) {}

ClientService::~ClientService() { Shutdown(); }

void ClientService::Register(grpc::ServerBuilder* builder) {
  builder->RegisterService(&service_);
  cq_ = builder->AddCompletionQueue();
}

void ClientService::Start(int threads) {
  CHECK(cq_ != nullptr);
  Call::Accept<SubmitCall>(this);
  Call::Accept<QueryCall>(this);
  Call::Accept<StatusCall>(this);
  Call::Accept<SessionCall>(this);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      NameThisThread("client-cq");
      Poll();
    });
    workers_.emplace_back([this] {
      NameThisThread("client-check");
      Work();
    });
  }
}

void ClientService::Shutdown() {
  if (shut_down_ || cq_ == nullptr) return;
  shut_down_ = true;
  {
    absl::MutexLock l(&cq_mu_);
    cq_closed_ = true;
    cq_->Shutdown();
  }
  for (std::thread& t : threads_) t.join();
  // The workers finish what was taken (answers fail at once now) and stop.
  intake_.Close();
  for (std::thread& t : workers_) t.join();
  // Drain what is left (only possible if Start was never called).
  void* tag;
  bool ok;
  while (cq_->Next(&tag, &ok)) {
    Tag* t = static_cast<Tag*>(tag);
    t->fn(false);
    delete t;
  }
}

void ClientService::Poll() {
  void* tag;
  bool ok;
  while (cq_->Next(&tag, &ok)) {
    Tag* t = static_cast<Tag*>(tag);
    t->fn(ok);
    delete t;
  }
}

namespace {

// The caller's address without its port: "ipv4:10.0.0.7:5123" is
// "ipv4:10.0.0.7", "ipv6:[::1]:5123" is "ipv6:[::1]".
absl::string_view SourceAddress(absl::string_view peer) {
  const size_t colon = peer.rfind(':');
  const size_t bracket = peer.rfind(']');
  if (colon == absl::string_view::npos || colon < peer.find(':') + 1) {
    return peer;
  }
  if (bracket != absl::string_view::npos && colon < bracket) return peer;
  return peer.substr(0, colon);
}

}  // namespace

AdmissionGate::Verdict ClientService::AdmissionNow() {
  return admission_.Estimate(absl::Now(), waiting_.load() + intake_.size());
}

absl::Status ClientService::CheckWait(double draw) {
  const size_t waiting = waiting_.load() + intake_.size();
  const AdmissionGate::Verdict v = admission_.Check(absl::Now(), waiting, draw);
  if (v.admit) return absl::OkStatus();
  refused_for_wait_.fetch_add(1);
  CountRejected(absl::StatusCode::kResourceExhausted);
  const std::string wait =
      v.expected_wait == absl::InfiniteDuration()
          ? std::string("none executed in the last second")
          : absl::StrCat("about ", absl::ToInt64Milliseconds(v.expected_wait),
                         " ms at the rate they execute");
  return absl::ResourceExhaustedError(absl::StrCat(
      "replica: ", waiting, " calls wait here for execution (", wait,
      "); at that wait ", static_cast<int>(v.refused_share * 100 + 0.5),
      "% of new calls are refused (from half the cluster's "
      "admission_wait_ms of ",
      absl::ToInt64Milliseconds(limits_.admission_wait_max),
      ", all at it); not ordered here, retry later"));
}

std::optional<double> ClientService::WaitCheckDraw(
    const pbft::v1::Envelope& request) const {
  if (!admission_on_) return std::nullopt;
  const RequestFields r = ScanRequest(request);
  if (!r.scanned) return 0.0;
  if (r.read_only) return std::nullopt;
  {
    // Unchecked: a forged envelope naming an answered request skips only
    // this check; its signature check refuses it.
    absl::MutexLock l(&answered_mu_);
    auto it = answered_.find(r.client_id);
    if (it != answered_.end() && r.request_number <= it->second) {
      return std::nullopt;
    }
  }
  // A copy of a request a call already waits for here (the client takes
  // back its word that the primary has it, the primary having refused the
  // call): refusing it sheds nothing, the first copy is held. One copy:
  // the client sends no more, and further ones are judged as new calls.
  // Unchecked too, as above.
  if (WaitingCalls(r.client_id, r.request_number) == 1) return std::nullopt;
  return AdmissionGate::CallDraw(r.client_id, r.request_number, absl::Now());
}

void ClientService::NoteAnswered(uint64_t client_id, uint64_t request_number) {
  if (!admission_on_) return;
  absl::MutexLock l(&answered_mu_);
  if (answered_.size() >= kAnsweredClientsMax &&
      !answered_.contains(client_id)) {
    answered_.clear();
  }
  uint64_t& last = answered_[client_id];
  last = std::max(last, request_number);
}

void ClientService::Take(Intake* item, const std::string& peer, size_t bytes,
                         std::optional<double> draw) {
  if (draw.has_value()) {
    if (absl::Status s = CheckWait(*draw); !s.ok()) return item->Refuse(s);
  }
  const absl::string_view source = SourceAddress(peer);
  const size_t slot = absl::Hash<absl::string_view>{}(source) % kIntakeSources;
  const size_t queued = intake_.size();
  const size_t queued_bytes = intake_bytes_.fetch_add(bytes);
  const bool room =
      queued < limits_.intake_max &&
      (queued == 0 || queued_bytes + bytes <= limits_.intake_bytes_max);
  if (room && intake_.Push(slot, {item, bytes}, bytes).accepted) return;
  intake_bytes_.fetch_sub(bytes);
  CountRejected(absl::StatusCode::kResourceExhausted);
  item->Refuse(absl::ResourceExhaustedError(
      absl::StrCat("replica: too many calls from ", source,
                   " waiting for their signature check; retry later")));
}

void ClientService::Work() {
  std::vector<std::pair<Intake*, size_t>> taken;
  while (true) {
    taken.clear();
    if (intake_.PopMany(&taken, 1, absl::Milliseconds(100)) == 0) {
      if (intake_.closed()) return;
      continue;
    }
    for (auto& [item, bytes] : taken) {
      intake_bytes_.fetch_sub(bytes);
      item->Check();
    }
  }
}

absl::Status ClientService::Admit(const pbft::v1::Envelope& e, bool read_only,
                                  pbft::v1::Request* request) {
  return AdmitAs(e, read_only ? Kind::kQuery : Kind::kSubmit, request);
}

absl::Status ClientService::AdmitAs(const pbft::v1::Envelope& e, Kind kind,
                                    pbft::v1::Request* request) {
  if (e.type() != pbft::v1::MESSAGE_TYPE_REQUEST) {
    CountRejected(absl::StatusCode::kInvalidArgument);
    return absl::InvalidArgumentError(
        "request.type: must be MESSAGE_TYPE_REQUEST");
  }
  absl::Status s = verifier_->VerifyNow(e);
  if (!s.ok()) {
    CountRejected(s.code());
    return s;
  }
  if (!request->ParseFromString(e.payload())) {
    CountRejected(absl::StatusCode::kInvalidArgument);
    return absl::InvalidArgumentError("request.payload: not a pbft.v1.Request");
  }
  if (request->client_id() != e.sender()) {
    CountRejected(absl::StatusCode::kInvalidArgument);
    return absl::InvalidArgumentError(
        absl::StrCat("request.client_id: ", request->client_id(),
                     " differs from the signer ", e.sender()));
  }
  if (request->request_number() == 0) {
    CountRejected(absl::StatusCode::kInvalidArgument);
    return absl::InvalidArgumentError("request.request_number: must not be 0");
  }
  if (kind != Kind::kEither && request->read_only() != (kind == Kind::kQuery)) {
    CountRejected(absl::StatusCode::kInvalidArgument);
    return absl::InvalidArgumentError(
        kind == Kind::kQuery
            ? "request.read_only: must be set for Query"
            : "request.read_only: must not be set for Submit (use Query)");
  }
  return CheckSize(e, *request);
}

// Refuses before ordering what can never be ordered or executed as a whole:
// a request over the batch byte limit, or (ordered requests) one with more
// operations than a request may carry.
absl::Status ClientService::CheckSize(const pbft::v1::Envelope& e,
                                      const pbft::v1::Request& request) {
  const size_t bytes = RequestBytes(e);
  if (bytes > limits_.request_bytes_max) {
    CountRejected(absl::StatusCode::kResourceExhausted);
    return absl::ResourceExhaustedError(absl::StrCat(
        "request: ", bytes, " bytes (operation ", request.operation().size(),
        " bytes) exceeds the cluster's batch_bytes_max of ",
        limits_.request_bytes_max));
  }
  if (request.read_only()) return absl::OkStatus();
  const size_t ops = CountOperations(request.operation());
  if (ops > limits_.request_operations_max) {
    CountRejected(absl::StatusCode::kResourceExhausted);
    return absl::ResourceExhaustedError(absl::StrCat(
        "request.operation: ", ops,
        " operations exceed the cluster's request_operations_max of ",
        limits_.request_operations_max, " (TOO_MANY_OPERATIONS)"));
  }
  return absl::OkStatus();
}

absl::Status ClientService::Refusal(AddResult full, uint64_t client) {
  CountRejected(absl::StatusCode::kResourceExhausted);
  if (full == AddResult::kClientFull) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "replica: client ", client, " has ", limits_.client_pending_max,
        " calls waiting for execution (its share); retry later"));
  }
  return absl::ResourceExhaustedError(
      "replica: too many requests waiting for execution; retry later");
}

ClientService::AddResult ClientService::AddPending(
    std::pair<uint64_t, uint64_t> key, Waiter* waiter) {
  absl::MutexLock l(&mu_);
  if (!waiter->Attach()) return AddResult::kCallDone;
  switch (shares_.Add(key.first)) {
    case CallShares::Result::kClientFull:
      waiter->Detach();
      return AddResult::kClientFull;
    case CallShares::Result::kFull:
      waiter->Detach();
      return AddResult::kFull;
    case CallShares::Result::kAdded:
      break;
  }
  pending_.emplace(key, waiter);
  waiting_.store(shares_.total());
  return AddResult::kAdded;
}

ClientService::PendingMap::iterator ClientService::EraseAtLocked(
    PendingMap::iterator it) {
  shares_.Remove(it->first.first);
  waiting_.store(shares_.total());
  it->second->Detach();
  return pending_.erase(it);
}

bool ClientService::ErasePendingLocked(std::pair<uint64_t, uint64_t> key,
                                       Waiter* waiter) {
  auto [begin, end] = pending_.equal_range(key);
  for (auto it = begin; it != end; ++it) {
    if (it->second == waiter) {
      EraseAtLocked(it);
      return true;
    }
  }
  return false;
}

void ClientService::RemovePending(SubmitCall* call) {
  absl::MutexLock l(&mu_);
  call->done_ = true;
  // Registered only after its key was set (AddPending, under mu_): read
  // the key here, not before taking mu_, where a done notification racing
  // the arrival saw the key unset and left the call pending for good.
  if (call->registered_) ErasePendingLocked(call->key_, call);
}

bool ClientService::Unregister(std::pair<uint64_t, uint64_t> key,
                               Waiter* waiter) {
  absl::MutexLock l(&mu_);
  return ErasePendingLocked(key, waiter);
}

CallShares::Result CallShares::Add(uint64_t client) {
  auto mine = by_client_.find(client);
  const size_t held = mine == by_client_.end() ? 0 : mine->second;
  if (held >= client_max_) return Result::kClientFull;
  if (total_ >= total_max_) return Result::kFull;
  ++by_client_[client];
  ++total_;
  return Result::kAdded;
}

void CallShares::Remove(uint64_t client) {
  auto mine = by_client_.find(client);
  CHECK(mine != by_client_.end() && mine->second > 0);
  if (--mine->second == 0) by_client_.erase(mine);
  --total_;
}

size_t CallShares::of(uint64_t client) const {
  auto mine = by_client_.find(client);
  return mine == by_client_.end() ? 0 : mine->second;
}

int ClientService::DeliverReply(uint64_t client_id, uint64_t request_number,
                                const pbft::v1::Envelope& reply) {
  // Answer under the lock: a call's done notification removes it from the
  // map under this lock before the call can be freed.
  std::vector<Waiter*> answered;
  int n = 0;
  {
    absl::MutexLock l(&mu_);
    auto [begin, end] = pending_.equal_range({client_id, request_number});
    for (auto it = begin; it != end; ++n) {
      Waiter* w = it->second;
      if (!w->Answer(reply)) {
        ++it;
        continue;
      }
      it = EraseAtLocked(it);
      answered.push_back(w);
    }
  }
  for (Waiter* w : answered) delete w;
  // Counted with admission off too: the expected wait is a metric.
  if (n > 0) admission_.Answered(absl::Now(), static_cast<uint64_t>(n));
  return n;
}

size_t ClientService::WaitingCalls(uint64_t client_id,
                                   uint64_t request_number) const {
  absl::MutexLock l(&mu_);
  return pending_.count({client_id, request_number});
}

bool ClientService::Waiting(uint64_t client_id, uint64_t request_number) const {
  return WaitingCalls(client_id, request_number) > 0;
}

size_t ClientService::pending() const {
  absl::MutexLock l(&mu_);
  return pending_.size();
}

void ClientService::CountRejected(absl::StatusCode code) {
  size_t i = static_cast<size_t>(code);
  if (i < rejected_.size()) rejected_[i].fetch_add(1);
}

uint64_t ClientService::rejected(absl::StatusCode code) const {
  size_t i = static_cast<size_t>(code);
  return i < rejected_.size() ? rejected_[i].load() : 0;
}

}  // namespace pbft::net
