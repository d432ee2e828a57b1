// The ledger's incremental state hash: a lattice-based homomorphic set hash
// (LtHash16 of Lewi et al., "Securing Update Propagation with Homomorphic
// Hashing", 2019 — the construction Facebook and Solana use for the same
// purpose).
//
// The state is a set of (key, value) elements. Each element expands to a
// vector of 1024 16-bit lanes:
//   seed    = BLAKE2b-256("pbft-ledger/lthash/v1" || u32 len(key) || key ||
//                         value)
//   lanes   = ChaCha20-IETF keystream(key = seed, nonce = 0), 2048 bytes,
//             read as little-endian u16
// and the set hash is the lane-wise sum modulo 2^16 of its elements. Adding
// or removing an element is one expansion and one vector add/subtract, so a
// block costs O(what it changes), independent of the ledger's size, and the
// result does not depend on the order of updates.
//
// Why not a 256-bit sum (AdHash mod 2^256) or an XOR of SHA-256s: XOR falls
// to Gaussian elimination, and a 256-bit modular sum to Wagner's generalised
// birthday attack in about 2^(2*sqrt(256)) = 2^32 work; a 16384-bit LtHash16
// state is estimated at over 200 bits of collision security. A Merkle tree
// would cost O(log N) hashes per update and a persistent tree.
//
// The 32-byte state digest published in block headers and CHECKPOINTs is
//   SHA-256("pbft-ledger/state/v1" || the 2048 lane bytes).
//
// Value type; thread-compatible.
#ifndef PBFT_LEDGER_REPLICA_LEDGER_STATE_HASH_H_
#define PBFT_LEDGER_REPLICA_LEDGER_STATE_HASH_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/types.h"

namespace pbft::ledger {

class StateHash {
 public:
  static constexpr size_t kLanes = 1024;
  static constexpr size_t kBytes = kLanes * 2;

  using Lanes = std::array<uint16_t, kLanes>;

  StateHash() : lanes_{} {}

  void Add(absl::string_view key, absl::string_view value);
  void Remove(absl::string_view key, absl::string_view value);
  // With an element already expanded (the ledger caches the expansions of
  // hot accounts, so removing their old value costs no hashing).
  void AddLanes(const Lanes& element);
  void RemoveLanes(const Lanes& element);
  // Adds another sum of elements (a partial sum built on another thread).
  void Merge(const StateHash& other) { AddLanes(other.lanes_); }
  static void Expand(absl::string_view key, absl::string_view value,
                     Lanes* out);

  // The published 32-byte digest.
  Digest ToDigest() const;

  // The lanes as 2048 little-endian bytes (what storage keeps).
  std::string Serialize() const;
  static absl::StatusOr<StateHash> Parse(absl::string_view bytes);

  friend bool operator==(const StateHash&, const StateHash&) = default;

 private:
  Lanes lanes_;
};

}  // namespace pbft::ledger

#endif  // PBFT_LEDGER_REPLICA_LEDGER_STATE_HASH_H_
