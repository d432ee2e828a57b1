#include "replica/net/peer_sender.h"

#include <chrono>

#include "common/proto_names.h"
#include "common/thread_name.h"
#include "common/trace.h"

namespace pbft::net {

PeerSender::PeerSender(uint32_t peer_id, std::string address,
                       std::shared_ptr<grpc::ChannelCredentials> creds,
                       PeerSenderOptions options)
    : peer_id_(peer_id),
      address_(std::move(address)),
      options_(options),
      queue_(1, {options.queue_max, options.queue_bytes_max},
             FairQueue<pbft::v1::Envelope>::Overflow::kDropOldest) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(options_.message_bytes_max);
  // Notice a dead peer within seconds even when idle.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  channel_ = grpc::CreateCustomChannel(address_, std::move(creds), args);
  stub_ = ledger::v1::ReplicaService::NewStub(channel_);
  thread_ = std::thread([this] {
    NameThisThread("peer-send");
    Run();
  });
}

PeerSender::~PeerSender() {
  stopping_ = true;
  queue_.Close();
  {
    absl::MutexLock l(&ctx_mu_);
    if (ctx_ != nullptr) ctx_->TryCancel();
  }
  thread_.join();
}

bool PeerSender::connected() const {
  return channel_->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY;
}

bool PeerSender::Send(pbft::v1::Envelope e) {
  const size_t bytes = e.payload().size() + e.signature().size() + 32;
  FairQueue<pbft::v1::Envelope>::PushResult r =
      queue_.Push(0, std::move(e), bytes);
  dropped_.fetch_add(r.dropped_oldest + (r.accepted ? 0 : 1));
  return r.accepted;
}

void PeerSender::Run() {
  absl::Duration backoff = options_.backoff_initial;
  while (!stopping_) {
    grpc::ClientContext ctx;
    {
      absl::MutexLock l(&ctx_mu_);
      if (stopping_) break;
      ctx_ = &ctx;
    }
    std::unique_ptr<grpc::ClientReaderWriter<ledger::v1::StreamRequest,
                                             ledger::v1::StreamResponse>>
        stream = stub_->Stream(&ctx);
    bool healthy = true;
    while (healthy && !stopping_) {
      std::vector<pbft::v1::Envelope> batch;
      if (queue_.PopMany(&batch, options_.batch_envelopes_max,
                         absl::Milliseconds(200)) == 0) {
        continue;
      }
      // Chunk by bytes so one stream message stays within limits.
      std::vector<ledger::v1::StreamRequest> chunks(1);
      size_t bytes = 0;
      for (pbft::v1::Envelope& e : batch) {
        if (bytes > 0 &&
            bytes + e.payload().size() > options_.batch_bytes_max) {
          chunks.emplace_back();
          bytes = 0;
        }
        bytes += e.payload().size();
        *chunks.back().add_envelopes() = std::move(e);
      }
      for (const ledger::v1::StreamRequest& chunk : chunks) {
        const auto count = static_cast<uint64_t>(chunk.envelopes_size());
        if (trace::Enabled()) {
          for (const pbft::v1::Envelope& e : chunk.envelopes()) {
            trace::Event("write", e.type(), peer_id_);
          }
        }
        if (!healthy || !stream->Write(chunk)) {
          healthy = false;
          dropped_.fetch_add(count);
          continue;
        }
        sent_.fetch_add(count);
        backoff = options_.backoff_initial;
      }
    }
    {
      absl::MutexLock l(&ctx_mu_);
      ctx_ = nullptr;
    }
    ctx.TryCancel();
    stream->Finish();
    if (stopping_) break;
    reconnects_.fetch_add(1);
    // Back off; wake early only to stop.
    absl::Time until = absl::Now() + backoff;
    while (!stopping_ && absl::Now() < until)
      absl::SleepFor(absl::Milliseconds(20));
    backoff = std::min(backoff * 2, options_.backoff_max);
  }
}

}  // namespace pbft::net
