#include "replica/net/health_service.h"

#include <utility>

#include "absl/time/clock.h"
#include "common/thread_name.h"

namespace pbft::net {

namespace hv1 = grpc::health::v1;

// One call's state machine; each operation it starts returns one of its
// tags to the queue, and the health thread hands the tag back to it.
class HealthService::Call {
 public:
  enum class Op { kRequested, kSent, kDone };
  struct Tag {
    Call* call;
    Op op;
  };
  explicit Call(HealthService* s) : s_(s) {}
  virtual ~Call() = default;
  // Handles the return of `op`; false when the call is over (delete it).
  virtual bool Proceed(Op op, bool ok) = 0;

 protected:
  void* TagFor(Op op) {
    switch (op) {
      case Op::kRequested:
        return &requested_;
      case Op::kSent:
        return &sent_;
      case Op::kDone:
        return &done_;
    }
    return nullptr;
  }
  HealthService* const s_;
  grpc::ServerContext ctx_;

 private:
  Tag requested_{this, Op::kRequested};
  Tag sent_{this, Op::kSent};
  Tag done_{this, Op::kDone};
};

// Check: one answer, then over.
class HealthService::CheckCall : public Call {
 public:
  explicit CheckCall(HealthService* s) : Call(s), responder_(&ctx_) {
    s_->service_.RequestCheck(&ctx_, &request_, &responder_, s_->cq_.get(),
                              s_->cq_.get(), TagFor(Op::kRequested));
  }
  bool Proceed(Op op, bool ok) override {
    // Answered, or not started (shut down), or started as the queue closes
    // (the server's shutdown cancelled it): over.
    if (op != Op::kRequested || !ok || s_->closing_) return false;
    new CheckCall(s_);  // The next caller's.
    s_->checks_.fetch_add(1);
    bool known = false;
    hv1::CheckResponse response;
    response.set_status(s_->StatusOf(request_.service(), &known));
    if (known) {
      responder_.Finish(response, grpc::Status::OK, TagFor(Op::kSent));
    } else {
      s_->unknown_services_.fetch_add(1);
      responder_.FinishWithError(
          grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"),
          TagFor(Op::kSent));
    }
    return true;
  }

 private:
  hv1::CheckRequest request_;
  grpc::ServerAsyncResponseWriter<hv1::CheckResponse> responder_;
};

// Watch: the status now, then each change, until the caller ends the call.
// Over once the call is done (kDone, which comes only for a call that
// started) and no write or finish of it is outstanding.
class HealthService::WatchCall : public Call {
 public:
  explicit WatchCall(HealthService* s) : Call(s), writer_(&ctx_) {
    ctx_.AsyncNotifyWhenDone(TagFor(Op::kDone));
    s_->service_.RequestWatch(&ctx_, &request_, &writer_, s_->cq_.get(),
                              s_->cq_.get(), TagFor(Op::kRequested));
  }
  bool Proceed(Op op, bool ok) override {
    switch (op) {
      case Op::kRequested:
        // Not started (shut down): no kDone will come.
        if (!ok) return false;
        // Started as the queue closes: cancelled; wait for kDone.
        if (s_->closing_) break;
        new WatchCall(s_);
        if (s_->AdmitWatcher(this)) {
          MaybeWrite();
        } else {
          sending_ = true;
          writer_.Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                      "too many Watch calls"),
                         TagFor(Op::kSent));
        }
        break;
      case Op::kSent:
        sending_ = false;
        if (!ok) {
          s_->DropWatcher(this);  // Broken; kDone follows.
        } else {
          MaybeWrite();  // A change while this write was out.
        }
        break;
      case Op::kDone:
        done_ = true;
        s_->DropWatcher(this);
        break;
    }
    return !(done_ && !sending_);
  }
  // Writes the service's status if it changed since the last write and no
  // write is outstanding.
  void MaybeWrite() {
    if (sending_ || done_ || s_->closing_) return;
    bool known = false;
    hv1::ServingStatus now = s_->StatusOf(request_.service(), &known);
    if (!known) now = hv1::SERVING_STATUS_SERVICE_UNKNOWN;
    if (sent_any_ && now == last_) return;
    hv1::WatchResponse response;
    response.set_status(now);
    last_ = now;
    sent_any_ = true;
    sending_ = true;
    writer_.Write(response, TagFor(Op::kSent));
  }

 private:
  hv1::WatchRequest request_;
  grpc::ServerAsyncWriter<hv1::WatchResponse> writer_;
  bool sending_ = false;
  bool done_ = false;
  bool sent_any_ = false;
  hv1::ServingStatus last_ = hv1::SERVING_STATUS_UNSPECIFIED;
};

HealthService::HealthService(Options options) : options_(options) {}

HealthService::~HealthService() { Shutdown(); }

void HealthService::Register(grpc::ServerBuilder* builder) {
  builder->RegisterService(&service_);
  builder->SetMaxReceiveMessageSize(options_.request_bytes_max);
  cq_ = builder->AddCompletionQueue();
}

void HealthService::Start() {
  new CheckCall(this);
  new WatchCall(this);
  thread_ = std::thread([this] {
    NameThisThread("health");
    Run();
  });
}

void HealthService::Set(const std::string& service, bool serving) {
  absl::MutexLock l(&mu_);
  statuses_[service] = serving;
}

void HealthService::Shutdown() {
  if (cq_ == nullptr || stopping_.exchange(true)) return;
  if (thread_.joinable()) {
    thread_.join();  // It shuts the queue down and drains it.
  } else {
    Close();
    while (Drain()) {
    }
  }
}

hv1::ServingStatus HealthService::StatusOf(const std::string& service,
                                           bool* known) const {
  absl::MutexLock l(&mu_);
  auto it = statuses_.find(service);
  *known = it != statuses_.end();
  if (!*known) return hv1::SERVING_STATUS_UNSPECIFIED;
  return it->second ? hv1::SERVING_STATUS_SERVING
                    : hv1::SERVING_STATUS_NOT_SERVING;
}

void HealthService::Run() {
  while (Drain()) {
    NotifyWatchers();
    if (stopping_.load() && !closing_) {
      Close();
      continue;  // Drains what is left, without sleeping.
    }
    absl::SleepFor(options_.poll);
  }
}

void HealthService::Close() {
  // Every operation starts on this thread and none starts once closing_ is
  // set, so none starts after the queue's shutdown.
  closing_ = true;
  cq_->Shutdown();
}

bool HealthService::Drain() {
  for (;;) {
    void* tag = nullptr;
    bool ok = false;
    switch (cq_->AsyncNext(&tag, &ok, std::chrono::system_clock::now())) {
      case grpc::CompletionQueue::SHUTDOWN:
        return false;
      case grpc::CompletionQueue::TIMEOUT:
        return true;
      case grpc::CompletionQueue::GOT_EVENT: {
        auto* t = static_cast<Call::Tag*>(tag);
        if (!t->call->Proceed(t->op, ok)) delete t->call;
        break;
      }
    }
  }
}

void HealthService::NotifyWatchers() {
  for (WatchCall* w : watchers_) w->MaybeWrite();
}

bool HealthService::AdmitWatcher(WatchCall* w) {
  if (static_cast<int>(watchers_.size()) >= options_.watchers_max) {
    watchers_refused_.fetch_add(1);
    return false;
  }
  watchers_.insert(w);
  return true;
}

void HealthService::DropWatcher(WatchCall* w) { watchers_.erase(w); }

}  // namespace pbft::net
