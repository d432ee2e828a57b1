// The LtHash16 state hash: order independence, removal, serialisation.
#include "replica/ledger/state_hash.h"

#include "gtest/gtest.h"

namespace ledger {
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

}  // namespace
}  // namespace ledger
