// View change (§4.4) and crash recovery scenarios: four real cores wired by
// hand, every message routed by the script, so each rule reads as a story.
// Signed with the simulator's fake signer; f = 1, quorum 3.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/envelope.h"
#include "gtest/gtest.h"
#include "replica/core/core.h"
#include "tests/sim/sim_crypto.h"

namespace pbft {
namespace {

constexpr uint64_t kNowMs = 1'000'000;

class Cluster {
 public:
  Cluster() : crypto_(4, 2, /*real=*/false) {
    for (uint32_t i = 0; i < 4; ++i)
      signer_.push_back(crypto_.ReplicaSigner(i));
    client_ = crypto_.ClientSigner(1);
    durable_.resize(4);
    executed_.resize(4);
    for (uint32_t i = 0; i < 4; ++i) core_.push_back(NewCore(i));
  }

  static ledger::ProtocolParams Params() {
    ledger::ProtocolParams p;
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
    o.params = Params();
    if (fetch_blocks_max_ > 0) o.fetch_blocks_max = fetch_blocks_max_;
    return std::make_unique<Core>(o, signer_[i].get(), &crypto_.verifier());
  }
  // Blocks per FETCH for cores made from now on (0: the default).
  void SetFetchBlocksMax(uint32_t n) { fetch_blocks_max_ = n; }

  Core& core(uint32_t i) { return *core_[i]; }
  const Signer& signer(uint32_t i) const { return *signer_[i]; }

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
      if (e.type() == v1::MESSAGE_TYPE_FETCH_REQUEST) {
        if (!serve_fetches_) continue;
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

  // Fetch requests are answered from the executed blocks, as ledgerd does,
  // and passed to the core (before this, they are dropped).
  void ServeFetches() { serve_fetches_ = true; }

  uint64_t executed(uint32_t i) const { return executed_[i]; }
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
          Digest state = ledger::crypto::Sha256(
              absl::StrCat(b.batch_digest.ToHex(), b.seq.value()));
          core_[i]->OnExecuted(b.seq, state, {});
        }
      }
    }
  }

  sim::SimCrypto crypto_;
  std::vector<std::unique_ptr<Signer>> signer_;
  std::unique_ptr<Signer> client_;
  std::vector<std::unique_ptr<Core>> core_;
  std::vector<Durable> durable_;
  std::vector<uint64_t> executed_;
  std::vector<CommittedBatch> blocks_[4];
  bool serve_fetches_ = false;
  uint32_t fetch_blocks_max_ = 0;
  bool down_[4] = {false, false, false, false};
  std::vector<Msg> queue_;
  std::vector<v1::Envelope> sent_[4];
};

bool NotFrom0(uint32_t from, uint32_t to, const v1::Envelope&) {
  return from != 0 && to != 0;
}

TEST(ViewChange, BackupsReplaceASilentPrimary_4_4) {
  Cluster c;
  // The client's request reaches the backups only; primary 0 is cut off.
  for (uint32_t b = 1; b < 4; ++b) c.Inject(99, b, c.Request(1));
  c.Run(NotFrom0, /*ticks=*/40);
  for (uint32_t b = 1; b < 4; ++b) {
    EXPECT_EQ(c.core(b).view(), View(1)) << b;
    EXPECT_TRUE(c.core(b).view_active()) << b;
    EXPECT_EQ(c.executed(b), 1u) << "the request executes in view 1";
  }
  EXPECT_FALSE(c.sent_by(1, v1::MESSAGE_TYPE_NEW_VIEW).empty());
}

TEST(ViewChange, APreparedBatchKeepsItsSeqInTheNewView_4_4) {
  Cluster c;
  c.PrepareEverywhere(1);
  ASSERT_EQ(c.executed(1), 0u);
  // Then the primary goes silent; the backups change view.
  c.Run(NotFrom0, /*ticks=*/40);
  for (uint32_t b = 1; b < 4; ++b) {
    EXPECT_EQ(c.core(b).view(), View(1));
    EXPECT_EQ(c.executed(b), 1u);
  }
  // The NEW-VIEW re-proposed seq 1 with the prepared digest (O, §4.4).
  auto nv = c.sent_by(1, v1::MESSAGE_TYPE_NEW_VIEW);
  ASSERT_FALSE(nv.empty());
  v1::NewView m;
  ASSERT_TRUE(m.ParseFromString(nv[0].payload()));
  ASSERT_EQ(m.pre_prepares_size(), 1);
  v1::PrePrepare pp;
  ASSERT_TRUE(pp.ParseFromString(m.pre_prepares(0).payload()));
  EXPECT_EQ(pp.seq(), 1u);
  EXPECT_EQ(pp.view(), 1u);
  EXPECT_EQ(pp.requests_size(), 1);
}

