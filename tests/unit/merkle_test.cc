// RFC 9162 Merkle trees: roots, audit paths, and their verification.
#include "common/merkle.h"

#include "common/crypto.h"
#include "common/envelope.h"
#include "gtest/gtest.h"

namespace pbft::merkle {
namespace {

std::vector<Digest> Leaves(int n) {
  std::vector<Digest> out;
  for (int i = 0; i < n; ++i) out.push_back(LeafHash(std::to_string(i)));
  return out;
}

TEST(MerkleTest, SmallTreesHaveTheRfcShape) {
  EXPECT_EQ(Root({}), crypto::Sha256(""));
  std::vector<Digest> l = Leaves(3);
  EXPECT_EQ(Root({l[0]}), l[0]);
  // n = 3 splits at 2: H(H(l0, l1), l2).
  EXPECT_EQ(Root(l), NodeHash(NodeHash(l[0], l[1]), l[2]));
  EXPECT_NE(LeafHash("x"), crypto::Sha256("x"));  // Domain-separated.
}

TEST(MerkleTest, EveryProofOfEveryTreeSizeVerifies) {
  for (int n = 1; n <= 33; ++n) {
    std::vector<Digest> l = Leaves(n);
    const Digest root = Root(l);
    for (int i = 0; i < n; ++i) {
      std::vector<Digest> p = Proof(l, static_cast<uint64_t>(i));
      EXPECT_TRUE(VerifyProof(l[i], i, n, p, root)) << n << " " << i;
      // Wrong leaf, index, size or a flipped proof byte fails.
      EXPECT_FALSE(VerifyProof(LeafHash("other"), i, n, p, root));
      if (n > 1) {
        EXPECT_FALSE(VerifyProof(l[i], (i + 1) % n, n, p, root));
        std::vector<Digest> bad = p;
        auto bytes = bad[0].bytes();
        bytes[3] ^= 1;
        bad[0] = Digest(bytes);
        EXPECT_FALSE(VerifyProof(l[i], i, n, bad, root));
      }
      // (The size is not authenticated by the path alone — as in RFC 9162,
      // where the signed tree head carries it; BatchDigestFromRoot binds it.)
      EXPECT_FALSE(VerifyProof(l[i], n, n, p, root));
    }
  }
}

TEST(MerkleTest, BatchDigestCommitsToCountAndRoot) {
  google::protobuf::RepeatedPtrField<pbft::v1::Envelope> reqs;
  pbft::v1::Envelope* e = reqs.Add();
  e->set_sender(4);
  e->set_payload("p");
  const Digest root = RequestsRoot(reqs);
  EXPECT_EQ(root, LeafHash(std::string("\0\0\0\0\0\0\0\x04p", 9)));
  EXPECT_EQ(BatchDigest(reqs), BatchDigestFromRoot(1, root));
  EXPECT_NE(BatchDigestFromRoot(2, root), BatchDigestFromRoot(1, root));
  EXPECT_EQ(BatchDigestFromRoot(0, root), NullBatchDigest());
}

}  // namespace
}  // namespace pbft::merkle
