// Round-robin choice of a peer, shared by the core's fetch paths (the next
// fetch peer, the peer asked after a bad response, the unheard peer asked
// while the view-change timer is held). Pure; internal to replica/core.
#ifndef PBFT_LEDGER_REPLICA_CORE_PEERS_H_
#define PBFT_LEDGER_REPLICA_CORE_PEERS_H_

#include <cstdint>
#include <optional>

namespace pbft::core {

// The first replica p in from+1, from+2, ..., from+n (mod n; `from` itself
// comes last) with p != self and eligible(p); nullopt if there is none.
template <typename Eligible>
std::optional<uint32_t> NextPeer(uint32_t from, uint32_t n, uint32_t self,
                                 Eligible eligible) {
  for (uint32_t i = 1; i <= n; ++i) {
    const uint32_t p = (from + i) % n;
    if (p != self && eligible(p)) return p;
  }
  return std::nullopt;
}

}  // namespace pbft::core

#endif  // PBFT_LEDGER_REPLICA_CORE_PEERS_H_