// Seq 1 prepares everywhere and commits nowhere; primary 0 goes silent and
// replica 1 leads view 1, but replica 3 never hears its NEW-VIEW. It gets
// the real one changed by `alter` and re-signed by replica 1 instead, and
// must refuse it.
void ExpectAlteredNewViewRefused(
    const std::function<void(const Cluster&, v1::NewView*)>& alter) {
  Cluster c;
  c.PrepareEverywhere(1);
  c.Run(
      [](uint32_t from, uint32_t to, const v1::Envelope& e) {
        return from != 0 && to != 0 &&
               !(to == 3 && e.type() == v1::MESSAGE_TYPE_NEW_VIEW);
      },
      /*ticks=*/12);
  ASSERT_FALSE(c.core(3).view_active());
  v1::NewView m;
  ASSERT_TRUE(
      m.ParseFromString(c.sent_by(1, v1::MESSAGE_TYPE_NEW_VIEW)[0].payload()));
  alter(c, &m);
  c.Inject(1, 3,
           c.signer(1).Sign(v1::MESSAGE_TYPE_NEW_VIEW, m.SerializeAsString()));
  c.Run([](uint32_t from, uint32_t to, const v1::Envelope&) {
    return from == 1 && to == 3;
  });
  EXPECT_FALSE(c.core(3).view_active());
  EXPECT_EQ(
      c.core(3).stats().dropped[static_cast<size_t>(DropReason::kBadNewView)],
      1u);
}

// O turned the prepared batch into a null request.
TEST(ViewChange, BackupRefusesNewViewWhoseOSetDoesNotMatch_4_4) {
  ExpectAlteredNewViewRefused([](const Cluster& c, v1::NewView* m) {
    v1::PrePrepare pp;
    ASSERT_TRUE(pp.ParseFromString(m->pre_prepares(0).payload()));
    pp.clear_requests();
    pp.set_batch_digest(ledger::NullBatchDigest().ToBytes());
    *m->mutable_pre_prepares(0) =
        c.signer(1).Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString());
  });
}

// V must hold 2f+1 VIEW-CHANGEs: with 2f, the new primary could have missed
// the one correct replica of a commit quorum that prepared a batch, and
// reassign its seq. One VIEW-CHANGE less is refused although O still
// matches the rest.
TEST(ViewChange, BackupRefusesNewViewWithOnlyTwoFViewChanges_4_4) {
  ExpectAlteredNewViewRefused([](const Cluster&, v1::NewView* m) {
    ASSERT_EQ(m->view_changes_size(), 3);
    m->mutable_view_changes()->RemoveLast();
  });
}

// The new primary waits for 2f+1 VIEW-CHANGEs (its own counts) before it
// sends NEW-VIEW.
TEST(ViewChange, NewPrimaryWaitsForTwoFPlusOneViewChanges_4_4) {
  Cluster c;
  // Replicas 1 and 2 hold the request and time out; replica 3 hears
  // nothing at first.
  c.Inject(99, 1, c.Request(1));
  c.Inject(99, 2, c.Request(1));
  c.Run(
      [](uint32_t from, uint32_t to, const v1::Envelope&) {
        return from == 99 || (from != 0 && to != 0 && from != 3 && to != 3);
      },
      /*ticks=*/40);
  EXPECT_FALSE(c.sent_by(1, v1::MESSAGE_TYPE_VIEW_CHANGE).empty());
  EXPECT_FALSE(c.sent_by(2, v1::MESSAGE_TYPE_VIEW_CHANGE).empty());
  EXPECT_TRUE(c.sent_by(1, v1::MESSAGE_TYPE_NEW_VIEW).empty())
      << "NEW-VIEW from 2f VIEW-CHANGEs";
  EXPECT_FALSE(c.core(1).view_active());
  // Replica 3 hears them, joins (f+1), and its VIEW-CHANGE completes V.
  c.Run(NotFrom0, /*ticks=*/40);
  EXPECT_FALSE(c.sent_by(1, v1::MESSAGE_TYPE_NEW_VIEW).empty());
  for (uint32_t b = 1; b < 4; ++b) {
    EXPECT_TRUE(c.core(b).view_active()) << b;
    EXPECT_GE(c.core(b).view(), View(1)) << b;
  }
}

