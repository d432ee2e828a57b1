// State transfer, the serving side (Castro–Liskov §4.3, §5.3): what a
// replica answers to a peer's FETCH_REQUEST, built from its executed chain
// (BlockSource) and its protocol store (batch bodies).
//
// A request naming a batch digest asks for one batch body (a NEW-VIEW's O
// entry the requester lacks, §4.4): answered with a PRE-PREPARE of that seq
// and digest with its batch beside it, from the protocol store or the
// block, and no blocks; with an empty response if neither holds it.
// Otherwise the response holds the certified batches from the requested
// seq on, at most blocks_max, cut by bytes so that its payload never
// exceeds response_bytes_max (the peers' limit for the type). Every
// response carries the server's latest stable checkpoint proof.
//
// FetchResponder is immutable and thread-safe if its sources are.
// InlineFetchService answers on the caller's thread, unthrottled (the
// simulator's replicas); ledgerd's FetchServer (replica/fetch_server.h)
// answers on its own thread behind per-peer token buckets.
#ifndef PBFT_LEDGER_REPLICA_NODE_FETCH_RESPONDER_H_
#define PBFT_LEDGER_REPLICA_NODE_FETCH_RESPONDER_H_

#include <cstdint>
#include <functional>

#include "common/wire_limits.h"
#include "pbft/v1/pbft.pb.h"
#include "replica/node/node_interfaces.h"

namespace pbft::node {

struct FetchResponderOptions {
  uint32_t self = 0;
  uint32_t n = 0;
  size_t response_bytes_max = 0;
  uint32_t blocks_max = kFetchBlocksMax;  // Per response.
};

class FetchResponder {
 public:
  // `blocks` must outlive the responder; `bodies` may be null (then bodies
  // come from the blocks only).
  FetchResponder(FetchResponderOptions options, const BlockSource* blocks,
                 const ProtocolStorage* bodies);

  // Decodes a verified FETCH_REQUEST; false if it is malformed or does not
  // come from another replica of the cluster.
  bool Parse(const pbft::v1::Envelope& e, pbft::v1::FetchRequest* req) const;
  pbft::v1::FetchResponse Build(const pbft::v1::FetchRequest& req,
                                const pbft::v1::CheckpointProof& stable) const;

 private:
  void BuildBody(const pbft::v1::FetchRequest& req,
                 pbft::v1::FetchResponse* resp) const;

  const FetchResponderOptions options_;
  const BlockSource* const blocks_;
  const ProtocolStorage* const bodies_;
};

// A FetchService that answers each request at once, on the caller's
// thread, through `respond` (which signs and sends it).
class InlineFetchService final : public FetchService {
 public:
  using Respond =
      std::function<void(uint32_t peer, const pbft::v1::FetchRequest& request,
                         pbft::v1::FetchResponse response)>;
  InlineFetchService(const FetchResponder* responder, Respond respond);

  Admit Offer(const pbft::v1::Envelope& e) override;
  void SetStableCheckpoint(const pbft::v1::CheckpointProof& p) override {
    stable_ = p;
  }
  uint64_t served() const { return served_; }

 private:
  const FetchResponder* const responder_;
  Respond respond_;
  pbft::v1::CheckpointProof stable_;
  uint64_t served_ = 0;
};

}  // namespace pbft::node

#endif  // PBFT_LEDGER_REPLICA_NODE_FETCH_RESPONDER_H_
