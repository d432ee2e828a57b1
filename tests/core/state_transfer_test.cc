// Catching up from certified batches (Castro & Liskov §4.3 state
// transfer; docs/protocol.md "State transfer").
#include "tests/core/scenario.h"

namespace pbft::core::test {
namespace {

// --- Catching up from certified batches (§4.3 state transfer) ---------------

TEST(CatchUp, AdoptsCertifiedBatchAndRejectsForgedCertificate_4_3) {
  Scenario s(3);
  auto pp = s.PrePrepare(0, 0, 1, {s.Request(1, 1)});
  const Digest d = Scenario::DigestOf(pp);
  v1::FetchResponse resp;
  resp.set_replica_id(2);
  v1::CertifiedBatch* b = resp.add_batches();
  *b->mutable_pre_prepare() = pp;
  for (uint32_t r = 0; r < 3; ++r) {
    *b->mutable_certificate()->add_commits() = s.Commit(r, 0, 1, d);
  }
  v1::FetchResponse forged = resp;  // Same commit twice: 2 distinct.
  *forged.mutable_batches(0)->mutable_certificate()->mutable_commits(2) =
      forged.batches(0).certificate().commits(0);
  SimCrypto crypto(4, 3, false);
  auto signer2 = crypto.ReplicaSigner(2);
  s.Step(signer2->Sign(v1::MESSAGE_TYPE_FETCH_RESPONSE,
                       forged.SerializeAsString()));
  EXPECT_TRUE(s.ready().execute.empty());
  EXPECT_EQ(s.Dropped(DropReason::kBadCertificate), 1u);
  s.Step(
      signer2->Sign(v1::MESSAGE_TYPE_FETCH_RESPONSE, resp.SerializeAsString()));
  ASSERT_EQ(s.ready().execute.size(), 1u);
  EXPECT_EQ(s.ready().execute[0].batch_digest, d);
}

// Nothing tells an idle replica that it is behind: it asks a peer anyway
// (docs/protocol.md "Catching up in an idle cluster"), a different one each
// time, at most once per idle_probe_interval_ticks.
TEST(CatchUp, IdleReplicaProbesAPeerAtMostOncePerInterval_4_3) {
  Scenario s(3);
  const Options defaults;
  std::vector<uint64_t> probe_ticks;
  std::vector<uint64_t> peers;
  const uint64_t ticks = 3 * defaults.idle_probe_interval_ticks;
  for (uint64_t t = 2; t <= ticks; ++t) {
    s.Tick();
    for (const Outbound& o : s.Sent(v1::MESSAGE_TYPE_FETCH_REQUEST)) {
      v1::FetchRequest req;
      ASSERT_TRUE(req.ParseFromString(o.envelope.payload()));
      EXPECT_EQ(req.from_seq(), 1u);  // After the last executed (none).
      EXPECT_EQ(req.replica_id(), 3u);
      EXPECT_FALSE(o.broadcast);
      EXPECT_NE(o.to.value(), 3u);
      peers.push_back(o.to.value());
      probe_ticks.push_back(t);
    }
  }
  // The first within a fetch interval or two, then one per probe interval.
  ASSERT_EQ(probe_ticks.size(), 3u);
  EXPECT_LE(probe_ticks[0], 2u * defaults.fetch_interval_ticks);
  for (size_t i = 1; i < probe_ticks.size(); ++i) {
    EXPECT_GE(probe_ticks[i] - probe_ticks[i - 1],
              defaults.idle_probe_interval_ticks);
  }
  EXPECT_NE(peers[0], peers[1]);
  EXPECT_EQ(s.core().stats().fetch_probes, 3u);
  EXPECT_EQ(s.core().stats().fetches_sent, 3u);
}

}  // namespace
}  // namespace pbft::core::test
