// Fuzzes state transfer on the receiving side: a replica that lags (a fresh
// core of the 4-replica fuzz cluster, tests/fuzz/fuzz_harness.h) handling
// FETCH_RESPONSEs — certified batches (PRE-PREPARE and commit certificate),
// a stable checkpoint proof, a batch body — after VerifyPool::Check, the
// way its shell hands them to pbft::core::Core::Step. Ticks in between make it
// ask (its fetch requests are what responses answer), and CHECKPOINTs
// from peers give it evidence of how far the cluster is.
//
// Structure-aware: the fuzzer writes the FetchResponse payload and its
// sender; the harness signs the response, and every envelope nested in it
// again with its claimed sender's key; with kind bit 0x40 it also makes
// each batch's digest and its COMMITs' digests those of its requests.
// Input: header byte = the core's replica id (mod 4); then records:
//   kind & 0x0f == 0: `sender` ticks (at most 64);
//   kind & 0x0f == 5: a CHECKPOINT with payload `body` from `sender`;
//   any other kind: a FETCH_RESPONSE with payload `body` from `sender`.
// Checked after every input (CoreHarness): the core's invariants; only
// batches whose PRE-PREPARE and commit certificate the ledger's verifier
// accepts are executed, in seq order, once each; what it sends (fetch
// requests, checkpoints) passes its peers' checks. Also: what it executed
// never goes back, never goes beyond what some response carried, and one
// response never takes it beyond its high watermark by more than two
// fetches' worth (fetch_blocks_max) past what it had executed.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "common/check.h"
#include "tests/fuzz/fuzz_harness.h"

namespace {

using pbft::fuzz::Record;

// The record as peer_fuzz reads it: a CHECKPOINT or FETCH_RESPONSE.
Record AsPeerRecord(const Record& r) {
  Record out = r;
  const uint8_t type = (r.kind & 0x0f) == pbft::v1::MESSAGE_TYPE_CHECKPOINT
                           ? pbft::v1::MESSAGE_TYPE_CHECKPOINT
                           : pbft::v1::MESSAGE_TYPE_FETCH_RESPONSE;
  out.kind = static_cast<uint8_t>(type | (r.kind & 0x40));
  return out;
}

// The highest seq a FetchResponse payload could make the core execute: its
// proof's seq and its batches', at most.
uint64_t ClaimedHead(const std::string& payload) {
  pbft::v1::FetchResponse resp;
  if (!resp.ParseFromString(payload)) return 0;
  uint64_t head = resp.stable_checkpoint().seq();
  for (const pbft::v1::CertifiedBatch& b : resp.batches()) {
    pbft::v1::PrePrepare pp;
    if (pp.ParseFromString(b.pre_prepare().payload())) {
      head = std::max<uint64_t>(head, pp.seq());
    }
  }
  return head;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static pbft::fuzz::TestCluster* const tc = new pbft::fuzz::TestCluster();
  uint8_t header;
  const std::vector<Record> records =
      pbft::fuzz::ParseRecords(data, size, pbft::fuzz::kRecordsMax, &header);
  pbft::fuzz::CoreHarness h(tc, header % pbft::fuzz::kReplicas);
  const pbft::core::Options options = pbft::fuzz::CoreOptions(0);
  uint64_t claimed = 0;  // The highest seq any response named so far.
  for (const Record& r : records) {
    const uint64_t executed = h.executed();
    const uint64_t high = h.core().high_watermark().value();
    if ((r.kind & 0x0f) == 0) {
      h.Tick(std::min<uint32_t>(r.sender, 64));
    } else {
      const Record peer = AsPeerRecord(r);
      if (h.Apply(peer) &&
          (peer.kind & 0x0f) == pbft::v1::MESSAGE_TYPE_FETCH_RESPONSE) {
        claimed = std::max(claimed, ClaimedHead(r.body));
      }
    }
    CHECK_GE(h.executed(), executed);
    // Nothing executes that no response carried, and beyond the window
    // only two fetches' worth past what was executed (docs/protocol.md).
    CHECK_LE(h.executed(), claimed);
    const uint64_t bound =
        std::max(high, executed + 2 * options.fetch_blocks_max);
    CHECK_LE(h.executed(), bound);
  }
  return 0;
}
