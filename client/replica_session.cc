#include "client/replica_session.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace pbft::client {

// One gRPC call of the session. Each operation's tag holds it, so it lives
// until its last operation has completed, also after the session moved on
// to a new stream.
struct ReplicaSession::Stream {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<ledger::v1::SessionRequest,
                                                ledger::v1::SessionResponse>>
      rw;
  ledger::v1::SessionResponse incoming;  // The read in flight fills it.
  ledger::v1::SessionRequest writing;    // The write in flight sends it.
  grpc::Status status;                   // Filled by Finish.
  bool open = false;                     // StartCall completed.
  bool write_busy = false;
  bool ended = false;  // A read or write failed.
};

class ReplicaSession::OpTag final : public CqTag {
 public:
  OpTag(std::shared_ptr<Stream> s, std::function<void(bool)> then)
      : stream_(std::move(s)), then_(std::move(then)) {}
  void OnEvent(bool ok) override {
    then_(ok);
    delete this;
  }

 private:
  std::shared_ptr<Stream> stream_;
  std::function<void(bool)> then_;
};

bool ReplicaSession::Send(const pbft::v1::Envelope& request,
                          std::optional<uint64_t> primary_view,
                          absl::Time deadline, Done done) {
  uint64_t id;
  {
    absl::MutexLock l(&mu_);
    if (unsupported_ || closed_) return false;
    id = next_id_++;
    const Timers::Id timer =
        timers_->After(deadline - absl::Now(), [this, id] { Expire(id); });
    waiting_.emplace(id, Waiting{std::move(done), timer});
    ledger::v1::SessionRequest r;
    *r.mutable_request() = request;
    r.set_id(id);
    if (primary_view.has_value()) r.set_primary_view(*primary_view);
    out_.push_back(std::move(r));
    if (stream_ == nullptr) {
      Open();
    } else {
      MaybeWrite();
    }
  }
  return true;
}

void ReplicaSession::Open() {
  auto s = std::make_shared<Stream>();
  s->rw = stub_->PrepareAsyncSession(&s->ctx, cq_);
  stream_ = s;
  StartOp(
      s, [&](void* tag) { s->rw->StartCall(tag); },
      [this, s](bool ok) { OnStarted(s, ok); });
}

void ReplicaSession::StartOp(const std::shared_ptr<Stream>& s,
                             const std::function<void(void*)>& start,
                             std::function<void(bool)> then) {
  ++ops_;
  start(static_cast<CqTag*>(new OpTag(s, std::move(then))));
}

void ReplicaSession::OnStarted(const std::shared_ptr<Stream>& s, bool ok) {
  {
    absl::MutexLock l(&mu_);
    if (ok) {
      s->open = true;
      StartOp(
          s, [&](void* tag) { s->rw->Read(&s->incoming, tag); },
          [this, s](bool ok) { OnRead(s, ok); });
      MaybeWrite();
    } else {
      // The call could not start: Finish says why.
      s->ended = true;
      StartOp(
          s, [&](void* tag) { s->rw->Finish(&s->status, tag); },
          [this, s](bool) { OnFinished(s); });
    }
  }
  OpDone();
}

void ReplicaSession::MaybeWrite() {
  const std::shared_ptr<Stream>& s = stream_;
  if (s == nullptr || !s->open || s->ended || s->write_busy || out_.empty()) {
    return;
  }
  s->write_busy = true;
  s->writing = std::move(out_.front());
  out_.pop_front();
  StartOp(
      s, [&](void* tag) { s->rw->Write(s->writing, tag); },
      [this, s](bool ok) { OnWritten(s, ok); });
}

void ReplicaSession::OnWritten(const std::shared_ptr<Stream>& s, bool ok) {
  {
    absl::MutexLock l(&mu_);
    s->write_busy = false;
    if (!ok) {
      s->ended = true;  // The read fails too and ends the stream.
    } else if (s == stream_) {
      MaybeWrite();
    }
  }
  OpDone();
}

void ReplicaSession::OnRead(const std::shared_ptr<Stream>& s, bool ok) {
  Done done;
  grpc::Status status;
  pbft::v1::Envelope reply;
  {
    absl::MutexLock l(&mu_);
    if (!ok) {
      s->ended = true;
      StartOp(
          s, [&](void* tag) { s->rw->Finish(&s->status, tag); },
          [this, s](bool) { OnFinished(s); });
    } else {
      ledger::v1::SessionResponse& r = s->incoming;
      auto it = waiting_.find(r.id());
      if (it != waiting_.end()) {  // Else it expired or was never sent.
        done = std::move(it->second.done);
        timers_->Cancel(it->second.timer);
        waiting_.erase(it);
        if (r.status_code() == 0) {
          reply.Swap(r.mutable_reply());
        } else {
          status = grpc::Status(static_cast<grpc::StatusCode>(r.status_code()),
                                r.status_message());
        }
      }
      r.Clear();
      StartOp(
          s, [&](void* tag) { s->rw->Read(&s->incoming, tag); },
          [this, s](bool ok) { OnRead(s, ok); });
    }
  }
  if (done) done(std::move(status), std::move(reply));
  OpDone();
}

void ReplicaSession::OnFinished(const std::shared_ptr<Stream>& s) {
  Failed failed;
  grpc::Status why;
  {
    absl::MutexLock l(&mu_);
    if (s == stream_) {
      stream_ = nullptr;
      if (s->status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        unsupported_ = true;
        why = s->status;
      } else {
        why = grpc::Status(
            grpc::StatusCode::UNAVAILABLE,
            absl::StrCat("session with the replica ended: ",
                         s->status.ok() ? "closed by the replica"
                                        : s->status.error_message()));
      }
      // What was sent on it may or may not have arrived; the caller
      // retries it as after a failed call.
      failed = TakeAllLocked();
    }
  }
  Fail(std::move(failed), why);
  OpDone();
}

void ReplicaSession::Expire(uint64_t id) {
  Done done;
  {
    absl::MutexLock l(&mu_);
    auto it = waiting_.find(id);
    if (it == waiting_.end()) return;
    done = std::move(it->second.done);
    waiting_.erase(it);
  }
  done(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                    "deadline passed waiting for the replica's answer"),
       pbft::v1::Envelope());
}

ReplicaSession::Failed ReplicaSession::TakeAllLocked() {
  Failed failed;
  for (auto& [id, w] : waiting_) {
    timers_->Cancel(w.timer);
    failed.push_back(std::move(w.done));
  }
  waiting_.clear();
  out_.clear();
  return failed;
}

void ReplicaSession::Fail(Failed failed, const grpc::Status& status) {
  for (Done& done : failed) done(status, pbft::v1::Envelope());
}

void ReplicaSession::OpDone() {
  absl::MutexLock l(&mu_);
  CHECK_GT(ops_, 0);
  --ops_;
}

void ReplicaSession::Close() {
  Failed failed;
  {
    absl::MutexLock l(&mu_);
    closed_ = true;
    failed = TakeAllLocked();
    if (stream_ != nullptr) stream_->ctx.TryCancel();
  }
  Fail(std::move(failed),
       grpc::Status(grpc::StatusCode::CANCELLED, "client closed"));
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(
      +[](int* ops) { return *ops == 0; }, &ops_));
}

}  // namespace pbft::client
