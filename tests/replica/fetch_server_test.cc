// The fetch server (replica/fetch_server.h): responses cut by bytes, served
// off the caller's thread, one pending request per peer, and a per-peer
// token bucket that throttles a flood.
#include "replica/fetch_server.h"

#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "common/wire_limits.h"
#include "replica/node/ledger_adapters.h"
#include "tests/ledger/ledger_test_util.h"

namespace pbft::replica {
namespace {

using test::MemLedger;

class FetchServerTest : public ::testing::Test {
 protected:
  FetchServerTest() {
    for (int i = 0; i < 20; ++i) {
      m_.Apply({m_.factory().Request(
          1, test::Ops(
                 {test::TransferOp(test::Id(100 + i), test::Id(1), test::Id(2),
                                   1, 1, std::string(1000, 'm'))}))});
    }
  }

  std::unique_ptr<FetchServer> Server(FetchServerOptions o) {
    o.self = 0;
    o.n = 4;
    if (blocks_ == nullptr)
      blocks_ = std::make_unique<node::LedgerBlockSource>(&m_.ledger());
    return std::make_unique<FetchServer>(
        o, blocks_.get(), nullptr, &m_.factory().replica(0),
        [this](uint32_t peer, pbft::v1::Envelope e) {
          absl::MutexLock l(&mu_);
          sent_.emplace_back(peer, std::move(e));
        });
  }
  pbft::v1::Envelope Fetch(uint32_t from, uint64_t from_seq) {
    pbft::v1::FetchRequest r;
    r.set_replica_id(from);
    r.set_from_seq(from_seq);
    r.set_max_blocks(64);
    return m_.factory().replica(from).SignMessage(
        pbft::v1::MESSAGE_TYPE_FETCH_REQUEST, r);
  }
  bool SentTo(uint32_t peer) {
    absl::MutexLock l(&mu_);
    for (const auto& [to, e] : sent_) {
      if (to == peer) return true;
    }
    return false;
  }

