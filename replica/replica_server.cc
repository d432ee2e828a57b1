#include "replica/replica_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <filesystem>
#include <fstream>
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
#include "common/wire_limits.h"
#include "replica/core/core.h"
#include "replica/core/crypto.h"
#include "replica/fetch_server.h"
#include "replica/ledger/ledger.h"
#include "replica/metrics.h"
#include "replica/net/client_service.h"
#include "replica/net/peer_sender.h"
#include "replica/net/replica_service.h"
#include "replica/net/verify_pool.h"
#include "replica/storage/protocol_store.h"

namespace ledger {
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
class PoolVerifier final : public pbft::Verifier {
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
using Inbox = FairQueue<pbft::v1::Envelope>;

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

class ReplicaServerImpl final : public ReplicaServer {
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
  v1::StatusResponse Status() const override;

 private:
  absl::Status OpenStorage();
  absl::Status StartServers();
  void CoreLoop();
  void Admit(pbft::v1::Envelope e);
  void Refused(uint64_t peer, ShellRefusal r);
  void MirrorRefusals();
  void Handle(pbft::v1::Envelope e);
  void Drain();
  void Persist(const pbft::Persist& p);
  void Send(const pbft::Outbound& m);
  void Execute(const pbft::CommittedBatch& b);
  void Deliver(const pbft::ClientReply& r);
  void Publish();
  void MirrorCounters();
  bool CaughtUp() const;
  [[noreturn]] void Fatal(const absl::Status& s, absl::string_view what);

  absl::Status OnSubmit(const pbft::v1::Envelope& e,
                        const pbft::v1::Request& r);
  void OnQuery(const pbft::v1::Envelope& e, const pbft::v1::Request& r,
               std::function<void(absl::StatusOr<pbft::v1::Envelope>)> done);

  Cluster cluster_;
  ReplicaServerOptions options_;
  EnvelopeSigner signer_;
  EnvelopeVerifier verifier_;
  pbft::Ed25519Signer core_signer_;
  PoolVerifier core_verifier_;
  Metrics metrics_;
  SystemClock clock_;
  const WireLimits limits_;

  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<storage::ProtocolStore> store_;
  std::unique_ptr<pbft::Core> core_;  // Core thread only.

  Inbox inbox_;
  // Per peer x ShellRefusal.
  std::vector<std::atomic<uint64_t>> shell_refused_;
  std::unique_ptr<FetchServer> fetch_;
  uint64_t published_stable_ = ~0ull;  // Core thread only.
  std::unique_ptr<net::VerifyPool> pool_;
  std::unique_ptr<net::ReplicaServiceImpl> replica_service_;
  std::unique_ptr<net::ClientService> client_service_;
  std::vector<std::unique_ptr<net::PeerSender>> peers_;  // Null for self.
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;
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

