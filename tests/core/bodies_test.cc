// Batch bodies of O entries (Castro & Liskov §4.4): a replica prepares an
// O entry only once it holds the batch its digest names, fetched by
// digest if need be; scenarios on the hand-wired cluster of
// tests/core/cluster.h.
#include "tests/core/cluster.h"

namespace pbft::core::test {
namespace {

// §4.4 with bodies fetched separately: replica 1 gets primary 0's
// PRE-PREPARE for seq 1 without its batch (it drops it: the digest does not
// match), the others prepare it; then primary 0 goes silent. Replica 1
// leads view 1 with O = the header of seq 1, which it cannot prepare, let
// alone execute, until it has fetched the body by (seq, digest) and checked
// it against the digest. Replica 2 serves bodies with a forged client
// signature: refused, and another peer is asked.
TEST(BatchBodies, NewPrimaryFetchesTheBodyOfOBeforeItExecutes_4_4) {
  Cluster c;
  c.ServeFetches();
  c.CorruptBodiesFrom(2);
  for (uint32_t r = 0; r < 4; ++r) c.Inject(99, r, c.Request(1));
  c.Run([&](uint32_t from, uint32_t to, const v1::Envelope& e) {
    if (e.type() == v1::MESSAGE_TYPE_COMMIT) return false;
    if (from == 0 && to == 1 && e.type() == v1::MESSAGE_TYPE_PRE_PREPARE &&
        e.batch_size() > 0) {
      v1::Envelope header = e;
      header.clear_batch();
      c.Inject(0, 1, header);
      return false;
    }
    return true;
  });
  ASSERT_EQ(c.core(1)
                .stats()
                .dropped[static_cast<size_t>(DropReason::kDigestMismatch)],
            1u);
  ASSERT_EQ(c.core(2).PreparedCertificates().size(), 1u);
  ASSERT_TRUE(c.core(1).PreparedCertificates().empty());
  // Primary 0 goes silent; view 1. Bodies are asked for every other tick.
  c.Run(NotFrom0, /*ticks=*/60);
  const auto nv = c.sent_by(1, v1::MESSAGE_TYPE_NEW_VIEW);
  ASSERT_FALSE(nv.empty());
  v1::NewView m;
  ASSERT_TRUE(m.ParseFromString(nv[0].payload()));
  ASSERT_EQ(m.pre_prepares_size(), 1);
  EXPECT_EQ(m.pre_prepares(0).batch_size(), 0);
  const Stats& st = c.core(1).stats();
  EXPECT_GE(st.body_fetches_sent, 2u);
  EXPECT_EQ(st.bodies_fetched, 1u);
  EXPECT_GE(st.dropped[static_cast<size_t>(DropReason::kDigestMismatch)], 2u)
      << "the forged body from replica 2 is refused";
  for (uint32_t b = 1; b < 4; ++b) {
    EXPECT_EQ(c.core(b).view(), View(1)) << b;
    EXPECT_EQ(c.executed(b), 1u) << b;
  }
  EXPECT_EQ(c.core(2).stats().body_fetches_sent, 0u);
}

// A restart between installing an O entry without its body and fetching
// it: the header is durable, and the restarted replica fetches the body
// and executes.
TEST(BatchBodies, RestartedReplicaFetchesOrKeepsTheBodyOfO_4_4) {
  Cluster c;
  c.ServeFetches();
  for (uint32_t r = 0; r < 4; ++r) c.Inject(99, r, c.Request(1));
  c.Run([&](uint32_t from, uint32_t to, const v1::Envelope& e) {
    if (e.type() == v1::MESSAGE_TYPE_COMMIT) return false;
    if (from == 0 && to == 3 && e.type() == v1::MESSAGE_TYPE_PRE_PREPARE &&
        e.batch_size() > 0) {
      v1::Envelope header = e;
      header.clear_batch();
      c.Inject(0, 3, header);
      return false;
    }
    return true;
  });
  // View 1 without fetches: replica 3 holds O's header only (nothing can
  // commit: replica 0 is silent and 3 cannot prepare).
  c.Run(
      [](uint32_t from, uint32_t to, const v1::Envelope& e) {
        return from != 0 && to != 0 &&
               e.type() != v1::MESSAGE_TYPE_FETCH_REQUEST;
      },
      /*ticks=*/12);
  ASSERT_EQ(c.core(3).view(), View(1));
  ASSERT_TRUE(c.core(3).view_active());
  ASSERT_GE(c.core(3).stats().body_fetches_sent, 1u);
  ASSERT_EQ(c.core(3).stats().bodies_fetched, 0u);
  c.Crash(3);
  ASSERT_TRUE(c.Restart(3).ok());
  c.Run(NotFrom0, /*ticks=*/40);
  EXPECT_EQ(c.core(3).stats().bodies_fetched, 1u);
  for (uint32_t b = 1; b < 4; ++b) EXPECT_EQ(c.executed(b), 1u) << b;
}

}  // namespace
}  // namespace pbft::core::test