// A new primary holds the batches its NEW-VIEW re-proposed until they
// execute: if they never commit (here no PREPARE or COMMIT gets through),
// its own view-change timer moves it on. It cannot join the others (no
// VIEW-CHANGE or NEW-VIEW for a later view reaches it), so only its timer
// can. (The timer starts on entering the view, and again when the backups
// resend the request; either suffices here, the test fails without both.)
TEST(ViewChange, NewPrimaryTimesOutWhenItsReproposedBatchNeverCommits_4_4) {
  Cluster c;
  c.PrepareEverywhere(1);
  c.Run(
      [](uint32_t from, uint32_t to, const v1::Envelope& e) {
        if (from == 0 || to == 0) return false;
        if (e.type() == v1::MESSAGE_TYPE_PREPARE ||
            e.type() == v1::MESSAGE_TYPE_COMMIT) {
          return false;
        }
        // Nothing about later views reaches replica 1.
        if (to == 1 && e.type() == v1::MESSAGE_TYPE_VIEW_CHANGE) {
          v1::ViewChange vc;
          return vc.ParseFromString(e.payload()) && vc.new_view() <= 1;
        }
        if (to == 1 && e.type() == v1::MESSAGE_TYPE_NEW_VIEW) {
          v1::NewView nv;
          return nv.ParseFromString(e.payload()) && nv.view() <= 1;
        }
        return true;
      },
      /*ticks=*/200);
  ASSERT_FALSE(c.sent_by(1, v1::MESSAGE_TYPE_NEW_VIEW).empty());  // Led 1.
  EXPECT_EQ(c.executed(1), 0u);
  EXPECT_GE(c.core(1).view(), View(2));
}

// §4.4: the new primary proposes new batches only after O. Here it enters
// its view behind on checkpoints (min-s = 4 from the others' VIEW-CHANGEs is
// above its own low watermark) while holding a request: adopting min-s must
// not let it cut a batch at seq 5, which O re-proposes.
TEST(ViewChange, NewPrimaryProposesNothingAtSeqsOfO_4_4) {
  Cluster c;
  auto no_checkpoints_to_1 = [](uint32_t, uint32_t to, const v1::Envelope& e) {
    return !(to == 1 && e.type() == v1::MESSAGE_TYPE_CHECKPOINT);
  };
  for (uint64_t t = 1; t <= 4; ++t) {  // Seqs 1-4: checkpoint 4 (K = 4).
    c.Inject(99, 0, c.Request(t));
    c.Run(no_checkpoints_to_1);
  }
  ASSERT_EQ(c.executed(1), 4u);
  ASSERT_EQ(c.core(1).low_watermark(), Seq(0));
  ASSERT_EQ(c.core(2).low_watermark(), Seq(4));
  // Seq 5 prepares everywhere, commits nowhere.
  for (uint32_t r = 0; r < 4; ++r) c.Inject(99, r, c.Request(5));
  c.Run([&](uint32_t from, uint32_t to, const v1::Envelope& e) {
    return no_checkpoints_to_1(from, to, e) &&
           e.type() != v1::MESSAGE_TYPE_COMMIT;
  });
  // Replica 1 holds one more request; primary 0 goes silent.
  c.Inject(99, 1, c.Request(6));
  c.Run(
      [&](uint32_t from, uint32_t to, const v1::Envelope& e) {
        return from != 0 && to != 0 && no_checkpoints_to_1(from, to, e);
      },
      /*ticks=*/40);
  ASSERT_EQ(c.core(1).view(), View(1));
  ASSERT_TRUE(c.core(1).view_active());
  // Its own PRE-PREPAREs of view 1 all come after O (seq 5).
  for (const v1::Envelope& e : c.sent_by(1, v1::MESSAGE_TYPE_PRE_PREPARE)) {
    v1::PrePrepare pp;
    ASSERT_TRUE(pp.ParseFromString(e.payload()));
    if (pp.view() == 1) {
      EXPECT_GT(pp.seq(), 5u);
    }
  }
  for (uint32_t r = 1; r < 4; ++r) EXPECT_EQ(c.executed(r), 6u) << r;
}