  MemLedger m_;
  std::unique_ptr<node::LedgerBlockSource> blocks_;
  absl::Mutex mu_;
  std::vector<std::pair<uint32_t, pbft::v1::Envelope>> sent_;
};

TEST_F(FetchServerTest, ResponsesAreCutByBytes) {
  const size_t one = m_.ledger().GetCertifiedBatch(1)->ByteSizeLong();
  FetchServerOptions o;
  o.response_bytes_max = 3 * one + 100;
  std::unique_ptr<FetchServer> s = Server(o);
  pbft::v1::FetchRequest req;
  req.set_from_seq(1);
  req.set_max_blocks(64);
  pbft::v1::FetchResponse r = s->Build(req);
  EXPECT_EQ(r.batches_size(), 3);
  EXPECT_LE(r.ByteSizeLong(), o.response_bytes_max);
  // The whole chain when it fits; never past the last block.
  o.response_bytes_max = 8 << 20;
  s = Server(o);
  EXPECT_EQ(s->Build(req).batches_size(), 20);
  req.set_from_seq(15);
  EXPECT_EQ(s->Build(req).batches_size(), 6);
}

TEST_F(FetchServerTest, AFloodIsThrottledPerPeerAndAnswersStillFlow) {
  FetchServerOptions o;
  o.response_bytes_max = 8 << 20;
  o.rate_per_s = 5;
  o.burst = 5;
  std::unique_ptr<FetchServer> s = Server(o);
  int throttled = 0;
  for (int i = 0; i < 1000; ++i) {
    if (s->Offer(Fetch(3, 1)) == FetchServer::Admit::kThrottled) ++throttled;
  }
  // At most the burst plus what refilled meanwhile got through.
  EXPECT_GE(throttled, 990);
  EXPECT_EQ(s->throttled(3), static_cast<uint64_t>(throttled));
  // Another peer is unaffected.
  EXPECT_EQ(s->Offer(Fetch(2, 1)), FetchServer::Admit::kQueued);
  EXPECT_EQ(s->throttled(2), 0u);
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (!SentTo(2) && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(SentTo(2));
  EXPECT_TRUE(SentTo(3));
  absl::MutexLock l(&mu_);
  // No more answers than admitted requests (pending ones collapse).
  EXPECT_LE(sent_.size(), static_cast<size_t>(1000 - throttled + 1));
  for (const auto& [peer, e] : sent_) {
    EXPECT_EQ(e.type(), pbft::v1::MESSAGE_TYPE_FETCH_RESPONSE);
  }
}

TEST_F(FetchServerTest, RefusesForgedOrSelfRequests) {
  FetchServerOptions o;
  o.response_bytes_max = 1 << 20;
  std::unique_ptr<FetchServer> s = Server(o);
  pbft::v1::Envelope forged = Fetch(2, 1);
  forged.set_sender(3);  // replica_id inside says 2.
  EXPECT_EQ(s->Offer(forged), FetchServer::Admit::kMalformed);
  EXPECT_EQ(s->Offer(Fetch(0, 1)), FetchServer::Admit::kMalformed);
  pbft::v1::Envelope garbage = Fetch(2, 1);
  garbage.set_payload("\xff\xff");
  EXPECT_EQ(s->Offer(garbage), FetchServer::Admit::kMalformed);
}

// A body request (FetchRequest.batch_digest, §4.4): the PRE-PREPARE with
// its batch beside it, from the protocol store's source first, else the
// block at that seq if its digest matches; no blocks either way.
TEST_F(FetchServerTest, BodiesByDigestFromTheStoreOrTheBlock) {
  FetchServerOptions o;
  o.self = 0;
  o.n = 4;
  o.response_bytes_max = 8 << 20;
  const pbft::v1::Envelope block3 =
      m_.ledger().GetCertifiedBatch(3)->pre_prepare();
  pbft::v1::PrePrepare pp;
  ASSERT_TRUE(pp.ParseFromString(block3.payload()));
  const pbft::v1::Envelope stored =
      m_.ledger().GetCertifiedBatch(4)->pre_prepare();
  pbft::v1::PrePrepare stored_pp;
  ASSERT_TRUE(stored_pp.ParseFromString(stored.payload()));
  // The protocol store holds a body for seq 30 only.
  class BodyStore final : public node::ProtocolStorage {
   public:
    BodyStore(pbft::v1::Envelope stored, std::string digest)
        : stored_(std::move(stored)), digest_(std::move(digest)) {}
    absl::Status Append(const core::Persist&) override {
      return absl::UnimplementedError("read-only");
    }
    absl::StatusOr<core::RestoreState> Load() const override {
      return absl::UnimplementedError("read-only");
    }
    absl::StatusOr<std::optional<pbft::v1::Envelope>> FindBody(
        uint64_t seq, const std::string& digest) const override {
      if (seq == 30 && digest == digest_) return stored_;
      return std::nullopt;
    }

   private:
    pbft::v1::Envelope stored_;
    std::string digest_;
  } bodies(stored, stored_pp.batch_digest());
  node::LedgerBlockSource blocks(&m_.ledger());
  FetchServer s(o, &blocks, &bodies, &m_.factory().replica(0),
                [](uint32_t, pbft::v1::Envelope) {});
  pbft::v1::FetchRequest req;
  req.set_from_seq(3);
  req.set_max_blocks(64);
  req.set_batch_digest(pp.batch_digest());
  pbft::v1::FetchResponse r = s.Build(req);
  EXPECT_EQ(r.batches_size(), 0);
  ASSERT_TRUE(r.has_batch_pre_prepare());
  EXPECT_EQ(r.batch_pre_prepare().payload(), block3.payload());
  EXPECT_EQ(r.batch_pre_prepare().batch_size(), 1);
  req.set_from_seq(2);  // Another seq's block: not that digest.
  EXPECT_FALSE(s.Build(req).has_batch_pre_prepare());
  req.set_from_seq(30);  // Beyond the ledger: from the store.
  req.set_batch_digest(stored_pp.batch_digest());
  r = s.Build(req);
  ASSERT_TRUE(r.has_batch_pre_prepare());
  EXPECT_EQ(r.batch_pre_prepare().payload(), stored.payload());
}

}  // namespace
}  // namespace pbft::replica
