// The LtHash16 state hash: order independence, removal, serialisation.
#include "replica/ledger/state_hash.h"

#include "gtest/gtest.h"

namespace pbft::ledger {
namespace {

TEST(StateHashTest, OrderIndependentAndRemovable) {
  StateHash a, b, empty;
  a.Add("k1", "v1");
  a.Add("k2", "v2");
  b.Add("k2", "v2");
  b.Add("k1", "v1");
  EXPECT_EQ(a.ToDigest(), b.ToDigest());
  a.Remove("k1", "v1");
  a.Remove("k2", "v2");
  EXPECT_EQ(a, empty);
  EXPECT_EQ(a.ToDigest(), empty.ToDigest());
}

TEST(StateHashTest, KeyValueBoundaryMatters) {
  StateHash a, b;
  a.Add("ab", "c");
  b.Add("a", "bc");
  EXPECT_NE(a.ToDigest(), b.ToDigest());
  StateHash twice;
  twice.Add("k", "v");
  twice.Add("k", "v");
  StateHash once;
  once.Add("k", "v");
  EXPECT_NE(twice.ToDigest(), once.ToDigest());  // A multiset, not XOR.
}

TEST(StateHashTest, SerializeRoundTrip) {
  StateHash a;
  a.Add("x", "y");
  absl::StatusOr<StateHash> b = StateHash::Parse(a.Serialize());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, a);
  EXPECT_FALSE(StateHash::Parse("short").ok());
}

// A fixed answer for the element expansion and the digest
// (docs/storage_format.md "State digest"): an optimisation of Expand that
// changed a single lane would change every replica's digest history.
TEST(StateHashTest, KnownAnswer) {
  StateHash::Lanes e;
  StateHash::Expand("key", "value", &e);
  EXPECT_EQ(e[0], 33853);
  EXPECT_EQ(e[1], 7387);
  EXPECT_EQ(e[1023], 36538);
  StateHash h;
  h.Add("a\x01", std::string(96, 'x'));
  h.Add("", "");
  EXPECT_EQ(h.ToDigest().ToHex(),
            "6995b2420192b717877f073a2e7e0770d962ee0f3f89fc27487b39874c107a7f");
}

// The vectorised lane sums against the definition: lane-wise, modulo 2^16,
// every lane (wrap-around included).
TEST(StateHashTest, LaneSumsMatchTheScalarDefinition) {
  StateHash::Lanes a, b;
  for (size_t i = 0; i < StateHash::kLanes; ++i) {
    a[i] = static_cast<uint16_t>(i * 40503u + 65000u);
    b[i] = static_cast<uint16_t>(65535u - i * 7u);
  }
  StateHash h;
  h.AddLanes(a);
  h.AddLanes(b);
  h.RemoveLanes(a);
  h.AddLanes(b);
  std::string want(StateHash::kBytes, '\0');
  for (size_t i = 0; i < StateHash::kLanes; ++i) {
    const uint16_t lane = static_cast<uint16_t>(2u * b[i]);
    want[2 * i] = static_cast<char>(lane & 0xff);
    want[2 * i + 1] = static_cast<char>(lane >> 8);
  }
  EXPECT_EQ(h.Serialize(), want);
  h.RemoveLanes(b);
  h.RemoveLanes(b);
  EXPECT_EQ(h, StateHash());
}

}  // namespace
}  // namespace pbft::ledger