TEST(ViewChange, JoinsOnFPlusOneHigherViewChanges_4_4) {
  Cluster c;
  // Replicas 1 and 2 time out (they hold the request); 3 holds nothing.
  c.Inject(99, 1, c.Request(1));
  c.Inject(99, 2, c.Request(1));
  c.Run(
      [](uint32_t from, uint32_t to, const v1::Envelope& e) {
        return from == 99 || (from != 0 && to != 0 &&
                              e.type() == v1::MESSAGE_TYPE_VIEW_CHANGE);
      },
      /*ticks=*/11);
  // f+1 = 2 VIEW-CHANGEs for view 1 reached replica 3: it joined.
  EXPECT_EQ(c.core(3).view(), View(1));
  EXPECT_GE(c.core(3).stats().view_changes_started, 1u);
}

TEST(CrashRecovery, RestartedBackupNeverPreparesAnotherDigest_4_4) {
  Cluster c;
  c.Inject(99, 0, c.Request(1));
  c.Run([](uint32_t, uint32_t, const v1::Envelope& e) {
    return e.type() != v1::MESSAGE_TYPE_COMMIT;
  });
  c.Crash(2);
  ASSERT_TRUE(c.Restart(2).ok());
  // The restarted backup holds its pre-prepare and prepare for (0, 1):
  // another batch at (0, 1) is refused.
  v1::PrePrepare pp;
  pp.set_view(0);
  pp.set_seq(1);
  pp.set_timestamp_ms(kNowMs);
  *pp.add_requests() = c.Request(2);
  pp.set_batch_digest(ledger::BatchDigest(pp.requests()).ToBytes());
  c.core(2).Step(
      c.signer(0).Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString()));
  EXPECT_EQ(c.core(2).stats().dropped[static_cast<size_t>(
                DropReason::kConflictingPrePrepare)],
            1u);
  // And its next VIEW-CHANGE still carries the prepared certificate.
  c.Inject(99, 1, c.Request(1));
  c.Inject(99, 3, c.Request(1));
  c.Run(NotFrom0, /*ticks=*/40);
  auto vcs = c.sent_by(2, v1::MESSAGE_TYPE_VIEW_CHANGE);
  ASSERT_FALSE(vcs.empty());
  v1::ViewChange vc;
  ASSERT_TRUE(vc.ParseFromString(vcs[0].payload()));
  EXPECT_EQ(vc.prepared_size(), 1);
}

TEST(CrashRecovery, RestartDuringViewChangeStaysOutOfTheOldView_4_4) {
  Cluster c;
  c.Inject(99, 2, c.Request(1));
  c.Run(NotFrom0, /*ticks=*/11);  // 2 times out alone: view 1, not active.
  ASSERT_EQ(c.core(2).view(), View(1));
  ASSERT_FALSE(c.core(2).view_active());
  c.Crash(2);
  ASSERT_TRUE(c.Restart(2).ok());
  EXPECT_EQ(c.core(2).view(), View(1));
  EXPECT_FALSE(c.core(2).view_active());
  // A PREPARE of view 0 is no longer accepted.
  v1::Prepare p;
  p.set_view(0);
  p.set_seq(1);
  p.set_batch_digest(ledger::NullBatchDigest().ToBytes());
  p.set_replica_id(1);
  c.core(2).Step(
      c.signer(1).Sign(v1::MESSAGE_TYPE_PREPARE, p.SerializeAsString()));
  EXPECT_GE(
      c.core(2).stats().dropped[static_cast<size_t>(DropReason::kWrongView)],
      1u);
}

}  // namespace
}  // namespace pbft

