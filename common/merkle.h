// Merkle trees over SHA-256 in the shape of RFC 6962 / RFC 9162 (Certificate
// Transparency): leaves and interior nodes are domain-separated (0x00 / 0x01
// prefix), the tree over n leaves splits at the largest power of two below
// n, and the root of the empty tree is SHA-256(""). Inclusion proofs are the
// RFC's audit paths, checked with its verification algorithm.
//
// Used for the batch digest that commit certificates sign (common/envelope.h)
// and for block receipts (built by replica/ledger/receipt.cc, checked by
// VerifyReceipt in replica/ledger/block.h).
//
// Pure functions; thread-safe.
#ifndef PBFT_LEDGER_COMMON_MERKLE_H_
#define PBFT_LEDGER_COMMON_MERKLE_H_

#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/types.h"

namespace pbft::merkle {

// SHA-256(0x00 || data).
Digest LeafHash(absl::string_view data);
// SHA-256(0x01 || left || right).
Digest NodeHash(const Digest& left, const Digest& right);

// The root over `leaves` (already leaf-hashed). Empty: SHA-256("").
Digest Root(const std::vector<Digest>& leaves);

// The audit path of leaf `index` (CHECKs index < leaves.size()).
std::vector<Digest> Proof(const std::vector<Digest>& leaves, uint64_t index);

// True iff `proof` shows that `leaf` is leaf `index` of a tree of `size`
// leaves with root `root` (RFC 9162 §2.1.3.2).
bool VerifyProof(const Digest& leaf, uint64_t index, uint64_t size,
                 const std::vector<Digest>& proof, const Digest& root);

}  // namespace pbft::merkle

#endif  // PBFT_LEDGER_COMMON_MERKLE_H_
