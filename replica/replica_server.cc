#include "replica/replica_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <malloc.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/fair_queue.h"
#include "common/keyfile.h"
#include "common/logging.h"
#include "common/proto_names.h"
#include "common/thread_name.h"
#include "common/trace.h"
#include "common/wire_limits.h"
#include "replica/core/core.h"
#include "replica/core/crypto.h"
#include "replica/execution_stage.h"
#include "replica/fetch_server.h"
#include "replica/ledger/client_query.h"
#include "replica/ledger/ledger.h"
#include "replica/metrics.h"
#include "replica/net/client_service.h"
#include "replica/net/health_service.h"
#include "replica/net/peer_sender.h"
#include "replica/net/replica_service.h"
#include "replica/net/verify_pool.h"
#include "replica/node/ledger_adapters.h"
#include "replica/node/replica_node.h"
#include "replica/storage/background_env.h"
#include "replica/storage/protocol_store.h"

namespace pbft::replica {
namespace {

constexpr char kReadyService[] = "pbft-ledger.ready";
// Messages queued per peer (each also bounded in bytes).
constexpr size_t kPeerQueueMax = 4096;
// Arrival times kept for the request latency histogram.
constexpr size_t kLatencyTrackMax = 100000;

// The core's check of nested envelopes (client requests inside a
// PRE-PREPARE, votes inside certificates). Most of them were verified on
// the pool's threads when they arrived, so it asks the pool's cache first
// and runs Ed25519 on the core thread only for what it has not seen.
class PoolVerifier final : public core::Verifier {
 public:
  explicit PoolVerifier(const EnvelopeVerifier* direct) : direct_(direct) {}
  // Set once, before the core thread starts.
  void set_pool(net::VerifyPool* pool) { pool_ = pool; }
  bool Verify(const pbft::v1::Envelope& e) const override {
    if (pool_ != nullptr) return pool_->VerifyNow(e).ok();
    return direct_->Check(e) == EnvelopeError::kOk;
  }