  absl::Mutex latency_mu_;
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, absl::Time> arrivals_
      ABSL_GUARDED_BY(latency_mu_);
};

absl::Status ReplicaServerImpl::Init() {
  pbft::Options o;
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
  core_ = std::make_unique<pbft::Core>(o, &core_signer_, &core_verifier_);
  // Exactly-once across restarts: the core learns each client's last
  // executed request and its result from the ledger.
  absl::StatusOr<std::vector<ClientReply>> table = ledger_->ClientTable();
  if (!table.ok()) return table.status();
  for (const ClientReply& c : *table) {
    core_->RestoreClient(ClientId(c.client_id), RequestNumber(c.request_number),
                         c.result);
  }
  // The core resumes after the ledger's last executed block, with the
  // window at the last stable checkpoint it persisted.
  absl::StatusOr<storage::ProtocolState> persisted = store_->Load();
  if (!persisted.ok()) return persisted.status();
  {
    // Crash recovery (core.h, Core::Restore): the view, the votes and the
    // prepared certificates above the stable checkpoint, the NEW-VIEW of
    // the view entered, and the ledger head.
    pbft::RestoreState restore;
    if (ledger_->last_executed() > 0) {
      absl::StatusOr<v1::Block> head =
          ledger_->GetStoredBlock(ledger_->last_executed());
      if (!head.ok()) return head.status();
      restore.last_timestamp_ms = head->header().timestamp_ms();
    }
    restore.last_executed = Seq(ledger_->last_executed());
    restore.view = pbft::View(persisted->view);
    restore.stable_checkpoint = persisted->stable_checkpoint;
    restore.entries = std::move(persisted->entries);
    if (persisted->new_view) {
      restore.entries.push_back(std::move(*persisted->new_view));
    }
    absl::Status r = core_->Restore(restore);
    if (!r.ok()) {
      return absl::DataLossError(
          absl::StrCat(options_.data_dir, ": ", r.message()));
    }
  }
  LOG_INFO("replica {} of cluster {}: ledger at height {}, n={} f={}",
           options_.id, cluster_.cluster_id(), ledger_->last_executed(),
           cluster_.n(), cluster_.f());

  FetchServerOptions fo;
  fo.self = options_.id;
  fo.n = cluster_.n();
  fo.response_bytes_max = limits_.fetch_response_max;
  fo.blocks_max = kFetchBlocksMax;
  fo.rate_per_s = options_.fetch_rate_per_s;
  fo.burst = options_.fetch_burst;
  fetch_ = std::make_unique<FetchServer>(
      fo, ledger_.get(), &signer_, [this](uint32_t peer, pbft::v1::Envelope e) {
        if (peer < peers_.size() && peers_[peer] != nullptr)
          peers_[peer]->Send(std::move(e));
      });
  pool_ = std::make_unique<net::VerifyPool>(
      &verifier_, options_.verify_threads, limits_,
      PeerShare(cluster_, options_),
      [this](pbft::v1::Envelope e) { Admit(std::move(e)); });
  core_verifier_.set_pool(pool_.get());
  replica_service_ = std::make_unique<net::ReplicaServiceImpl>(pool_.get());
  net::ClientService::Handlers h;
  h.submit = [this](const pbft::v1::Envelope& e, const pbft::v1::Request& r) {
    return OnSubmit(e, r);
  };
  h.query = [this](
                const pbft::v1::Envelope& e, const pbft::v1::Request& r,
                std::function<void(absl::StatusOr<pbft::v1::Envelope>)> done) {
    OnQuery(e, r, std::move(done));
  };
  h.status = [this] { return Status(); };
  const ProtocolParams& pp = cluster_.protocol();
  client_service_ = std::make_unique<net::ClientService>(
      pool_.get(), std::move(h),
      net::ClientService::Limits{pp.request_queue_max, pp.client_calls_max,
                                 pp.batch_bytes_max,
                                 pp.request_operations_max});

  if (absl::Status s = StartServers(); !s.ok()) return s;
  core_thread_ = std::thread([this] { CoreLoop(); });
  return absl::OkStatus();
}

absl::Status ReplicaServerImpl::OpenStorage() {
  std::error_code ec;
  std::filesystem::create_directories(options_.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--data-dir ", options_.data_dir, ": ", ec.message()));
  }
  LedgerOptions lo;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger =
      Ledger::Open(cluster_, options_.data_dir + "/ledger", lo);
  if (!ledger.ok()) return ledger.status();
  ledger_ = *std::move(ledger);
  absl::StatusOr<std::unique_ptr<storage::ProtocolStore>> store =
      storage::ProtocolStore::Open(options_.data_dir + "/protocol");
  if (!store.ok()) return store.status();
  store_ = *std::move(store);
  return absl::OkStatus();
}

absl::Status ReplicaServerImpl::StartServers() {
  const v1::ReplicaConfig& me = cluster_.replica(ReplicaId(options_.id));
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
  const v1::TlsConfig& tls = cluster_.config().tls();
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
  grpc::EnableDefaultHealthCheckService(true);
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
  for (grpc::Server* s : {server_.get(), health_server_.get()}) {
    if (s == nullptr) continue;
    s->GetHealthCheckService()->SetServingStatus("", true);
    s->GetHealthCheckService()->SetServingStatus(kReadyService, false);
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
                                         const pbft::v1::Request& r) {
  if (stopping_) return absl::UnavailableError("replica: shutting down");
  {
    absl::MutexLock l(&latency_mu_);
    if (arrivals_.size() < kLatencyTrackMax) {
      arrivals_.try_emplace({r.client_id(), r.request_number()}, absl::Now());
    }
  }
  const size_t bytes = e.payload().size() + e.signature().size() + 32;
  if (!inbox_.Push(cluster_.n(), e, bytes).accepted) {
    return absl::ResourceExhaustedError(
        "replica: request queue is full; retry later");
  }
  return absl::OkStatus();
}

// A verified message from a peer (verification pool thread): FETCHes go to
// the fetch server (and, unless throttled, to the core, which answers a
// requester in an older view with its NEW-VIEW); everything goes to the
// peer's share of the intake.
void ReplicaServerImpl::Admit(pbft::v1::Envelope e) {
  const uint64_t from = e.sender();
  if (e.type() == pbft::v1::MESSAGE_TYPE_FETCH_REQUEST) {
    switch (fetch_->Offer(e)) {
      case FetchServer::Admit::kThrottled:
        return Refused(from, ShellRefusal::kFetchThrottled);
      case FetchServer::Admit::kMalformed:
        return Refused(from, ShellRefusal::kFetchMalformed);
      default:
        break;  // The core sees it too: it names the requester's view.
    }
  }
  const size_t source =
      e.type() == pbft::v1::MESSAGE_TYPE_REQUEST ? cluster_.n() : from;
  const size_t bytes = e.payload().size() + e.signature().size() + 32;
  if (!inbox_.Push(source, std::move(e), bytes).accepted)
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
  v1::Query q;
  if (!q.ParseFromString(r.operation())) {
    return done(
        absl::InvalidArgumentError("query.operation: not a ledger.v1.Query"));
  }
  v1::QueryReply reply;
  absl::Status s = ledger_->Answer(q, &reply);
  if (!s.ok()) return done(s);
  // The answer budget (docs/api.md): refused the same on every replica.
  const size_t bytes = ledger_->AnswerBudgetBytes(reply);
  if (bytes > cluster_.protocol().answer_bytes_max) {
    return done(absl::OutOfRangeError(absl::StrCat(
        "query: the answer (", bytes, " bytes) exceeds answer_bytes_max (",
        cluster_.protocol().answer_bytes_max, "); ANSWER_TOO_LARGE")));
  }
  reply.set_replica_id(options_.id);
  reply.set_client_id(r.client_id());
  reply.set_request_number(r.request_number());
  done(signer_.SignMessage(pbft::v1::MESSAGE_TYPE_QUERY_REPLY, reply));
}

void ReplicaServerImpl::CoreLoop() {
  const absl::Duration tick = absl::Milliseconds(cluster_.protocol().tick_ms);
  absl::Time next_tick = absl::Now();
  absl::Time next_mirror = absl::Now();
  std::vector<pbft::v1::Envelope> items;
  while (!stopping_) {
    items.clear();
    inbox_.PopMany(&items, 1024,
                   std::max(absl::ZeroDuration(), next_tick - absl::Now()));
    for (pbft::v1::Envelope& e : items) Handle(std::move(e));
    const absl::Time now = absl::Now();
    if (now >= next_tick) {
      core_->Tick(clock_.NowMs());
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

void ReplicaServerImpl::Handle(pbft::v1::Envelope e) {
  metrics_.MessageReceived(pbft::v1::MessageType_Name(e.type()));
  if (e.type() == pbft::v1::MESSAGE_TYPE_REQUEST) {
    core_->OnRequest(e);
  } else {
    core_->Step(e);
  }
}

void ReplicaServerImpl::Drain() {
  while (core_->HasReady()) {
    pbft::Ready ready = core_->TakeReady();
    // The order is the Ready's contract (replica/core/core.h).
    Persist(ready.persist);
    for (const pbft::Outbound& m : ready.messages) Send(m);
    for (const pbft::CommittedBatch& b : ready.execute) Execute(b);
    for (const pbft::ClientReply& r : ready.replies) Deliver(r);
  }
}

void ReplicaServerImpl::Persist(const pbft::Persist& p) {
  if (p.empty()) return;
  const absl::Time start = absl::Now();
  std::optional<uint64_t> view;
  if (p.view.has_value()) view = p.view->value();
  absl::Status s = store_->Append(view, p.entries, p.stable_checkpoint);
  // Sending a vote we could forget is worse than stopping.
  if (!s.ok()) Fatal(s, "protocol store write");
  metrics_.protocol_write_seconds.Observe(
      absl::ToDoubleSeconds(absl::Now() - start));
}

void ReplicaServerImpl::Send(const pbft::Outbound& m) {
  if (m.broadcast) {
    for (auto& p : peers_) {
      if (p != nullptr) p->Send(m.envelope);
    }
    return;
  }
  const uint32_t to = m.to.value();
  if (to < peers_.size() && peers_[to] != nullptr) peers_[to]->Send(m.envelope);
}

void ReplicaServerImpl::Execute(const pbft::CommittedBatch& b) {
  BlockInput in;
  in.view = b.view.value();
  in.seq = b.seq.value();
  in.timestamp_ms = b.timestamp_ms;
  in.batch_digest = b.batch_digest;
  in.pre_prepare = b.pre_prepare;
  in.certificate = b.certificate;
  const absl::Time start = absl::Now();
  absl::StatusOr<BlockResult> result = ledger_->ApplyBlock(in);
  // The core only hands out committed batches in order; a failure here is
  // the disk or a bug, and continuing would fork this replica's state.
  if (!result.ok())
    Fatal(result.status(), absl::StrCat("executing block ", in.seq));
  metrics_.ledger_write_seconds.Observe(
      absl::ToDoubleSeconds(absl::Now() - start));
  metrics_.blocks_executed.Increment();
  metrics_.batch_requests.Observe(static_cast<double>(result->outcomes.size()));
  std::vector<pbft::ExecutedReply> replies;
  pbft::v1::PrePrepare pp;  // Parsed only if a request holds a query.
  for (size_t i = 0; i < result->outcomes.size(); ++i) {
    RequestOutcome& o = result->outcomes[i];
    if (o.duplicate) {
      // Not executed again: the core resends the stored reply (same
      // number) or answers with a stale rejection (lower number).
      replies.push_back(
          {ClientId(o.client_id), RequestNumber(o.request_number), ""});
      continue;
    }
    if (o.has_query) {
      // Ordered reads: answered from the state after this block, the same
      // on every correct replica.
      if (pp.requests_size() == 0)
        CHECK(pp.ParseFromString(b.pre_prepare.payload()));
      CHECK_LT(i, static_cast<size_t>(pp.requests_size()));
      absl::Status s = ledger_->FillQueryAnswers(
          pp.requests(static_cast<int>(i)), &o.result);
      if (!s.ok())
        Fatal(s, absl::StrCat("answering ordered queries in block ", in.seq));
    }
    v1::OperationResults rs;
    if (rs.ParseFromString(o.result)) {
      for (const v1::OperationResult& r : rs.results()) {
        metrics_.TransferResult(v1::ResultCode_Name(r.code()));
      }
    }
    replies.push_back(
        {ClientId(o.client_id), RequestNumber(o.request_number), o.result});
  }
  core_->OnExecuted(b.seq, result->state_digest, std::move(replies));
}

void ReplicaServerImpl::Deliver(const pbft::ClientReply& r) {
  pbft::v1::Reply reply;
  if (!reply.ParseFromString(r.envelope.payload())) return;
  client_service_->DeliverReply(r.client_id.value(), reply.request_number(),
                                r.envelope);
  absl::MutexLock l(&latency_mu_);
  auto it = arrivals_.find({r.client_id.value(), reply.request_number()});
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
  if (stable_seq_ != published_stable_) {
    published_stable_ = stable_seq_;
    fetch_->SetStableCheckpoint(core_->stable_checkpoint());
  }
  cluster_view_ = core_->cluster_view().value();
  cluster_head_ = core_->cluster_head().value();
  view_changing_ = !core_->view_active();
  in_cluster_view_ = core_->in_cluster_view();
  const bool up = CaughtUp();
  if (up != caught_up_.exchange(up)) {
    for (grpc::Server* s : {server_.get(), health_server_.get()}) {
      if (s != nullptr)
        s->GetHealthCheckService()->SetServingStatus(kReadyService, up);
    }
    LOG_INFO("replica {}: {}", options_.id,
             up ? "caught up (ready)" : "not ready");
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
  metrics_.caught_up.Set(caught_up_.load() ? 1 : 0);
  metrics_.in_cluster_view.Set(in_cluster_view_.load() ? 1 : 0);
  metrics_.cluster_view.Set(static_cast<double>(cluster_view_.load()));
  const uint64_t head = cluster_head_.load();
  metrics_.seqs_behind.Set(
      static_cast<double>(head - std::min(head, last_executed_.load())));
  for (size_t r = 0; r < static_cast<size_t>(net::DropReason::kCount); ++r) {
    const auto reason = static_cast<net::DropReason>(r);
    metrics_.MirrorDropped("verify", net::DropReasonName(reason),
                           pool_->dropped(reason));
  }
  MirrorRefusals();
  const pbft::Stats& st = core_->stats();
  for (const auto& [event, value] :
       std::initializer_list<std::pair<const char*, uint64_t>>{
           {"pre_prepare_sent", st.pre_prepares_sent},
           {"batch_committed", st.batches_committed},
           {"batch_fetched", st.batches_fetched},
           {"request_forwarded", st.requests_forwarded},
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
           {"new_view_offered", st.new_views_offered},
       }) {
    metrics_.MirrorCoreEvent(event, value);
  }
  for (size_t r = 0; r < st.dropped.size(); ++r) {
    metrics_.MirrorDropped(
        "core", pbft::DropReasonName(static_cast<pbft::DropReason>(r)),
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
  uint64_t net_dropped = 0;
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (peers_[i] == nullptr) continue;
    metrics_.SetPeerConnected(static_cast<uint32_t>(i), peers_[i]->connected());
    net_dropped += peers_[i]->dropped();
  }
  metrics_.MirrorDropped("net", "send", net_dropped);
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

v1::StatusResponse ReplicaServerImpl::Status() const {
  v1::StatusResponse s;
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
  if (client_service_ != nullptr) client_service_->Shutdown();
  // 2. The core thread finishes the Ready in hand (synced writes) and exits.
  inbox_.Close();
  if (core_thread_.joinable()) core_thread_.join();
  // 3. Then the rest, storage last.
  pool_.reset();
  fetch_.reset();
  peers_.clear();
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

}  // namespace ledger
