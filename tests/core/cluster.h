// The core-test cluster: four real cores wired by hand, every message
// routed by the script, so each rule of Castro & Liskov §4.4 reads as a
// story (tests/core/view_change_test.cc, restore_test.cc, bodies_test.cc).
// Signed with the simulator's fake signer; f = 1, quorum 3. Test-only.
#ifndef PBFT_LEDGER_TESTS_CORE_CLUSTER_H_
#define PBFT_LEDGER_TESTS_CORE_CLUSTER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/envelope.h"
#include "common/wire_limits.h"
#include "gtest/gtest.h"
#include "replica/core/core.h"
#include "tests/sim/sim_crypto.h"

namespace pbft::core::test {

constexpr uint64_t kNowMs = 1'000'000;

class Cluster {
 public:
  explicit Cluster(ProtocolParams params = Params())
      : params_(params), crypto_(4, 2, /*real=*/false) {
    for (uint32_t i = 0; i < 4; ++i)
      signer_.push_back(crypto_.ReplicaSigner(i));
    client_ = crypto_.ClientSigner(1);
    durable_.resize(4);
    executed_.resize(4);
    for (uint32_t i = 0; i < 4; ++i) core_.push_back(NewCore(i));
    for (uint32_t i = 0; i < 4; ++i) HearFromAll(i);
  }

  // The links are up: core i heard from every peer (an idle probe of view
  // 0, which it only notes). A core that has not heard from 2f peers since
  // it started holds its view-change timer.
  void HearFromAll(uint32_t i) {
    for (uint32_t from = 0; from < 4; ++from) {
      if (from == i) continue;
      v1::FetchRequest req;
      req.set_replica_id(from);
      req.set_from_seq(1);
      req.set_max_blocks(1);
      core_[i]->Step(signer_[from]->Sign(v1::MESSAGE_TYPE_FETCH_REQUEST,
                                         req.SerializeAsString()));
    }
  }

  static ProtocolParams Params() {
    ProtocolParams p;
    p.checkpoint_interval = 4;
    p.watermark_window = 8;
    p.batch_requests_max = 1;
    p.batch_delay_ticks = 0;
    p.view_change_timeout_ticks = 10;
    p.timestamp_skew_max_ms = 1000;
    return p;
  }
  std::unique_ptr<Core> NewCore(uint32_t i) {
    Options o;
    o.id = ReplicaId(i);
    o.params = params_;
    if (fetch_blocks_max_ > 0) o.fetch_blocks_max = fetch_blocks_max_;
    return std::make_unique<Core>(o, signer_[i].get(), &crypto_.verifier());
  }
  // From now on, what is over its type's limit or not canonical is refused
  // before the core sees it (common/wire_limits.h), as the shell does.
  void CheckWire() { limits_ = WireLimits::For(4, params_); }

  // Blocks per FETCH for cores made from now on (0: the default).
  void SetFetchBlocksMax(uint32_t n) { fetch_blocks_max_ = n; }

  Core& core(uint32_t i) { return *core_[i]; }
  const Signer& signer(uint32_t i) const { return *signer_[i]; }
  const Signer& client_signer() const { return *client_; }

  v1::Envelope Request(uint64_t number) {
    v1::Request r;
    r.set_client_id(1);
    r.set_request_number(number);
    r.set_operation("op");
    return client_->Sign(v1::MESSAGE_TYPE_REQUEST, r.SerializeAsString());
  }

  // Delivers queued messages until none is left (bounded); `pass` decides
  // which (from, to, envelope) get through. Executes what is handed out.
  using Filter =
      std::function<bool(uint32_t from, uint32_t to, const v1::Envelope&)>;
  void Run(const Filter& pass, int ticks = 0) {
    for (int round = 0; round < 2000; ++round) {
      Collect();
      if (queue_.empty()) {
        if (ticks-- <= 0) return;
        for (uint32_t i = 0; i < 4; ++i) {
          if (!down_[i]) core_[i]->Tick(kNowMs);
        }
        continue;
      }
      auto [from, to, e] = queue_.front();
      queue_.erase(queue_.begin());
      if (down_[to] || !pass(from, to, e)) continue;
      if (limits_ && CheckWireMessage(e, *limits_) != WireError::kOk) {
        ++refused_by_wire_;
        continue;
      }
      if (e.type() == v1::MESSAGE_TYPE_FETCH_REQUEST && serve_fetches_) {
        ServeFetch(to, e);  // The shell's part; then the core's.
      }
      core_[to]->Step(e);
    }
    FAIL() << "messages did not settle";
  }
  static bool All(uint32_t, uint32_t, const v1::Envelope&) { return true; }