namespace pbft {
namespace {

// Rejoining the current view (docs/protocol.md): primary 0 is cut off while
// the backups replace it, then comes back to an idle cluster. Its idle
// probe names view 0; the peer it asks answers with the NEW-VIEW of view 1,
// which it checks (O recomputed from V) and enters.
TEST(Rejoin, FormerPrimaryJoinsTheNewViewOfAnIdleCluster_4_4) {
  Cluster c;
  c.ServeFetches();
  for (uint32_t b = 1; b < 4; ++b) c.Inject(99, b, c.Request(1));
  c.Run(NotFrom0, /*ticks=*/40);
  ASSERT_EQ(c.core(1).view(), View(1));
  ASSERT_EQ(c.core(0).view(), View(0));
  ASSERT_TRUE(c.core(0).view_active());
  // Back, no traffic: only its own probes can tell it.
  c.Run(Cluster::All, /*ticks=*/500);
  EXPECT_EQ(c.core(0).view(), View(1));
  EXPECT_TRUE(c.core(0).view_active());
  EXPECT_TRUE(c.core(0).in_cluster_view());
  EXPECT_EQ(c.executed(0), 1u);
  EXPECT_GE(c.core(0).stats().views_entered, 1u);
  uint64_t offered = 0;
  for (uint32_t b = 1; b < 4; ++b)
    offered += c.core(b).stats().new_views_offered;
  EXPECT_GE(offered, 1u);
}

// A fetched commit certificate of view 1 proves the cluster is there: the
// replica asks at its next fetch interval, without waiting for an idle
// probe, and executing the fetched batch does not hide that it is out of
// view.
TEST(Rejoin, FetchedCertificateOfAHigherViewTriggersAProbe_4_4) {
  Cluster c;
  c.ServeFetches();
  for (uint32_t b = 1; b < 4; ++b) c.Inject(99, b, c.Request(1));
  c.Run(NotFrom0, /*ticks=*/40);
  ASSERT_EQ(c.core(1).view(), View(1));
  // Replica 0 gets only fetch traffic, no NEW-VIEW: it adopts the batch
  // committed in view 1 and is then out of view on proof.
  auto fetch_only = [](uint32_t from, uint32_t to, const v1::Envelope& e) {
    if (from != 0 && to != 0) return true;
    return e.type() == v1::MESSAGE_TYPE_FETCH_REQUEST ||
           e.type() == v1::MESSAGE_TYPE_FETCH_RESPONSE;
  };
  c.Run(fetch_only, /*ticks=*/440);
  ASSERT_EQ(c.executed(0), 1u);
  EXPECT_EQ(c.core(0).cluster_view(), View(1));
  EXPECT_FALSE(c.core(0).in_cluster_view());
  const uint64_t probes = c.core(0).stats().view_probes;
  EXPECT_GE(probes, 1u);
  // Now NEW-VIEWs get through too: within two fetch intervals it is in.
  c.Run(Cluster::All, /*ticks=*/80);
  EXPECT_EQ(c.core(0).view(), View(1));
  EXPECT_TRUE(c.core(0).in_cluster_view());
}

// f replicas' messages of a higher view are no evidence (they may lie);
// f+1 are.
TEST(Rejoin, FHigherViewPreparesAreNoEvidenceFPlusOneAre_4_4) {
  Cluster c;
  auto prepare = [&](uint32_t from, uint64_t view) {
    v1::Prepare p;
    p.set_view(view);
    p.set_seq(1);
    p.set_batch_digest(ledger::NullBatchDigest().ToBytes());
    p.set_replica_id(from);
    return c.signer(from).Sign(v1::MESSAGE_TYPE_PREPARE, p.SerializeAsString());
  };
  c.Inject(1, 0, prepare(1, 7));
  c.Run(Cluster::All);
  EXPECT_EQ(c.core(0).cluster_view(), View(0));
  EXPECT_TRUE(c.core(0).in_cluster_view());
  c.Inject(2, 0, prepare(2, 5));
  c.Run(Cluster::All);
  EXPECT_EQ(c.core(0).cluster_view(), View(5)) << "the (f+1)-th highest";
  EXPECT_FALSE(c.core(0).in_cluster_view());
  EXPECT_EQ(c.core(0).view(), View(0)) << "evidence never moves the view";
}

}  // namespace
}  // namespace pbft

