// Each simulated replica runs ledgerd's replica loop (ReplicaNode).
#include "common/proto_names.h"
#include "tests/sim/sim_internal.h"

namespace pbft::sim::internal {

// --- Replicas
// -----------------------------------------------------------------

Cluster Simulation::MakeCluster(uint32_t clients) const {
  auto key = [](uint64_t principal) {
    std::string seed(32, '\0');
    for (int i = 0; i < 8; ++i)
      seed[31 - i] = static_cast<char>(principal >> (8 * i));
    absl::StatusOr<crypto::SecretKey> k = crypto::SecretKey::FromSeed(seed);
    CHECK_OK(k.status());
    return k->public_key().ToBytes();
  };
  ledger::v1::ClusterConfig config;
  config.set_cluster_id(kSimClusterId);
  config.set_f(f_);
  for (uint32_t i = 0; i < n_; ++i) {
    ledger::v1::ReplicaConfig* r = config.add_replicas();
    r->set_id(i);
    r->set_address(absl::StrCat("127.0.0.1:", 7000 + i));
    r->set_public_key(key(0x10000 + i));
  }
  for (uint64_t c = 1; c <= clients; ++c) {
    ledger::v1::ClientConfig* cl = config.add_clients();
    cl->set_id(c);
    cl->set_name(absl::StrCat("client-", c));
    cl->set_public_key(key(c));
    ledger::v1::GenesisAccount* g = config.add_genesis_accounts();
    g->mutable_id()->set_low(c);
    g->set_owner_client_id(c);
    g->set_ledger(1);
    g->set_balance(1'000'000'000);
  }
  absl::StatusOr<Cluster> cluster = Cluster::FromProto(config, "simulator");
  CHECK_OK(cluster.status());
  return *std::move(cluster);
}

bool Simulation::StartNode(SimReplica& r) {
  if (r.env == nullptr)
    r.env.reset(leveldb::NewMemEnv(leveldb::Env::Default()));
  ledger::LedgerOptions lo;
  lo.env = r.env.get();
  lo.sync = true;
  lo.parallel_state_hash = false;  // No thread: the run stays one thread.
  lo.block_cache_bytes = 1 << 20;
  lo.write_buffer_bytes = 8 << 20;  // No memtable flush within a run.
  auto ledger = ledger::Ledger::Open(*cluster_, "/ledger", lo);
  auto store = storage::ProtocolStore::Open("/protocol", r.env.get());
  for (const absl::Status& s : {ledger.status(), store.status()}) {
    if (!s.ok()) {
      Fail(absl::StrCat("replica ", r.id,
                        " cannot open its data: ", s.ToString()));
      return false;
    }
  }
  r.ledger = *std::move(ledger);
  r.store = *std::move(store);
  r.machine = std::make_unique<node::LedgerStateMachine>(r.ledger.get());
  r.storage = std::make_unique<node::StoreStorage>(r.store.get());
  r.io = std::make_unique<SimIo>(this, &r);
  r.responder = std::make_unique<node::FetchResponder>(
      node::FetchResponderOptions{r.id, n_, limits_.fetch_response_max,
                                  kFetchBlocksMax},
      r.io.get(), r.io.get());
  r.fetch = std::make_unique<node::InlineFetchService>(
      r.responder.get(), [this, &r](uint32_t peer, const v1::FetchRequest& req,
                                    v1::FetchResponse resp) {
        RespondFetch(r, peer, req, std::move(resp));
      });
  core::Options o;
  o.id = ReplicaId(r.id);
  o.n = n_;
  o.f = f_;
  o.params = params_;
  node::ReplicaNodeDeps deps;
  deps.signer = r.signer.get();
  deps.verifier = &crypto_->verifier();
  deps.store = r.io.get();
  deps.state = r.io.get();
  deps.transport = r.io.get();
  deps.replies = r.io.get();
  deps.fetch = r.fetch.get();
  deps.clock = r.io.get();
  deps.observer = r.io.get();
  if (opt_.deferred_execution) deps.executor = r.io.get();
  auto node = node::ReplicaNode::Open(o, deps);
  if (!node.ok()) {
    Fail(absl::StrCat("replica ", r.id,
                      " cannot restart: ", node.status().message()));
    return false;
  }
  r.node = *std::move(node);
  return true;
}

void Simulation::DeliverToReplica(SimReplica& r, const EnvPtr& e,
                                  std::optional<uint64_t> primary_view) {
  from_ = r.id;
  if (r.byzantine) ByzantineOnReceive(r, e);
  if (e->type() == v1::MESSAGE_TYPE_VIEW_CHANGE) {
    v1::ViewChange vc;
    if (vc.ParseFromString(e->payload()) && vc.replica_id() == e->sender()) {
      uint64_t& heard = r.view_change_heard[e->sender()];
      heard = std::max<uint64_t>(heard, vc.new_view());
    }
  }
  // The node hands a FETCH_REQUEST to its fetch service (RespondFetch) and
  // to the core (a requester in an older view gets the NEW-VIEW).
  std::optional<View> sent_to_primary_of;
  if (primary_view.has_value()) sent_to_primary_of = View(*primary_view);
  r.node->Receive(*e, sent_to_primary_of);
  Drain(r);
}

// A fetch answer built by the node's FetchResponder (as ledgerd builds it),
// on its way out. In half the fault seeds it carries the proof of the
// highest stable checkpoint its batches reach (a correct peer whose stable
// checkpoint is lower) instead of the latest. A Byzantine replica may stay
// silent or serve a certificate with a commit duplicated.
void Simulation::RespondFetch(SimReplica& r, uint32_t peer,
                              const v1::FetchRequest& req,
                              v1::FetchResponse resp) {
  if (r.byzantine && Pick(r) == Behaviour::kSilent) return;
  if (!serve_latest_proof_ && req.batch_digest().empty()) {
    const uint64_t from = std::max<uint64_t>(req.from_seq(), 1);
    const uint64_t last = from + resp.batches_size() - 1;
    resp.clear_stable_checkpoint();
    auto it = r.proofs.upper_bound(std::max(last, from));
    if (it != r.proofs.begin()) {
      *resp.mutable_stable_checkpoint() = std::prev(it)->second;
    }
  }
  // A corrupting primary serves honestly: the backups it cheated recover
  // through fetching.
  if (r.byzantine && resp.batches_size() > 0 &&
      r.behaviour != Behaviour::kCorruptBatch &&
      Pick(r) != Behaviour::kReplay) {
    v1::CommitCertificate* cert =
        resp.mutable_batches(0)->mutable_certificate();
    if (cert->commits_size() > 1) *cert->mutable_commits(1) = cert->commits(0);
  }
  SendToReplica(
      peer, std::make_shared<v1::Envelope>(r.signer->Sign(
                v1::MESSAGE_TYPE_FETCH_RESPONSE, resp.SerializeAsString())));
}

// The protocol store's write, and what the checkers keep of it. A power
// loss right after the write (crash_mid_ready) stops the node before any
// message of the Ready leaves, as a failed write stops ledgerd.
absl::Status Simulation::Append(SimReplica& r, const struct core::Persist& p) {
  if (p.view) r.durable_view = p.view->value();
  for (const v1::Envelope& e : p.entries) {
    if (e.sender() == r.id) r.persisted.insert(Sha256(e.payload()));
    if (e.type() == v1::MESSAGE_TYPE_NEW_VIEW) r.durable_new_view = e.payload();
  }
  if (p.stable_checkpoint) {
    r.proofs[p.stable_checkpoint->seq()] = *p.stable_checkpoint;
    const size_t bytes = p.stable_checkpoint->ByteSizeLong();
    if (!r.byzantine && bytes > limits_.checkpoint_proof_max) {
      Fail(absl::StrCat("replica ", r.id, ": stable checkpoint proof of ",
                        bytes, " bytes, over its bound of ",
                        limits_.checkpoint_proof_max));
    }
  }
  if (absl::Status s = r.storage->Append(p); !s.ok()) return s;
  if (r.crash_mid_ready) return absl::AbortedError("power lost");
  return absl::OkStatus();
}

void Simulation::QueueExecution(SimReplica& r, core::CommittedBatch b) {
  uint64_t at = r.to_execute.empty() ? tick_ : r.to_execute.back().first;
  at = std::max(at, tick_) +
       (rng_.Below(8) == 0 ? rng_.Below(40) : rng_.Below(4));
  r.to_execute.emplace_back(at, std::move(b));
  max_execution_lag_ = std::max(max_execution_lag_, at - tick_);
  result_.max_execution_backlog =
      std::max<uint64_t>(result_.max_execution_backlog, r.to_execute.size());
}

void Simulation::ExecuteDue(SimReplica& r) {
  while (!r.down && !r.to_execute.empty() &&
         r.to_execute.front().first <= tick_ && result_.ok) {
    core::CommittedBatch b = std::move(r.to_execute.front().second);
    r.to_execute.pop_front();
    from_ = r.id;
    r.node->Executed(b.seq, r.io->Execute(b));
    Drain(r);
  }
}

void Simulation::Drain(SimReplica& r) {
  if (r.down) return;
  from_ = r.id;
  absl::Status s = r.node->Drain();
  if (s.ok()) return;
  if (r.crash_mid_ready && absl::IsAborted(s)) {
    Crash(r);  // Durable, but nothing of that core::Ready left the box.
    return;
  }
  Fail(absl::StrCat("replica ", r.id, " stopped: ", s.ToString()));
}

// Persist before send: every vote a correct replica sends was listed for
// persisting in this Ready or an earlier one.
void Simulation::CheckSentPersisted(const SimReplica& r,
                                    const v1::Envelope& e) {
  const v1::MessageType t = e.type();
  if (t == v1::MESSAGE_TYPE_VIEW_CHANGE) {
    v1::ViewChange vc;
    CHECK(vc.ParseFromString(e.payload()));
    if (vc.new_view() > r.durable_view) {
      Fail(absl::StrCat("persist-before-send: replica ", r.id,
                        " sends VIEW-CHANGE for ", vc.new_view(), " with view ",
                        r.durable_view, " durable"));
    }
  }
  if (t == v1::MESSAGE_TYPE_NEW_VIEW && r.durable_new_view != e.payload()) {
    Fail(absl::StrCat("persist-before-send: replica ", r.id,
                      " sends a NEW-VIEW that is not durable"));
  }
  if ((t == v1::MESSAGE_TYPE_PRE_PREPARE || t == v1::MESSAGE_TYPE_PREPARE ||
       t == v1::MESSAGE_TYPE_COMMIT || t == v1::MESSAGE_TYPE_CHECKPOINT) &&
      !r.persisted.count(Sha256(e.payload()))) {
    Fail(absl::StrCat("persist-before-send: replica ", r.id, " sends a ",
                      v1::MessageType_Name(t),
                      " it never listed in Ready.persist"));
  }
}

void Simulation::Reply(SimReplica& r, pbft::ClientId client,
                       v1::Envelope reply) {
  if (r.byzantine) {
    const Behaviour b = Pick(r);
    if (b == Behaviour::kSilent) return;
    if (b == Behaviour::kWrongDigest || b == Behaviour::kGarbage) {
      v1::Reply rep;
      if (rep.ParseFromString(reply.payload())) {
        rep.set_result("forged-result");
        reply = r.signer->Sign(v1::MESSAGE_TYPE_REPLY, rep.SerializeAsString());
      }
    }
  }
  SendToClient(client.value(),
               std::make_shared<v1::Envelope>(std::move(reply)));
}

void Simulation::Route(SimReplica& r, core::Outbound o) {
  if (r.byzantine) {
    ByzantineSend(r, std::move(o));
    return;
  }
  CheckSentPersisted(r, o.envelope);
  EnvPtr e = std::make_shared<v1::Envelope>(std::move(o.envelope));
  if (o.broadcast) {
    for (uint32_t i = 0; i < n_; ++i) {
      if (i != r.id) SendToReplica(i, e);
    }
  } else {
    SendToReplica(o.to.value(), e);
  }
}

void Simulation::CheckCertifiedBatch(const SimReplica& r,
                                     const core::CommittedBatch& b) {
  const core::Verifier& ver = crypto_->verifier();
  const std::string who =
      absl::StrCat("replica ", r.id, " seq ", b.seq.value());
  v1::PrePrepare pp;
  if (!ver.Verify(b.pre_prepare) ||
      b.pre_prepare.type() != v1::MESSAGE_TYPE_PRE_PREPARE ||
      !pp.ParseFromString(b.pre_prepare.payload())) {
    Fail(who + ": executed a batch without a valid pre-prepare");
    return;
  }
  if (b.pre_prepare.sender() != b.view.value() % n_) {
    Fail(absl::StrCat(who, ": pre-prepare signed by ", b.pre_prepare.sender(),
                      ", not the primary of view ", b.view.value()));
  }
  if (pp.view() != b.view.value() || pp.seq() != b.seq.value() ||
      pp.timestamp_ms() != b.timestamp_ms ||
      pp.batch_digest() != b.batch_digest.ToBytes()) {
    Fail(who + ": batch fields differ from its pre-prepare");
  }
  if (BatchDigest(b.pre_prepare.batch()) != b.batch_digest) {
    Fail(who + ": batch digest does not match the requests");
  }
  std::set<uint64_t> senders;
  for (const v1::Envelope& c : b.certificate.commits()) {
    v1::Commit m;
    if (!ver.Verify(c) || c.type() != v1::MESSAGE_TYPE_COMMIT ||
        !m.ParseFromString(c.payload()) || m.replica_id() != c.sender() ||
        m.view() != b.view.value() || m.seq() != b.seq.value() ||
        m.batch_digest() != b.batch_digest.ToBytes()) {
      Fail(who + ": certificate holds a commit that does not match");
      return;
    }
    senders.insert(c.sender());
  }
  if (senders.size() < 2 * f_ + 1) {
    Fail(absl::StrCat(who, ": certificate has ", senders.size(),
                      " distinct commits"));
  }
  if (b.certificate.ByteSizeLong() > limits_.commit_certificate_max) {
    Fail(absl::StrCat(who, ": certificate of ", b.certificate.ByteSizeLong(),
                      " bytes, over its bound of ",
                      limits_.commit_certificate_max));
  }
  // Validity: only requests that clients submitted execute.
  for (const v1::Envelope& re : b.pre_prepare.batch()) {
    v1::Request req;
    if (!ver.Verify(re) || !req.ParseFromString(re.payload())) {
      Fail(who + ": executes a request without a valid client signature");
      return;
    }
    auto it = submitted_.find({req.client_id(), req.request_number()});
    if (it == submitted_.end() || it->second != Sha256(req.operation())) {
      Fail(absl::StrCat(who, ": executes request (", req.client_id(), ", ",
                        req.request_number(), ") that was never submitted"));
    }
  }
}

absl::StatusOr<node::StateMachine::Executed> Simulation::Execute(
    SimReplica& r, const core::CommittedBatch& b) {
  const uint64_t s = b.seq.value();
  if (!r.byzantine) {
    CheckCertifiedBatch(r, b);
    auto [it, fresh] = agreed_batch_.emplace(s, b.batch_digest);
    if (!fresh && it->second != b.batch_digest) {
      Fail(absl::StrCat("agreement: replica ", r.id, " executes ",
                        b.batch_digest.ToHex().substr(0, 12), " at seq ", s,
                        ", another correct replica executed ",
                        it->second.ToHex().substr(0, 12)));
    }
  }
  absl::StatusOr<node::StateMachine::Executed> out = r.machine->Execute(b);
  if (!out.ok()) return out;
  std::string head;
  codec::Writer w(&head);
  w.PutU32(r.id);
  w.PutU64(s);
  w.PutRaw(out->state_digest.view());
  trace_.Update(head);
  if (r.byzantine) return out;
  ++result_.batches_executed;
  auto [it, fresh] = agreed_state_.emplace(s, out->state_digest);
  if (!fresh && it->second != out->state_digest) {
    Fail(absl::StrCat("agreement: replica ", r.id,
                      " has a different state digest after seq ", s));
  }
  for (const auto& [client, number] : out->executed) {
    if (!r.executed.insert({client.value(), number.value()}).second) {
      Fail(absl::StrCat("exactly-once: replica ", r.id, " executed (",
                        client.value(), ", ", number.value(), ") twice"));
    }
  }
  for (const core::ExecutedReply& rep : out->replies) {
    if (rep.result.empty()) continue;  // Stale: the core rejects it.
    const auto key =
        std::make_pair(rep.client_id.value(), rep.request_number.value());
    auto [it2, fresh2] = results_.emplace(key, rep.result);
    if (!fresh2 && it2->second != rep.result) {
      Fail(absl::StrCat("agreement: replica ", r.id,
                        " produced another result for (", key.first, ", ",
                        key.second, ")"));
    }
  }
  return out;
}

// --- Crashes and partitions
// ---------------------------------------------------

void Simulation::Crash(SimReplica& r) {
  CHECK(!r.down);
  r.down = true;
  r.crash_mid_ready = false;
  r.waiting.clear();     // The clients' calls fail with the connections.
  r.to_execute.clear();  // Not executed: the restart hands them out again.
  r.certs_at_crash = r.core().PreparedCertificates();
  r.height_at_crash = r.height();
  // Everything not durable is gone; what the ledger and the protocol store
  // wrote stays in the replica's Env (its disk).
  r.node.reset();
  r.fetch.reset();
  r.responder.reset();
  r.io.reset();
  r.storage.reset();
  r.machine.reset();
  r.store.reset();
  r.ledger.reset();
  last_disturbance_ = tick_;
  ++crashes_done_;
  if (r.wipe_on_crash) {
    wiped_.insert(r.id);
    // A wiped data dir: no protocol store, no ledger. The replica comes
    // back as a new one and rebuilds everything by state transfer; what it
    // voted before is forgotten (so wipes only run without Byzantine
    // replicas, where that cannot be exploited).
    r.wipe_on_crash = false;
    r.env.reset();
    r.height_at_crash = 0;
    r.durable_view = 0;
    r.durable_new_view.clear();
    r.proofs.clear();
    r.executed.clear();
    r.persisted.clear();
    r.certs_at_crash.clear();  // A wiped replica is faulty.
  }
}

// ledgerd's restart: the node reopens the ledger and the protocol store
// and restores the core from them (ReplicaNode::Open).
void Simulation::Restart(SimReplica& r) {
  CHECK(r.down);
  r.timer_expiries_seen = 0;  // A new core counts from zero.
  if (!StartNode(r)) return;
  r.down = false;
  r.deaf_until =
      tick_ + rng_.Range(0, 2ull * params_.view_change_timeout_ticks);
  last_disturbance_ = tick_;
  CheckCertsSurvived(r);
  Drain(r);
}

}  // namespace pbft::sim::internal