  // Request `number` reaches every replica and everything but COMMITs gets
  // through: its batch prepares everywhere and commits nowhere.
  void PrepareEverywhere(uint64_t number) {
    for (uint32_t r = 0; r < 4; ++r) Inject(99, r, Request(number));
    Run([](uint32_t, uint32_t, const v1::Envelope& e) {
      return e.type() != v1::MESSAGE_TYPE_COMMIT;
    });
  }

  // Crash: everything not made durable by a Ready is lost. Restart
  // restores from what was persisted and the executed height.
  void Crash(uint32_t i) {
    Collect();
    down_[i] = true;
    core_[i] = NewCore(i);
  }
  absl::Status Restart(uint32_t i) {
    RestoreState st;
    st.last_executed = Seq(executed_[i]);
    st.view = durable_[i].view;
    st.stable_checkpoint = durable_[i].stable;
    st.entries = durable_[i].entries;
    down_[i] = false;
    return core_[i]->Restore(st);
  }

  // Fetch requests are answered from the executed blocks (and bodies from
  // the durable PRE-PREPAREs), as ledgerd does (before this, only the core
  // sees them).
  void ServeFetches() { serve_fetches_ = true; }
  // Replica `i` answers body requests with a client signature forged.
  void CorruptBodiesFrom(uint32_t i) { corrupt_bodies_from_ = i; }

  uint64_t executed(uint32_t i) const { return executed_[i]; }
  uint64_t refused_by_wire() const { return refused_by_wire_; }
  std::vector<v1::Envelope> sent_by(uint32_t i, v1::MessageType t) const {
    std::vector<v1::Envelope> out;
    for (const auto& e : sent_[i]) {
      if (e.type() == t) out.push_back(e);
    }
    return out;
  }
  void Inject(uint32_t from, uint32_t to, v1::Envelope e) {
    queue_.push_back({from, to, std::move(e)});
  }

 private:
  struct Durable {
    View view{0};
    std::optional<v1::CheckpointProof> stable;
    std::vector<v1::Envelope> entries;
  };
  struct Msg {
    uint32_t from, to;
    v1::Envelope e;
  };
  void ServeFetch(uint32_t at, const v1::Envelope& e) {
    v1::FetchRequest req;
    ASSERT_TRUE(req.ParseFromString(e.payload()));
    v1::FetchResponse resp;
    resp.set_replica_id(at);
    *resp.mutable_stable_checkpoint() = core_[at]->stable_checkpoint();
    if (!req.batch_digest().empty()) {  // A body, from the durable entries.
      for (const v1::Envelope& d : durable_[at].entries) {
        v1::PrePrepare pp;
        if (d.type() == v1::MESSAGE_TYPE_PRE_PREPARE && d.batch_size() > 0 &&
            pp.ParseFromString(d.payload()) && pp.seq() == req.from_seq() &&
            pp.batch_digest() == req.batch_digest()) {
          *resp.mutable_batch_pre_prepare() = d;
          if (corrupt_bodies_from_ == at) {
            resp.mutable_batch_pre_prepare()->mutable_batch(0)->set_signature(
                std::string(64, 'x'));
          }
        }
      }
      queue_.push_back({at, static_cast<uint32_t>(e.sender()),
                        signer_[at]->Sign(v1::MESSAGE_TYPE_FETCH_RESPONSE,
                                          resp.SerializeAsString())});
      return;
    }
    for (uint64_t s = std::max<uint64_t>(req.from_seq(), 1);
         s <= blocks_[at].size() && s < req.from_seq() + req.max_blocks();
         ++s) {
      v1::CertifiedBatch* b = resp.add_batches();
      *b->mutable_pre_prepare() = blocks_[at][s - 1].pre_prepare;
      *b->mutable_certificate() = blocks_[at][s - 1].certificate;
    }
    queue_.push_back({at, static_cast<uint32_t>(e.sender()),
                      signer_[at]->Sign(v1::MESSAGE_TYPE_FETCH_RESPONSE,
                                        resp.SerializeAsString())});
  }
  // What the ledger answers for each request of an executed batch.
  static std::vector<ExecutedReply> RepliesOf(const CommittedBatch& b) {
    std::vector<ExecutedReply> out;
    for (const v1::Envelope& e : b.pre_prepare.batch()) {
      v1::Request r;
      EXPECT_TRUE(r.ParseFromString(e.payload()));
      out.push_back(
          {ClientId(r.client_id()), RequestNumber(r.request_number()), "done"});
    }
    return out;
  }
  void Collect() {
    for (uint32_t i = 0; i < 4; ++i) {
      if (down_[i]) continue;
      while (core_[i]->HasReady()) {
        Ready rd = core_[i]->TakeReady();
        ASSERT_TRUE(core_[i]->Invariants().ok())
            << core_[i]->Invariants().message();
        if (rd.persist.view) durable_[i].view = *rd.persist.view;
        for (auto& e : rd.persist.entries) durable_[i].entries.push_back(e);
        if (rd.persist.stable_checkpoint) {
          durable_[i].stable = rd.persist.stable_checkpoint;
        }
        for (auto& o : rd.messages) {
          sent_[i].push_back(o.envelope);
          for (uint32_t t = 0; t < 4; ++t) {
            if (t != i && (o.broadcast || o.to.value() == t)) {
              queue_.push_back({i, t, o.envelope});
            }
          }
        }
        for (const CommittedBatch& b : rd.execute) {
          ASSERT_EQ(b.seq.value(), executed_[i] + 1);
          executed_[i] = b.seq.value();
          blocks_[i].push_back(b);
          Digest state = crypto::Sha256(
              absl::StrCat(b.batch_digest.ToHex(), b.seq.value()));
          core_[i]->OnExecuted(b.seq, state, RepliesOf(b));
        }
      }
    }
  }