namespace pbft {
namespace {

// Hand-built §4.4 messages for the boundary scenarios: a prepared
// certificate of view 0 (PRE-PREPARE by replica 0, PREPAREs by backups 2
// and 3) for a one-request batch at `seq`, and a VIEW-CHANGE for view 1.
v1::PreparedCertificate Certificate(const Cluster& c, uint64_t seq,
                                    const v1::Envelope& request) {
  v1::PrePrepare pp;
  pp.set_view(0);
  pp.set_seq(seq);
  pp.set_timestamp_ms(kNowMs);
  *pp.add_requests() = request;
  const std::string d = ledger::BatchDigest(pp.requests()).ToBytes();
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

v1::Envelope ViewChangeTo1(const Cluster& c, uint32_t from,
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
bool To1(uint32_t, uint32_t to, const v1::Envelope&) { return to == 1; }

std::vector<v1::PrePrepare> NewViewO(const Cluster& c) {
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

// §4.4 valid VIEW-CHANGE: certificates with seq in (s*, s* + L]. With
// s* = 0 and L = 8, seq 8 is carried into the new view's O.
TEST(ViewChangeBounds, CertificateAtExactlyHPlusLIsCarried_4_4) {
  Cluster c;
  const uint64_t L = Cluster::Params().watermark_window;
  c.Inject(2, 1, ViewChangeTo1(c, 2, {Certificate(c, L, c.Request(1))}));
  c.Inject(3, 1, ViewChangeTo1(c, 3, {}));
  c.Run(To1);
  EXPECT_EQ(c.core(1)
                .stats()
                .dropped[static_cast<size_t>(DropReason::kBadViewChange)],
            0u);
  const std::vector<v1::PrePrepare> o = NewViewO(c);
  ASSERT_EQ(o.size(), L) << "seqs 1..L-1 null, L the batch";
  EXPECT_EQ(o.back().seq(), L);
  EXPECT_EQ(o.back().requests_size(), 1);
  EXPECT_EQ(o.front().batch_digest(), ledger::NullBatchDigest().ToBytes());
  EXPECT_TRUE(c.core(1).view_active());
  EXPECT_EQ(c.core(1).view(), View(1));
}

// ... and one at seq L + 1 makes the VIEW-CHANGE invalid: refused and
// counted; with one valid VIEW-CHANGE from others (f), replica 1 does not
// move.
TEST(ViewChangeBounds, CertificateAtHPlusLPlusOneIsRefused_4_4) {
  Cluster c;
  const uint64_t L = Cluster::Params().watermark_window;
  c.Inject(2, 1, ViewChangeTo1(c, 2, {Certificate(c, L + 1, c.Request(1))}));
  c.Inject(3, 1, ViewChangeTo1(c, 3, {}));
  c.Run(To1);
  EXPECT_EQ(c.core(1)
                .stats()
                .dropped[static_cast<size_t>(DropReason::kBadViewChange)],
            1u);
  EXPECT_EQ(c.core(1).view(), View(0));
  EXPECT_TRUE(c.core(1).view_active());
  EXPECT_TRUE(NewViewO(c).empty());
}

// Several prepared seqs, from different VIEW-CHANGEs: every one is
// re-proposed at its seq, the gaps are null, and max-s is the highest.
TEST(ViewChangeBounds, SeveralPreparedSeqsAreAllReproposed_4_4) {
  Cluster c;
  c.Inject(2, 1,
           ViewChangeTo1(c, 2,
                         {Certificate(c, 2, c.Request(1)),
                          Certificate(c, 5, c.Request(3))}));
  c.Inject(3, 1, ViewChangeTo1(c, 3, {Certificate(c, 3, c.Request(2))}));
  c.Run(To1);
  const std::vector<v1::PrePrepare> o = NewViewO(c);
  ASSERT_EQ(o.size(), 5u);
  const std::string null = ledger::NullBatchDigest().ToBytes();
  const std::vector<uint64_t> request_at = {0, 1, 2, 0, 3};  // 0: null.
  for (size_t i = 0; i < o.size(); ++i) {
    EXPECT_EQ(o[i].seq(), i + 1);
    if (request_at[i] == 0) {
      EXPECT_EQ(o[i].batch_digest(), null) << "seq " << i + 1;
      continue;
    }
    ASSERT_EQ(o[i].requests_size(), 1) << "seq " << i + 1;
    v1::Request r;
    ASSERT_TRUE(r.ParseFromString(o[i].requests(0).payload()));
    EXPECT_EQ(r.request_number(), request_at[i]) << "seq " << i + 1;
  }
}

// §4.4 liveness (c): f VIEW-CHANGEs for a higher view (here one, for view
// 1 and for a far view) do not move a correct replica; f+1 do.
TEST(ViewChangeBounds, FHigherViewChangesDoNotMoveAReplica_4_4) {
  Cluster c;
  c.Inject(3, 1, ViewChangeTo1(c, 3, {}));
  c.Run(To1, /*ticks=*/30);
  EXPECT_EQ(c.core(1).view(), View(0));
  EXPECT_TRUE(c.core(1).view_active());
  EXPECT_EQ(c.core(1).stats().view_changes_started, 0u);
  c.Inject(2, 1, ViewChangeTo1(c, 2, {}));
  c.Run(To1);
  EXPECT_EQ(c.core(1).view(), View(1));
}

// §4.4 liveness (b): the timeout doubles on the expiry that starts a view
// change and is back at its base once a batch executes in the new view.
TEST(ViewChangeBounds, TimeoutReturnsToBaseAfterProgress_4_4) {
  Cluster c;
  const uint64_t base = Cluster::Params().view_change_timeout_ticks;
  for (uint32_t b = 1; b < 4; ++b) c.Inject(99, b, c.Request(1));
  c.Run(NotFrom0, /*ticks=*/40);
  for (uint32_t b = 1; b < 4; ++b) {
    ASSERT_EQ(c.core(b).view(), View(1)) << b;
    ASSERT_EQ(c.executed(b), 1u) << b;
    EXPECT_GE(c.core(b).stats().view_change_timer_expiries, 1u) << b;
    EXPECT_EQ(c.core(b).view_change_timeout_ticks(), base) << b;
  }
}

}  // namespace
}  // namespace pbft

namespace pbft {
namespace {

// State transfer beyond the window (docs/protocol.md "State transfer"): a
// replica that was cut off adopts a far stable proof from a fetch response
// and executes fetched batches past h + L towards it. Killed there, it must
// restart from its data dir: the proof it was executing towards is durable
// (its CHECKPOINTs were persisted before any batch past H executed), so the
// ledger is inside the window Restore rebuilds.
TEST(StateTransfer, CrashWhileExecutingPastTheWindowRestarts_4_4) {
  Cluster c;
  c.ServeFetches();
  auto cut3 = [](uint32_t from, uint32_t to, const v1::Envelope&) {
    return from != 3 && to != 3;
  };
  for (uint64_t t = 1; t <= 30; ++t) {
    for (uint32_t b = 0; b < 3; ++b) c.Inject(99, b, c.Request(t));
    c.Run(cut3, /*ticks=*/2);
  }
  ASSERT_GE(c.executed(0), 30u);
  // Replica 3 restarts empty, asking for 10 blocks at a time; it gets one
  // fetch response (blocks 1..10 and the responder's proof far ahead).
  c.Crash(3);
  c.SetFetchBlocksMax(10);
  c.Crash(3);
  ASSERT_TRUE(c.Restart(3).ok());
  int responses = 0;
  c.Run(
      [&](uint32_t from, uint32_t to, const v1::Envelope& e) {
        if (to != 3 && from != 3) return true;
        if (e.type() == v1::MESSAGE_TYPE_FETCH_RESPONSE)
          return ++responses == 1;
        return e.type() == v1::MESSAGE_TYPE_FETCH_REQUEST;
      },
      /*ticks=*/60);
  ASSERT_EQ(responses >= 1, true);
  ASSERT_GT(c.executed(3), Cluster::Params().watermark_window);
  ASSERT_LT(c.executed(3), c.executed(0));
  // Killed there: it restarts from what it made durable.
  c.Crash(3);
  absl::Status s = c.Restart(3);
  ASSERT_TRUE(s.ok()) << s.message();
  // And catches up the rest.
  c.Run(Cluster::All, /*ticks=*/200);
  EXPECT_GE(c.executed(3), 30u);
}

}  // namespace
}  // namespace pbft
