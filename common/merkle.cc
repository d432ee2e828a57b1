#include "common/merkle.h"

#include <bit>

#include "common/check.h"
#include "common/crypto.h"

namespace pbft::merkle {
namespace {

// Largest power of two strictly below n (n >= 2).
uint64_t SplitPoint(uint64_t n) {
  CHECK_GE(n, 2u);
  return std::bit_floor(n - 1);
}

Digest RootOf(const Digest* leaves, uint64_t n) {
  if (n == 0) return crypto::Sha256("");
  if (n == 1) return leaves[0];
  const uint64_t k = SplitPoint(n);
  return NodeHash(RootOf(leaves, k), RootOf(leaves + k, n - k));
}

void PathOf(const Digest* leaves, uint64_t n, uint64_t m,
            std::vector<Digest>* out) {
  if (n <= 1) return;
  const uint64_t k = SplitPoint(n);
  if (m < k) {
    PathOf(leaves, k, m, out);
    out->push_back(RootOf(leaves + k, n - k));
  } else {
    PathOf(leaves + k, n - k, m - k, out);
    out->push_back(RootOf(leaves, k));
  }
}

}  // namespace

Digest LeafHash(absl::string_view data) {
  return crypto::Sha256Of({absl::string_view("\x00", 1), data});
}

Digest NodeHash(const Digest& left, const Digest& right) {
  return crypto::Sha256Of({"\x01", left.view(), right.view()});
}

Digest Root(const std::vector<Digest>& leaves) {
  return RootOf(leaves.data(), leaves.size());
}

std::vector<Digest> Proof(const std::vector<Digest>& leaves, uint64_t index) {
  CHECK_LT(index, leaves.size());
  std::vector<Digest> out;
  PathOf(leaves.data(), leaves.size(), index, &out);
  return out;
}

bool VerifyProof(const Digest& leaf, uint64_t index, uint64_t size,
                 const std::vector<Digest>& proof, const Digest& root) {
  if (index >= size) return false;
  uint64_t fn = index;
  uint64_t sn = size - 1;
  Digest r = leaf;
  for (const Digest& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) != 0 || fn == sn) {
      r = NodeHash(p, r);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && r == root;
}

}  // namespace pbft::merkle