 private:
  const EnvelopeVerifier* direct_;
  net::VerifyPool* pool_ = nullptr;
};

// What the core thread consumes: verified peer messages, each peer in its
// own share, and client requests in one more.
struct Inbound {
  pbft::v1::Envelope envelope;
  // A request from a client that said it sent it to this view's primary
  // too (ledger.v1.SubmitRequest.primary_view).
  std::optional<View> sent_to_primary_of;
};
using Inbox = FairQueue<Inbound>;

// Refusals the shell counts per peer, beside the verification pool's.
enum class ShellRefusal {
  kInboxFull,
  kFetchThrottled,
  kFetchMalformed,
  kCount
};
const char* ShellRefusalName(ShellRefusal r) {
  switch (r) {
    case ShellRefusal::kInboxFull:
      return "inbox_full";
    case ShellRefusal::kFetchThrottled:
      return "fetch_throttled";
    case ShellRefusal::kFetchMalformed:
      return "fetch_malformed";
    case ShellRefusal::kCount:
      break;
  }
  return "unknown";
}

QueueShare PeerShare(const Cluster& c, const ReplicaServerOptions& o) {
  return {std::max<size_t>(kPeerQueueMax, c.protocol().request_queue_max),
          std::max<size_t>(o.peer_queue_bytes_max,
                           c.protocol().message_bytes_max + (1 << 20))};
}

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     absl::string_view field) {
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(absl::StrCat(field, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ReplicaNode's transport: one PeerSender (gRPC stream) per peer, created
// when the servers start; messages to a peer without one are dropped.
class PeerTransport final : public node::Transport {
 public:
  explicit PeerTransport(
      const std::vector<std::unique_ptr<net::PeerSender>>* peers)
      : peers_(peers) {}
  void Send(ReplicaId to, const pbft::v1::Envelope& e) override {
    const uint32_t i = to.value();
    if (i < peers_->size() && (*peers_)[i] != nullptr) (*peers_)[i]->Send(e);
  }
  void Broadcast(const pbft::v1::Envelope& e) override {
    for (const auto& p : *peers_) {
      if (p != nullptr) p->Send(e);
    }
  }

 private:
  const std::vector<std::unique_ptr<net::PeerSender>>* peers_;
};

class ReplicaServerImpl final : public ReplicaServer, public node::ReplySink {
 public:
  ReplicaServerImpl(Cluster cluster, ReplicaServerOptions options,
                    crypto::SecretKey key)
      : cluster_(std::move(cluster)),
        options_(std::move(options)),
        signer_(cluster_.cluster_id(), options_.id, key),
        verifier_(cluster_.MakeVerifier()),
        core_signer_(&signer_),
        core_verifier_(&verifier_),
        metrics_(options_.id),
        limits_(WireLimits::For(cluster_.n(), cluster_.protocol())),
        inbox_(cluster_.n() + 1, PeerShare(cluster_, options_),
               Inbox::Overflow::kRefuseNew),
        shell_refused_(cluster_.n() *
                       static_cast<size_t>(ShellRefusal::kCount)) {}

  ~ReplicaServerImpl() override { Stop(); }

  absl::Status Init();
  void Stop() override;
  ledger::v1::StatusResponse Status() const override;
  void ReleaseFreeMemory() override;
  // node::ReplySink (core thread).
  bool Wants(pbft::ClientId client, pbft::RequestNumber number) override;
  void Deliver(pbft::ClientId client, pbft::RequestNumber number,
               const pbft::v1::Envelope& reply) override;

 private:
  absl::Status OpenStorage();
  absl::Status StartServers();
  void CoreLoop();
  void Admit(pbft::v1::Envelope e);
  void Refused(uint64_t peer, ShellRefusal r);
  void MirrorRefusals();
  void Handle(Inbound in);
  void TakeExecuted();
  void Drain();
  absl::Status OpenNode(const core::Options& o);
  void Publish();
  void LogViewTransition();
  void MirrorCounters();
  bool CaughtUp() const;
  [[noreturn]] void Fatal(const absl::Status& s, absl::string_view what);

  absl::Status OnSubmit(const pbft::v1::Envelope& e, const pbft::v1::Request& r,
                        std::optional<uint64_t> primary_view);
  void OnQuery(const pbft::v1::Envelope& e, const pbft::v1::Request& r,
               std::function<void(absl::StatusOr<pbft::v1::Envelope>)> done);

  Cluster cluster_;
  ReplicaServerOptions options_;
  EnvelopeSigner signer_;
  EnvelopeVerifier verifier_;
  core::Ed25519Signer core_signer_;
  PoolVerifier core_verifier_;
  Metrics metrics_;
  SystemClock clock_;
  const WireLimits limits_;

  std::unique_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<storage::ProtocolStore> store_;
  std::unique_ptr<node::LedgerStateMachine> state_machine_;
  std::unique_ptr<node::StoreStorage> storage_;
  std::unique_ptr<ExecutionStage> execution_;     // Null: no execution thread.
  std::vector<ExecutionStage::Result> executed_;  // Core thread only.
  PeerTransport transport_{&peers_};
  std::unique_ptr<node::ReplicaNode> node_;  // Core thread only.
  const core::Core* core_ = nullptr;         // node_'s; core thread only.

  Inbox inbox_;
  // Per peer x ShellRefusal.
  std::vector<std::atomic<uint64_t>> shell_refused_;
  std::unique_ptr<FetchServer> fetch_;
  std::unique_ptr<net::VerifyPool> pool_;
  std::unique_ptr<net::ReplicaServiceImpl> replica_service_;
  std::unique_ptr<net::ClientService> client_service_;
  std::vector<std::unique_ptr<net::PeerSender>> peers_;  // Null for self.
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;
  // grpc.health.v1 on health_server_ (null without a health address).
  std::unique_ptr<net::HealthService> health_;
  std::thread core_thread_;
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;

  // Published by the core thread for Status() and health.
  std::atomic<uint64_t> view_{0}, last_executed_{0}, last_committed_{0},
      stable_seq_{0}, view_changes_{0};
  std::atomic<bool> caught_up_{false};
  // Where the cluster is (Core::cluster_view/cluster_head), for Status.
  std::atomic<uint64_t> cluster_view_{0}, cluster_head_{0};
  std::atomic<bool> view_changing_{false}, in_cluster_view_{false};
  uint64_t logged_view_ = 0;  // Core thread only.

  absl::Mutex latency_mu_;
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, absl::Time> arrivals_
      ABSL_GUARDED_BY(latency_mu_);
};

absl::Status ReplicaServerImpl::Init() {
  core::Options o;
  o.id = ReplicaId(options_.id);
  o.n = cluster_.n();
  o.f = cluster_.f();
  o.params = cluster_.protocol();
  absl::Status valid = o.Validate();
  if (!valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(options_.config_path, ": ", valid.message()));
  }
  if (absl::Status s = OpenStorage(); !s.ok()) return s;
  if (absl::Status s = OpenNode(o); !s.ok()) return s;
  LOG_INFO("replica {} of cluster {}: ledger at height {}, n={} f={}",
           options_.id, cluster_.cluster_id(), ledger_->last_executed(),
           cluster_.n(), cluster_.f());
  pool_ = std::make_unique<net::VerifyPool>(
      &verifier_, options_.verify_threads, limits_,
      PeerShare(cluster_, options_),
      [this](pbft::v1::Envelope e) { Admit(std::move(e)); });
  core_verifier_.set_pool(pool_.get());
  replica_service_ = std::make_unique<net::ReplicaServiceImpl>(
      pool_.get(), options_.verify_threads == 0);
  net::ClientService::Handlers h;
  h.submit = [this](const pbft::v1::Envelope& e, const pbft::v1::Request& r,
                    std::optional<uint64_t> primary_view) {
    return OnSubmit(e, r, primary_view);
  };
  h.query = [this](
                const pbft::v1::Envelope& e, const pbft::v1::Request& r,
                std::function<void(absl::StatusOr<pbft::v1::Envelope>)> done) {
    OnQuery(e, r, std::move(done));
  };
  h.status = [this] { return Status(); };
  const ProtocolParams& pp = cluster_.protocol();
  net::ClientService::Limits limits{pp.request_queue_max, pp.client_calls_max,
                                    pp.batch_bytes_max,
                                    pp.request_operations_max};
  limits.admission_wait_max = pp.admission_wait_ms == 0
                                  ? absl::InfiniteDuration()
                                  : absl::Milliseconds(pp.admission_wait_ms);
  client_service_ =
      std::make_unique<net::ClientService>(pool_.get(), std::move(h), limits);

  if (absl::Status s = StartServers(); !s.ok()) return s;
  core_thread_ = std::thread([this] {
    NameThisThread("core");
    CoreLoop();
  });
  return absl::OkStatus();
}

// The replica loop over the ledger, the protocol store, the peer senders,
// the client calls and the fetch server (which it feeds FETCH_REQUESTs).
absl::Status ReplicaServerImpl::OpenNode(const core::Options& o) {
  node::LedgerStateMachine::Hooks hooks;
  hooks.block_applied = [this](double seconds, size_t requests) {
    metrics_.ledger_write_seconds.Observe(seconds);
    metrics_.blocks_executed.Increment();
    metrics_.batch_requests.Observe(static_cast<double>(requests));
  };
  hooks.request_result = [this](const std::string& result) {
    ledger::v1::OperationResults rs;
    if (!rs.ParseFromString(result)) return;
    for (const ledger::v1::OperationResult& r : rs.results()) {
      metrics_.TransferResult(r.code());
    }
  };
  state_machine_ =
      std::make_unique<node::LedgerStateMachine>(ledger_.get(), hooks);
  storage_ = std::make_unique<node::StoreStorage>(
      store_.get(), [this](double seconds) {
        metrics_.protocol_write_seconds.Observe(seconds);
      });
  FetchServerOptions fo;
  fo.self = options_.id;
  fo.n = cluster_.n();
  fo.response_bytes_max = limits_.fetch_response_max;
  fo.blocks_max = kFetchBlocksMax;
  fo.rate_per_s = options_.fetch_rate_per_s;
  fo.burst = options_.fetch_burst;
  fetch_ = std::make_unique<FetchServer>(
      fo, state_machine_.get(), storage_.get(), &signer_,
      [this](uint32_t peer, pbft::v1::Envelope e) {
        transport_.Send(ReplicaId(peer), e);
      });
  node::ReplicaNodeDeps deps;
  if (options_.inline_execution_bytes >= 0) {
    execution_ = std::make_unique<ExecutionStage>(
        state_machine_.get(),
        static_cast<size_t>(options_.inline_execution_bytes),
        [this] { inbox_.Wake(); });
    deps.executor = execution_.get();
  }
  deps.signer = &core_signer_;
  deps.verifier = &core_verifier_;
  deps.store = storage_.get();
  deps.state = state_machine_.get();
  deps.transport = &transport_;
  deps.replies = this;
  deps.fetch = fetch_.get();
  deps.clock = &clock_;
  absl::StatusOr<std::unique_ptr<node::ReplicaNode>> node =
      node::ReplicaNode::Open(o, deps);
  if (!node.ok()) {
    return absl::Status(
        node.status().code(),
        absl::StrCat(options_.data_dir, ": ", node.status().message()));
  }
  node_ = *std::move(node);
  core_ = &node_->core();
  return absl::OkStatus();
}

absl::Status ReplicaServerImpl::OpenStorage() {
  std::error_code ec;
  std::filesystem::create_directories(options_.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--data-dir ", options_.data_dir, ": ", ec.message()));
  }
  ledger::LedgerOptions lo;
  lo.env = storage::BackgroundEnv(options_.storage_nice);
  lo.write_buffer_bytes =
      ledger::WriteBufferForReplica(lo.write_buffer_bytes, options_.id);
  absl::StatusOr<std::unique_ptr<ledger::Ledger>> ledger =
      ledger::Ledger::Open(cluster_, options_.data_dir + "/ledger", lo);
  if (!ledger.ok()) return ledger.status();
  ledger_ = *std::move(ledger);
  absl::StatusOr<std::unique_ptr<storage::ProtocolStore>> store =
      storage::ProtocolStore::Open(options_.data_dir + "/protocol",
                                   storage::ProtocolStoreEnv());
  if (!store.ok()) return store.status();
  store_ = *std::move(store);
  return absl::OkStatus();
}

absl::Status ReplicaServerImpl::StartServers() {
  const ledger::v1::ReplicaConfig& me =
      cluster_.replica(ReplicaId(options_.id));
  std::string host;
  uint16_t port;
  CHECK_OK(ParseHostPort(me.address(), "address", &host, &port));
  const std::string bind_host =
      options_.listen_host.empty() ? host : options_.listen_host;

  // Credentials: mTLS when the config names TLS material.
  std::shared_ptr<grpc::ServerCredentials> server_creds =
      grpc::InsecureServerCredentials();
  std::shared_ptr<grpc::ChannelCredentials> peer_creds =
      grpc::InsecureChannelCredentials();
  const ledger::v1::TlsConfig& tls = cluster_.config().tls();
  if (!tls.ca_file().empty()) {
    absl::StatusOr<std::string> ca = ReadFile(tls.ca_file(), "tls.ca_file");
    absl::StatusOr<std::string> cert =
        ReadFile(tls.cert_file(), "tls.cert_file");
    absl::StatusOr<std::string> pkey = ReadFile(tls.key_file(), "tls.key_file");
    for (const auto* r : {&ca, &cert, &pkey}) {
      if (!r->ok()) return r->status();
    }
    grpc::SslServerCredentialsOptions so(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    so.pem_root_certs = *ca;
    so.pem_key_cert_pairs.push_back({*pkey, *cert});
    server_creds = grpc::SslServerCredentials(so);
    grpc::SslCredentialsOptions co;
    co.pem_root_certs = *ca;
    co.pem_private_key = *pkey;
    co.pem_cert_chain = *cert;
    peer_creds = grpc::SslCredentials(co);
  }

  const int max_msg =
      static_cast<int>(cluster_.protocol().message_bytes_max) + (1 << 20);
  // Senders first: the fetch server may answer a peer as soon as the
  // server below starts.
  net::PeerSenderOptions po;
  po.message_bytes_max = max_msg;
  po.queue_max = kPeerQueueMax;
  po.queue_bytes_max = PeerShare(cluster_, options_).bytes_max;
  po.batch_bytes_max = cluster_.protocol().batch_bytes_max;
  peers_.resize(cluster_.n());
  for (uint32_t i = 0; i < cluster_.n(); ++i) {
    if (i == options_.id) continue;
    peers_[i] = std::make_unique<net::PeerSender>(
        i, cluster_.replica(ReplicaId(i)).address(), peer_creds, po);
  }
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder b;
  int bound = 0;
  b.AddListeningPort(absl::StrCat(bind_host, ":", port), server_creds, &bound);
  b.SetMaxReceiveMessageSize(max_msg);
  b.SetMaxSendMessageSize(max_msg);
  b.RegisterService(replica_service_.get());
  client_service_->Register(&b);
  // The sync replica streams use one thread each; bound them.
  grpc::ResourceQuota quota("replica");
  quota.SetMaxThreads(static_cast<int>(4 * cluster_.n() + 16));
  b.SetResourceQuota(quota);
  server_ = b.BuildAndStart();
  if (server_ == nullptr || bound == 0) {
    return absl::UnavailableError(absl::StrCat("replicas[", options_.id,
                                               "].address: cannot listen on ",
                                               bind_host, ":", port));
  }
  client_service_->Start(options_.client_threads);

  if (!me.health_address().empty()) {
    std::string hh;
    uint16_t hp;
    CHECK_OK(ParseHostPort(me.health_address(), "health_address", &hh, &hp));
    grpc::ServerBuilder hb;
    health_ =
        std::make_unique<net::HealthService>(net::HealthService::Options{});
    health_->Register(&hb);
    int hbound = 0;
    // Plaintext on purpose: probes carry no secrets and need no client cert.
    hb.AddListeningPort(
        absl::StrCat(options_.listen_host.empty() ? hh : options_.listen_host,
                     ":", hp),
        grpc::InsecureServerCredentials(), &hbound);
    health_server_ = hb.BuildAndStart();
    if (health_server_ == nullptr || hbound == 0) {
      return absl::UnavailableError(absl::StrCat(
          "replicas[", options_.id, "].health_address: cannot listen on ",
          me.health_address()));
    }
  }
  if (health_ != nullptr) {
    health_->Set("", true);
    health_->Set(kReadyService, false);
    health_->Start();
  }
  if (options_.serve_metrics && !me.metrics_address().empty()) {
    std::string mh;
    uint16_t mp;
    CHECK_OK(ParseHostPort(me.metrics_address(), "metrics_address", &mh, &mp));
    absl::Status s = metrics_.Serve(absl::StrCat(
        options_.listen_host.empty() ? mh : options_.listen_host, ":", mp));
    if (!s.ok()) return s;
  }

  LOG_INFO("replica {} listening on {}:{} (health {}, metrics {}){}",
           options_.id, bind_host, port, me.health_address(),
           me.metrics_address(), tls.ca_file().empty() ? "" : " with mTLS");
  return absl::OkStatus();
}

absl::Status ReplicaServerImpl::OnSubmit(const pbft::v1::Envelope& e,
                                         const pbft::v1::Request& r,
                                         std::optional<uint64_t> primary_view) {
  if (stopping_) return absl::UnavailableError("replica: shutting down");
  trace::Event("submit", r.client_id(), r.request_number());
  {
    absl::MutexLock l(&latency_mu_);
    if (arrivals_.size() < kLatencyTrackMax) {
      arrivals_.try_emplace({r.client_id(), r.request_number()}, absl::Now());
    }
  }
  const size_t bytes = e.payload().size() + e.signature().size() + 32;
  Inbound in{e, std::nullopt};
  if (primary_view.has_value()) in.sent_to_primary_of = View(*primary_view);
  if (!inbox_.Push(cluster_.n(), std::move(in), bytes).accepted) {
    return absl::ResourceExhaustedError(
        "replica: request queue is full; retry later");
  }
  return absl::OkStatus();
}

// A verified message from a peer (verification pool thread): into the
// peer's share of the intake. The node hands FETCH_REQUESTs to the fetch
// server (throttled per peer there) on the core thread.
void ReplicaServerImpl::Admit(pbft::v1::Envelope e) {
  trace::Event("verified", e.type(), e.sender());
  const uint64_t from = e.sender();
  const size_t source =
      e.type() == pbft::v1::MESSAGE_TYPE_REQUEST ? cluster_.n() : from;
  const size_t bytes = e.payload().size() + e.signature().size() + 32;
  if (!inbox_.Push(source, Inbound{std::move(e), std::nullopt}, bytes).accepted)
    Refused(from, ShellRefusal::kInboxFull);
}

void ReplicaServerImpl::Refused(uint64_t peer, ShellRefusal r) {
  if (peer >= cluster_.n()) return;  // Forwarded client requests.
  shell_refused_[peer * static_cast<size_t>(ShellRefusal::kCount) +
                 static_cast<size_t>(r)]
      .fetch_add(1);
}

void ReplicaServerImpl::OnQuery(
    const pbft::v1::Envelope&, const pbft::v1::Request& r,
    std::function<void(absl::StatusOr<pbft::v1::Envelope>)> done) {
  absl::StatusOr<ledger::v1::QueryReply> reply = ledger::AnswerClientQuery(
      *ledger_, r, cluster_.protocol().answer_bytes_max, options_.id);
  if (!reply.ok()) return done(reply.status());
  done(signer_.SignMessage(pbft::v1::MESSAGE_TYPE_QUERY_REPLY, *reply));
}

void ReplicaServerImpl::CoreLoop() {
  const absl::Duration tick = absl::Milliseconds(cluster_.protocol().tick_ms);
  absl::Time next_tick = absl::Now();
  absl::Time next_mirror = absl::Now();
  std::vector<Inbound> items;
  while (!stopping_) {
    items.clear();
    inbox_.PopMany(&items, 1024,
                   std::max(absl::ZeroDuration(), next_tick - absl::Now()));
    TakeExecuted();
    for (Inbound& in : items) Handle(std::move(in));
    const absl::Time now = absl::Now();
    if (now >= next_tick) {
      node_->Tick();
      next_tick += tick;
      if (next_tick < now)
        next_tick = now + tick;  // Do not burst after a stall.
    }
    Drain();
    Publish();
    if (now >= next_mirror) {
      MirrorCounters();
      next_mirror = now + absl::Seconds(1);
    }
  }
  // Finish what is in hand: its writes are synced before we return.
  Drain();
}

void ReplicaServerImpl::Handle(Inbound in) {
  const pbft::v1::Envelope& e = in.envelope;
  metrics_.MessageReceived(e.type());
  switch (node_->Receive(e, in.sent_to_primary_of)) {
    case node::ReplicaNode::Intake::kFetchThrottled:
      return Refused(e.sender(), ShellRefusal::kFetchThrottled);
    case node::ReplicaNode::Intake::kFetchMalformed:
      return Refused(e.sender(), ShellRefusal::kFetchMalformed);
    case node::ReplicaNode::Intake::kAccepted:
      return;
  }
}

// The execution thread's results, in seq order, back to the node (its
// replies and checkpoints follow in the next Drain).
void ReplicaServerImpl::TakeExecuted() {
  if (execution_ == nullptr) return;
  executed_.clear();
  execution_->TakeResults(&executed_);
  for (ExecutionStage::Result& r : executed_) {
    node_->Executed(r.seq, std::move(r.done));
  }
}

// The node carries out the core's Readys in their documented order. A
// failed protocol-store write or block stops the replica: sending a vote it
// could forget, or going on past a block it could not record, would fork it.
void ReplicaServerImpl::Drain() {
  absl::Status s = node_->Drain();
  if (!s.ok()) Fatal(s, "replica loop");
}

bool ReplicaServerImpl::Wants(pbft::ClientId client,
                              pbft::RequestNumber number) {
  // Answered here from now on, whatever the load (admission by wait).
  client_service_->NoteAnswered(client.value(), number.value());
  if (client_service_->Waiting(client.value(), number.value())) return true;
  metrics_.replies_not_signed.Increment();
  absl::MutexLock l(&latency_mu_);
  arrivals_.erase({client.value(), number.value()});  // Its call is gone.
  return false;
}

void ReplicaServerImpl::Deliver(pbft::ClientId client,
                                pbft::RequestNumber number,
                                const pbft::v1::Envelope& envelope) {
  metrics_.replies_signed.Increment();
  client_service_->DeliverReply(client.value(), number.value(), envelope);
  absl::MutexLock l(&latency_mu_);
  auto it = arrivals_.find({client.value(), number.value()});
  if (it != arrivals_.end()) {
    metrics_.request_latency_seconds.Observe(
        absl::ToDoubleSeconds(absl::Now() - it->second));
    arrivals_.erase(it);
  }
}

bool ReplicaServerImpl::CaughtUp() const {
  // Connected to enough peers to form a quorum with itself, active in the
  // cluster's current view, and executing within one watermark window of
  // the cluster's head (docs/operations.md, readiness).
  uint32_t connected = 1;
  for (const auto& p : peers_) {
    if (p != nullptr && p->connected()) ++connected;
  }
  const uint64_t behind =
      core_->cluster_head().value() - core_->last_executed().value();
  return connected >= cluster_.quorum() && core_->in_cluster_view() &&
         behind <= cluster_.protocol().watermark_window;
}

void ReplicaServerImpl::Publish() {
  if (core_->view().value() != view_.load()) {
    view_changes_.fetch_add(1);
    metrics_.view_changes.Increment();
  }
  view_ = core_->view().value();
  last_executed_ = core_->last_executed().value();
  last_committed_ = core_->last_handed_out().value();
  stable_seq_ = core_->low_watermark().value();
  pool_->SetWindow(core_->low_watermark().value(),
                   core_->high_watermark().value());
  cluster_view_ = core_->cluster_view().value();
  cluster_head_ = core_->cluster_head().value();
  LogViewTransition();
  view_changing_ = !core_->view_active();
  in_cluster_view_ = core_->in_cluster_view();
  const bool up = CaughtUp();
  if (up != caught_up_.exchange(up)) {
    if (health_ != nullptr) health_->Set(kReadyService, up);
    LOG_INFO("replica {}: {}", options_.id,
             up ? "caught up (ready)" : "not ready");
  }
}

// One line per view change started and per view entered, with what the
// replica knew then: an operator reading one replica's log can tell a
// failover from a replica that timed out alone while it was behind.
void ReplicaServerImpl::LogViewTransition() {
  const bool changing = !core_->view_active();
  const uint64_t view = core_->view().value();
  if (changing == view_changing_.load() && view == logged_view_) return;
  logged_view_ = view;
  const core::Stats& st = core_->stats();
  if (changing) {
    LOG_INFO(
        "replica {}: changing to view {} (timer expiries {}, executed {}, "
        "cluster head {}, cluster view {}, queued requests {})",
        options_.id, view, st.view_change_timer_expiries,
        core_->last_executed().value(), core_->cluster_head().value(),
        core_->cluster_view().value(), core_->queued_requests());
  } else {
    LOG_INFO("replica {}: in view {} (primary {}, executed {})", options_.id,
             view, core_->primary().value(), core_->last_executed().value());
  }
}

void ReplicaServerImpl::MirrorCounters() {
  metrics_.view.Set(static_cast<double>(view_.load()));
  metrics_.last_executed_seq.Set(static_cast<double>(last_executed_.load()));
  metrics_.last_committed_seq.Set(static_cast<double>(last_committed_.load()));
  metrics_.stable_checkpoint_seq.Set(static_cast<double>(stable_seq_.load()));
  metrics_.queued_requests.Set(static_cast<double>(core_->queued_requests()));
  metrics_.waiting_client_calls.Set(
      static_cast<double>(client_service_->pending()));
  metrics_.client_intake_calls.Set(
      static_cast<double>(client_service_->intake()));
  const net::AdmissionGate::Verdict admission = client_service_->AdmissionNow();
  metrics_.expected_wait_seconds.Set(
      admission.expected_wait == absl::InfiniteDuration()
          ? std::numeric_limits<double>::infinity()
          : absl::ToDoubleSeconds(admission.expected_wait));
  metrics_.admission_refused_share.Set(admission.refused_share);
  metrics_.caught_up.Set(caught_up_.load() ? 1 : 0);
  metrics_.in_cluster_view.Set(in_cluster_view_.load() ? 1 : 0);
  metrics_.cluster_view.Set(static_cast<double>(cluster_view_.load()));
  const uint64_t head = cluster_head_.load();
  metrics_.seqs_behind.Set(
      static_cast<double>(head - std::min(head, last_executed_.load())));
  metrics_.ledger_memory_bytes.Set(static_cast<double>(ledger_->MemoryBytes()));
  metrics_.protocol_memory_bytes.Set(
      static_cast<double>(store_->MemoryBytes()));
  for (size_t r = 0; r < static_cast<size_t>(net::DropReason::kCount); ++r) {
    const auto reason = static_cast<net::DropReason>(r);
    metrics_.MirrorDropped("verify", net::DropReasonName(reason),
                           pool_->dropped(reason));
  }
  MirrorRefusals();
  const core::Stats& st = core_->stats();
  for (const auto& [event, value] :
       std::initializer_list<std::pair<const char*, uint64_t>>{
           {"pre_prepare_sent", st.pre_prepares_sent},
           {"batch_committed", st.batches_committed},
           {"batch_fetched", st.batches_fetched},
           {"request_forwarded", st.requests_forwarded},
           {"request_primary_has_copy", st.requests_primary_has_copy},
           {"request_word_held_long", st.requests_word_held_long},
           {"retransmission", st.retransmissions},
           {"fetch_sent", st.fetches_sent},
           {"fetch_probe", st.fetch_probes},
           {"fetch_bad_response", st.fetch_bad_responses},
           {"checkpoint_stable", st.checkpoints_stable},
           {"view_change_timer_expiry", st.view_change_timer_expiries},
           {"view_change_started", st.view_changes_started},
           {"view_entered", st.views_entered},
           {"new_view_sent", st.new_views_sent},
           {"view_probe", st.view_probes},
           {"timer_probe", st.timer_probes},
           {"view_change_timer_held", st.view_change_timer_held},
           {"new_view_offered", st.new_views_offered},
           {"body_fetch_sent", st.body_fetches_sent},
           {"body_fetched", st.bodies_fetched},
       }) {
    metrics_.MirrorCoreEvent(event, value);
  }
  for (size_t r = 0; r < st.dropped.size(); ++r) {
    metrics_.MirrorDropped(
        "core", core::DropReasonName(static_cast<core::DropReason>(r)),
        st.dropped[r]);
  }
  // Client intake refusals (per-client shares, sizes, signatures).
  for (const auto& [code, name] :
       std::initializer_list<std::pair<absl::StatusCode, const char*>>{
           {absl::StatusCode::kResourceExhausted, "resource_exhausted"},
           {absl::StatusCode::kInvalidArgument, "invalid_argument"},
           {absl::StatusCode::kUnauthenticated, "unauthenticated"},
       }) {
    metrics_.MirrorDropped("client", name, client_service_->rejected(code));
  }
  // Of the RESOURCE_EXHAUSTED above, the calls refused for their expected
  // wait (protocol.admission_wait_ms).
  metrics_.MirrorDropped("client", "admission_wait",
                         client_service_->refused_for_wait());
  uint64_t net_dropped = 0;
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (peers_[i] == nullptr) continue;
    metrics_.SetPeerConnected(static_cast<uint32_t>(i), peers_[i]->connected());
    net_dropped += peers_[i]->dropped();
  }
  metrics_.MirrorDropped("net", "send", net_dropped);
  if (health_ != nullptr) {
    metrics_.MirrorDropped("health", "unknown_service",
                           health_->unknown_services());
    metrics_.MirrorDropped("health", "watchers_full",
                           health_->watchers_refused());
  }
}

// Per-peer refusals: one metric series per peer and reason, and one
// warning line per peer and reason per second at most, naming the peer, so
// an operator sees which member's replica misbehaves.
void ReplicaServerImpl::MirrorRefusals() {
  uint64_t inbox_full = 0;
  for (uint32_t peer = 0; peer < cluster_.n(); ++peer) {
    if (peer == options_.id) continue;
    auto note = [&](const char* reason, uint64_t total) {
      const uint64_t grew = metrics_.MirrorPeerRefused(peer, reason, total);
      if (grew > 0) {
        LOG_WARN("replica {}: refused {} message(s) from replica {}: {}",
                 options_.id, grew, peer, reason);
      }
    };
    for (size_t r = 0; r < static_cast<size_t>(net::DropReason::kCount); ++r) {
      const auto reason = static_cast<net::DropReason>(r);
      note(net::DropReasonName(reason), pool_->dropped_from(peer, reason));
    }
    for (size_t r = 0; r < static_cast<size_t>(ShellRefusal::kCount); ++r) {
      const uint64_t total =
          shell_refused_[peer * static_cast<size_t>(ShellRefusal::kCount) + r];
      note(ShellRefusalName(static_cast<ShellRefusal>(r)), total);
      if (static_cast<ShellRefusal>(r) == ShellRefusal::kInboxFull)
        inbox_full += total;
    }
  }
  metrics_.MirrorDropped("inbox", "full", inbox_full);
}

ledger::v1::StatusResponse ReplicaServerImpl::Status() const {
  ledger::v1::StatusResponse s;
  s.set_replica_id(options_.id);
  s.set_view(view_.load());
  s.set_last_executed_seq(last_executed_.load());
  s.set_last_committed_seq(last_committed_.load());
  s.set_stable_checkpoint_seq(stable_seq_.load());
  uint32_t connected = 0;
  for (const auto& p : peers_) {
    if (p != nullptr && p->connected()) ++connected;
  }
  s.set_peers_connected(connected);
  s.set_caught_up(caught_up_.load());
  s.set_view_changing(view_changing_.load());
  s.set_in_cluster_view(in_cluster_view_.load());
  s.set_cluster_view(cluster_view_.load());
  const uint64_t head = cluster_head_.load();
  s.set_cluster_head_seq(head);
  s.set_seqs_behind(head - std::min(head, last_executed_.load()));
  return s;
}

void ReplicaServerImpl::Fatal(const absl::Status& s, absl::string_view what) {
  LOG_ERROR("replica {}: fatal: {}: {}", options_.id, what, s.ToString());
  spdlog::default_logger()->flush();
  std::abort();
}

void ReplicaServerImpl::ReleaseFreeMemory() {
#ifdef __GLIBC__
  const absl::Time start = absl::Now();
  malloc_trim(0);
  metrics_.memory_trim_seconds.Observe(
      absl::ToDoubleSeconds(absl::Now() - start));
#endif
}

void ReplicaServerImpl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  LOG_INFO("replica {}: stopping", options_.id);
  // 1. Refuse new work: stop the servers (in-flight calls are cancelled).
  stopping_ = true;
  const auto deadline =
      std::chrono::system_clock::now() + std::chrono::seconds(2);
  if (server_ != nullptr) server_->Shutdown(deadline);
  if (health_server_ != nullptr) health_server_->Shutdown(deadline);
  if (health_ != nullptr) health_->Shutdown();
  if (client_service_ != nullptr) client_service_->Shutdown();
  // 2. The core thread finishes the Ready in hand (synced writes) and exits;
  //    the execution thread the blocks submitted to it.
  inbox_.Close();
  if (core_thread_.joinable()) core_thread_.join();
  execution_.reset();
  // 3. Then the rest, storage last.
  pool_.reset();
  fetch_.reset();
  peers_.clear();
  node_.reset();
  core_ = nullptr;
  storage_.reset();
  state_machine_.reset();
  store_.reset();
  ledger_.reset();
  LOG_INFO("replica {}: stopped", options_.id);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ReplicaServer>> ReplicaServer::Start(
    const ReplicaServerOptions& options_in) {
  ReplicaServerOptions options = options_in;
  absl::StatusOr<Cluster> cluster = Cluster::LoadFile(options.config_path);
  if (!cluster.ok()) return cluster.status();
  if (options.id >= cluster->n()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--id: ", options.id, " is not a replica of ",
                     options.config_path, " (0..", cluster->n() - 1, ")"));
  }
  if (options.data_dir.empty())
    return absl::InvalidArgumentError("--data-dir: required");
  if (options.key_path.empty()) {
    options.key_path =
        (std::filesystem::path(options.config_path).parent_path() / "keys" /
         absl::StrCat("replica-", options.id, ".key"))
            .string();
  }
  absl::StatusOr<crypto::SecretKey> key = ReadKeyFile(options.key_path);
  if (!key.ok()) return key.status();
  if (!(key->public_key() == cluster->replica_key(ReplicaId(options.id)))) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.key_path, ": key does not match replicas[",
                     options.id, "].public_key in ", options.config_path));
  }
  auto server =
      std::make_unique<ReplicaServerImpl>(*std::move(cluster), options, *key);
  absl::Status s = server->Init();
  if (!s.ok()) return s;
  return server;
}

}  // namespace pbft::replica