  const ProtocolParams params_;
  std::optional<WireLimits> limits_;
  uint64_t refused_by_wire_ = 0;
  sim::SimCrypto crypto_;
  std::vector<std::unique_ptr<Signer>> signer_;
  std::unique_ptr<Signer> client_;
  std::vector<std::unique_ptr<Core>> core_;
  std::vector<Durable> durable_;
  std::vector<uint64_t> executed_;
  std::vector<CommittedBatch> blocks_[4];
  bool serve_fetches_ = false;
  uint32_t corrupt_bodies_from_ = 99;
  uint32_t fetch_blocks_max_ = 0;
  bool down_[4] = {false, false, false, false};
  std::vector<Msg> queue_;
  std::vector<v1::Envelope> sent_[4];
};

inline bool NotFrom0(uint32_t from, uint32_t to, const v1::Envelope&) {
  return from != 0 && to != 0;
}

// The digest of a batch of one request.
inline std::string BatchDigestOf(const v1::Envelope& request) {
  google::protobuf::RepeatedPtrField<v1::Envelope> batch;
  *batch.Add() = request;
  return BatchDigest(batch).ToBytes();
}

// Hand-built §4.4 messages for the boundary scenarios: a prepared
// certificate of view 0 (PRE-PREPARE by replica 0, PREPAREs by backups 2
// and 3) for a one-request batch at `seq`, and a VIEW-CHANGE for view 1.
inline v1::PreparedCertificate Certificate(const Cluster& c, uint64_t seq,
                                           const v1::Envelope& request) {
  v1::PrePrepare pp;
  pp.set_view(0);
  pp.set_seq(seq);
  pp.set_timestamp_ms(kNowMs);
  const std::string d = BatchDigestOf(request);
  pp.set_batch_digest(d);
  v1::PreparedCertificate cert;
  *cert.mutable_pre_prepare() =
      c.signer(0).Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString());
  for (uint32_t b : {2u, 3u}) {
    v1::Prepare p;
    p.set_view(0);
    p.set_seq(seq);
    p.set_batch_digest(d);
    p.set_replica_id(b);
    *cert.add_prepares() =
        c.signer(b).Sign(v1::MESSAGE_TYPE_PREPARE, p.SerializeAsString());
  }
  return cert;
}

inline v1::Envelope ViewChangeTo1(const Cluster& c, uint32_t from,
                                  std::vector<v1::PreparedCertificate> certs) {
  v1::ViewChange vc;
  vc.set_new_view(1);
  vc.mutable_stable_checkpoint()->set_seq(0);
  for (auto& cert : certs) *vc.add_prepared() = std::move(cert);
  vc.set_replica_id(from);
  return c.signer(from).Sign(v1::MESSAGE_TYPE_VIEW_CHANGE,
                             vc.SerializeAsString());
}

// Only what reaches replica 1 (primary of view 1) counts.
inline bool To1(uint32_t, uint32_t to, const v1::Envelope&) { return to == 1; }

inline std::vector<v1::PrePrepare> NewViewO(const Cluster& c) {
  std::vector<v1::PrePrepare> out;
  auto nv = c.sent_by(1, v1::MESSAGE_TYPE_NEW_VIEW);
  if (nv.empty()) return out;
  v1::NewView m;
  EXPECT_TRUE(m.ParseFromString(nv[0].payload()));
  for (const v1::Envelope& e : m.pre_prepares()) {
    out.emplace_back();
    EXPECT_TRUE(out.back().ParseFromString(e.payload()));
  }
  return out;
}

}  // namespace pbft::core::test

#endif  // PBFT_LEDGER_TESTS_CORE_CLUSTER_H_
