// View change and new view (Castro & Liskov §4.4), rejoining the current
// view, the bounds of VIEW-CHANGE and NEW-VIEW: scenarios on the
// hand-wired cluster of tests/core/cluster.h.
#include "tests/core/cluster.h"

namespace pbft::core::test {
namespace {

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
  EXPECT_NE(pp.batch_digest(), NullBatchDigest().ToBytes());
  // O carries the signed header only; every backup holds the body.
  EXPECT_EQ(m.pre_prepares(0).batch_size(), 0);
  EXPECT_EQ(c.core(2).stats().body_fetches_sent, 0u);
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
    pp.set_batch_digest(NullBatchDigest().ToBytes());
    *m->mutable_pre_prepares(0) =
        c.signer(1).Sign(v1::MESSAGE_TYPE_PRE_PREPARE, pp.SerializeAsString());
  });
}

// O kept the prepared batch but gave it another timestamp: the timestamp
// is part of the entry O recomputed from V must match (the batch digest
// does not cover it).
TEST(ViewChange, BackupRefusesNewViewWhoseOTimestampDiffers_4_4) {
  ExpectAlteredNewViewRefused([](const Cluster& c, v1::NewView* m) {
    v1::PrePrepare pp;
    ASSERT_TRUE(pp.ParseFromString(m->pre_prepares(0).payload()));
    ASSERT_NE(pp.batch_digest(), NullBatchDigest().ToBytes());
    pp.set_timestamp_ms(pp.timestamp_ms() + 1);
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
    p.set_batch_digest(NullBatchDigest().ToBytes());
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
  EXPECT_EQ(o.back().batch_digest(), BatchDigestOf(c.Request(1)));
  EXPECT_EQ(o.front().batch_digest(), NullBatchDigest().ToBytes());
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
  const std::string null = NullBatchDigest().ToBytes();
  const std::vector<uint64_t> request_at = {0, 1, 2, 0, 3};  // 0: null.
  for (size_t i = 0; i < o.size(); ++i) {
    EXPECT_EQ(o[i].seq(), i + 1);
    if (request_at[i] == 0) {
      EXPECT_EQ(o[i].batch_digest(), null) << "seq " << i + 1;
      continue;
    }
    EXPECT_EQ(o[i].batch_digest(), BatchDigestOf(c.Request(request_at[i])))
        << "seq " << i + 1;
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

// VIEW-CHANGE and NEW-VIEW carry signed PRE-PREPARE headers, not batches
// (§4.4; docs/protocol.md "Message limits"): with a full window of batches
// at batch_bytes_max prepared and none committed, every VIEW-CHANGE and the
// NEW-VIEW fit their limits, which stay O(n x L) small headers whatever the
// batch size, and the new view executes every batch.
TEST(ViewChangeSize, FullWindowOfLargestBatchesFitsThePeerLimits_4_4) {
  ProtocolParams p = Cluster::Params();
  p.batch_bytes_max = 64 << 10;
  p.message_bytes_max = 256 << 10;  // Above one batch, below a window of them.
  Cluster c(p);
  c.CheckWire();
  const uint64_t L = p.watermark_window;
  for (uint64_t t = 1; t <= L; ++t) {
    v1::Request r;
    r.set_client_id(1);
    r.set_request_number(t);
    r.set_operation(std::string(p.batch_bytes_max - 200, 'x'));
    const v1::Envelope e =
        c.client_signer().Sign(v1::MESSAGE_TYPE_REQUEST, r.SerializeAsString());
    ASSERT_LE(RequestBytes(e), p.batch_bytes_max);
    for (uint32_t b = 0; b < 4; ++b) c.Inject(99, b, e);
  }
  c.Run([](uint32_t, uint32_t, const v1::Envelope& e) {
    return e.type() != v1::MESSAGE_TYPE_COMMIT;
  });
  ASSERT_EQ(c.core(1).PreparedCertificates().size(), L);
  ASSERT_EQ(c.executed(1), 0u);
  // The primary goes silent; the backups change view.
  c.Run(NotFrom0, /*ticks=*/60);
  const WireLimits limits = WireLimits::For(4, p);
  EXPECT_LT(limits.view_change_max, size_t{p.batch_bytes_max});
  EXPECT_LE(limits.new_view_max, size_t{p.message_bytes_max});
  for (uint32_t b = 1; b < 4; ++b) {
    for (const v1::Envelope& e : c.sent_by(b, v1::MESSAGE_TYPE_VIEW_CHANGE)) {
      EXPECT_EQ(CheckWireMessage(e, limits), WireError::kOk)
          << "VIEW-CHANGE of " << e.payload().size() << " bytes, limit "
          << limits.view_change_max;
    }
  }
  const auto nv = c.sent_by(1, v1::MESSAGE_TYPE_NEW_VIEW);
  ASSERT_FALSE(nv.empty());
  RecordProperty("view_change_bytes",
                 c.sent_by(1, v1::MESSAGE_TYPE_VIEW_CHANGE)[0].ByteSizeLong());
  RecordProperty("new_view_bytes", nv[0].ByteSizeLong());
  EXPECT_EQ(CheckWireMessage(nv[0], limits), WireError::kOk)
      << "NEW-VIEW of " << nv[0].payload().size() << " bytes, limit "
      << limits.new_view_max;
  EXPECT_EQ(c.refused_by_wire(), 0u);
  for (uint32_t b = 1; b < 4; ++b) {
    EXPECT_EQ(c.core(b).view(), View(1)) << b;
    EXPECT_TRUE(c.core(b).view_active()) << b;
    EXPECT_EQ(c.executed(b), L) << b;
  }
}

}  // namespace
}  // namespace pbft::core::test
