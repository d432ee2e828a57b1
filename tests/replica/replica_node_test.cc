// ReplicaNode (replica/node/replica_node.h) with fake interfaces: four
// nodes over an in-test network. Checks the order in which a node carries
// out the core's Readys (docs/architecture.md): nothing of a Ready leaves
// before its persist part is durable, no reply before its request is
// durably executed, fetches answered from the executed chain and the
// protocol store, and a failed write or block stops the node.
#include "replica/node/replica_node.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "replica/node/fetch_responder.h"
#include "tests/sim/sim_crypto.h"

namespace pbft::node {
namespace {

using pbft::v1::Envelope;
using pbft::v1::MessageType;

constexpr uint32_t kN = 4;

std::string Key(const Envelope& e) {
  return crypto::Sha256(e.payload()).ToHex();
}

// Everything one node did, in order.
struct Log {
  std::vector<std::string> events;
  void Add(std::string e) { events.push_back(std::move(e)); }
  // Index of the first event equal to `e`, or -1.
  int Find(const std::string& e) const {
    for (size_t i = 0; i < events.size(); ++i) {
      if (events[i] == e) return static_cast<int>(i);
    }
    return -1;
  }
};

class FakeStore final : public ProtocolStorage {
 public:
  explicit FakeStore(Log* log) : log_(log) {}
  absl::Status Append(const core::Persist& p) override {
    if (!fail_.ok()) return fail_;
    if (p.view) state_.view = *p.view;
    if (p.stable_checkpoint) state_.stable_checkpoint = p.stable_checkpoint;
    for (const Envelope& e : p.entries) {
      state_.entries.push_back(e);
      log_->Add("persist " + Key(e));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<core::RestoreState> Load() const override { return state_; }
  absl::StatusOr<std::optional<Envelope>> FindBody(
      uint64_t seq, const std::string& digest) const override {
    for (const Envelope& e : state_.entries) {
      pbft::v1::PrePrepare pp;
      if (e.type() == pbft::v1::MESSAGE_TYPE_PRE_PREPARE &&
          e.batch_size() > 0 && pp.ParseFromString(e.payload()) &&
          pp.seq() == seq && pp.batch_digest() == digest) {
        return e;
      }
    }
    return std::nullopt;
  }
  void Fail(absl::Status s) { fail_ = std::move(s); }

 private:
  Log* log_;
  core::RestoreState state_;
  absl::Status fail_;
};

// A hash chain over executed batches with a last-reply table.
class FakeMachine final : public StateMachine {
 public:
  explicit FakeMachine(Log* log) : log_(log) {}
  uint64_t last_executed() const override { return blocks_.size(); }
  absl::StatusOr<pbft::v1::CertifiedBatch> GetCertifiedBatch(
      uint64_t seq) const override {
    if (seq < 1 || seq > blocks_.size()) return absl::NotFoundError("seq");
    return blocks_[seq - 1];
  }
  absl::StatusOr<Executed> Execute(const core::CommittedBatch& b) override {
    if (!fail_.ok()) return fail_;
    Executed out;
    for (const Envelope& re : b.pre_prepare.batch()) {
      pbft::v1::Request r;
      EXPECT_TRUE(r.ParseFromString(re.payload()));
      const std::string result = absl::StrCat("done-", r.request_number());
      clients_[r.client_id()] = {r.request_number(), result};
      out.replies.push_back(
          {ClientId(r.client_id()), RequestNumber(r.request_number()), result});
      log_->Add(
          absl::StrCat("execute ", r.client_id(), "/", r.request_number()));
    }
    pbft::v1::CertifiedBatch cb;
    *cb.mutable_pre_prepare() = b.pre_prepare;
    *cb.mutable_certificate() = b.certificate;
    blocks_.push_back(std::move(cb));
    state_ = crypto::Sha256(state_.ToBytes() + b.batch_digest.ToBytes());
    out.state_digest = state_;
    return out;
  }
  absl::StatusOr<uint64_t> last_timestamp_ms() const override { return 0; }
  absl::StatusOr<std::vector<ClientEntry>> ClientTable() const override {
    std::vector<ClientEntry> out;
    for (const auto& [c, rec] : clients_) {
      out.push_back({ClientId(c), RequestNumber(rec.first), rec.second});
    }
    return out;
  }
  void Fail(absl::Status s) { fail_ = std::move(s); }

 private:
  Log* log_;
  std::vector<pbft::v1::CertifiedBatch> blocks_;
  std::map<uint64_t, std::pair<uint64_t, std::string>> clients_;
  Digest state_;
  absl::Status fail_;
};

struct Packet {
  uint32_t to;
  Envelope e;
};

// Signs as NullSigner does and counts the REPLYs it signed.
class CountingSigner : public pbft::sim::NullSigner {
 public:
  using NullSigner::NullSigner;
  Envelope Sign(MessageType type, std::string payload) const override {
    if (type == pbft::v1::MESSAGE_TYPE_REPLY) ++replies_signed;
    return NullSigner::Sign(type, std::move(payload));
  }
  mutable int replies_signed = 0;
};

// One replica: its fakes, its node, and what it sent and replied.
struct Replica : Transport, ReplySink {
  Replica(uint32_t id, std::deque<Packet>* net)
      : id(id),
        net(net),
        signer(id),
        store(&log),
        machine(&log),
        responder({id, kN, 8 << 20, kFetchBlocksMax}, &machine, &store),
        fetch(&responder, [this](uint32_t peer, const pbft::v1::FetchRequest&,
                                 pbft::v1::FetchResponse r) {
          Send(ReplicaId(peer),
               signer.Sign(pbft::v1::MESSAGE_TYPE_FETCH_RESPONSE,
                           r.SerializeAsString()));
        }) {}

  void Open() {
    core::Options o;
    o.id = ReplicaId(id);
    o.n = kN;
    o.f = 1;
    o.params.checkpoint_interval = 2;
    o.params.watermark_window = 8;
    o.params.batch_delay_ticks = 0;
    ReplicaNodeDeps d;
    d.signer = &signer;
    d.verifier = &verifier;
    d.store = &store;
    d.state = &machine;
    d.transport = this;
    d.replies = this;
    d.fetch = &fetch;
    d.clock = &clock;
    d.executor = executor;
    absl::StatusOr<std::unique_ptr<ReplicaNode>> n = ReplicaNode::Open(o, d);
    ASSERT_TRUE(n.ok()) << n.status();
    node = *std::move(n);
  }
  void Send(ReplicaId to, const Envelope& e) override {
    log.Add("send " + Key(e));
    sent.push_back(e);
    net->push_back({to.value(), e});
  }
  void Broadcast(const Envelope& e) override {
    for (uint32_t i = 0; i < kN; ++i) {
      if (i != id) Send(ReplicaId(i), e);
    }
  }
  bool Wants(pbft::ClientId, pbft::RequestNumber) override {
    return wants_replies;
  }
  void Deliver(pbft::ClientId client, pbft::RequestNumber number,
               const Envelope& e) override {
    EXPECT_EQ(e.type(), pbft::v1::MESSAGE_TYPE_REPLY);
    pbft::v1::Reply reply;
    ASSERT_TRUE(reply.ParseFromString(e.payload()));
    EXPECT_EQ(reply.client_id(), client.value());
    EXPECT_EQ(reply.request_number(), number.value());
    log.Add(
        absl::StrCat("reply ", client.value(), "/", reply.request_number()));
    replies.push_back(reply);
  }

  uint32_t id;
  std::deque<Packet>* net;
  CountingSigner signer;
  pbft::sim::NullVerifier verifier;
  ManualClock clock{1'000'000};
  Log log;
  FakeStore store;
  FakeMachine machine;
  FetchResponder responder;
  InlineFetchService fetch;
  std::unique_ptr<ReplicaNode> node;
  std::vector<Envelope> sent;
  std::vector<pbft::v1::Reply> replies;
  bool wants_replies = true;          // Whether a client call waits here.
  BatchExecutor* executor = nullptr;  // Set before Open().
};

// Holds the batches a node submits until the test runs them; answers
// Inline with `inline_seqs` (and logs each time it is asked).
class HeldExecutor final : public BatchExecutor {
 public:
  explicit HeldExecutor(Log* log) : log_(log) {}
  bool Inline(const core::CommittedBatch& b) override {
    log_->Add(absl::StrCat("asked ", b.seq.value()));
    return inline_seqs.count(b.seq.value()) > 0;
  }
  void Submit(core::CommittedBatch b) override {
    log_->Add(absl::StrCat("submit ", b.seq.value()));
    held.push_back(std::move(b));
  }
  std::deque<core::CommittedBatch> held;
  std::set<uint64_t> inline_seqs;

 private:
  Log* log_;
};

class ReplicaNodeTest : public ::testing::Test {
 protected:
  ReplicaNodeTest() {
    for (uint32_t i = 0; i < kN; ++i) {
      replicas_.push_back(std::make_unique<Replica>(i, &net_));
      replicas_.back()->Open();
    }
  }

  Envelope Request(uint64_t client, uint64_t number) {
    pbft::v1::Request r;
    r.set_client_id(client);
    r.set_request_number(number);
    r.set_operation("op");
    return pbft::sim::NullSigner(client).Sign(pbft::v1::MESSAGE_TYPE_REQUEST,
                                              r.SerializeAsString());
  }
  // Restarts the replica's node over its store and machine, with `exec`.
  void ReopenWith(Replica& r, BatchExecutor* exec) {
    r.executor = exec;
    r.Open();
  }
  // Client `client`'s requests first..last, sent to the primary and run.
  void Order(uint64_t client, uint64_t first, uint64_t last) {
    for (uint64_t t = first; t <= last; ++t) {
      replicas_[0]->node->Receive(Request(client, t));
    }
    ASSERT_TRUE(replicas_[0]->node->Drain().ok());
    Run(60);
  }
  // Delivers, ticks and drains until the network is quiet or `rounds` pass.
  void Run(int rounds, const std::set<uint32_t>& down = {}) {
    for (int i = 0; i < rounds; ++i) {
      std::deque<Packet> now;
      now.swap(net_);
      for (Packet& p : now) {
        if (down.count(p.to)) continue;
        Replica& r = *replicas_[p.to];
        r.node->Receive(p.e);
        (void)r.node->Drain();
      }
      for (auto& r : replicas_) {
        if (down.count(r->id)) continue;
        r->clock.Advance(10);
        r->node->Tick();
        (void)r->node->Drain();
      }
    }
  }

  std::deque<Packet> net_;
  std::vector<std::unique_ptr<Replica>> replicas_;
};

bool IsVote(MessageType t) {
  return t == pbft::v1::MESSAGE_TYPE_PRE_PREPARE ||
         t == pbft::v1::MESSAGE_TYPE_PREPARE ||
         t == pbft::v1::MESSAGE_TYPE_COMMIT ||
         t == pbft::v1::MESSAGE_TYPE_CHECKPOINT;
}

TEST_F(ReplicaNodeTest, NothingIsSentBeforeItIsPersisted) {
  for (uint64_t t = 1; t <= 5; ++t) replicas_[0]->node->Receive(Request(1, t));
  ASSERT_TRUE(replicas_[0]->node->Drain().ok());
  Run(60);
  for (const auto& r : replicas_) {
    EXPECT_EQ(r->machine.last_executed(), 5u) << "replica " << r->id;
    size_t votes = 0;
    for (const Envelope& e : r->sent) {
      if (!IsVote(e.type()) || e.sender() != r->id) continue;
      ++votes;
      const int persisted = r->log.Find("persist " + Key(e));
      const int sent = r->log.Find("send " + Key(e));
      ASSERT_GE(persisted, 0) << "replica " << r->id << " sent an unpersisted "
                              << pbft::v1::MessageType_Name(e.type());
      EXPECT_LT(persisted, sent);
    }
    EXPECT_GT(votes, 0u);
  }
}

TEST_F(ReplicaNodeTest, NoReplyBeforeTheBlockIsExecuted) {
  replicas_[0]->node->Receive(Request(7, 1));
  replicas_[0]->node->Receive(Request(8, 1));
  ASSERT_TRUE(replicas_[0]->node->Drain().ok());
  Run(60);
  for (const auto& r : replicas_) {
    ASSERT_FALSE(r->replies.empty()) << "replica " << r->id;
    for (const pbft::v1::Reply& reply : r->replies) {
      const std::string id =
          absl::StrCat(reply.client_id(), "/", reply.request_number());
      const int executed = r->log.Find("execute " + id);
      ASSERT_GE(executed, 0) << "reply to " << id << " never executed";
      EXPECT_LT(executed, r->log.Find("reply " + id));
      EXPECT_EQ(reply.result(), absl::StrCat("done-", reply.request_number()));
    }
  }
}

// A client sends a request to f+1 replicas; the others execute it from the
// PRE-PREPARE and reply to nobody: they never sign that reply. A later
// call for the same request (the client widened it) gets the stored reply,
// signed then.
TEST_F(ReplicaNodeTest, AReplyNobodyWaitsForIsNeverSigned) {
  replicas_[2]->wants_replies = false;
  replicas_[3]->wants_replies = false;
  replicas_[0]->node->Receive(Request(7, 1));
  ASSERT_TRUE(replicas_[0]->node->Drain().ok());
  Run(60);
  for (const auto& r : replicas_) {
    EXPECT_EQ(r->machine.last_executed(), 1u) << "replica " << r->id;
    const int expected = r->wants_replies ? 1 : 0;
    EXPECT_EQ(r->signer.replies_signed, expected) << "replica " << r->id;
    EXPECT_EQ(r->replies.size(), static_cast<size_t>(expected));
  }
  Replica& late = *replicas_[2];
  late.wants_replies = true;
  late.node->Receive(Request(7, 1));
  ASSERT_TRUE(late.node->Drain().ok());
  ASSERT_EQ(late.replies.size(), 1u);
  EXPECT_EQ(late.signer.replies_signed, 1);
  EXPECT_EQ(late.replies[0].request_number(), 1u);
  EXPECT_EQ(late.replies[0].result(), "done-1");
}

TEST_F(ReplicaNodeTest, AFailedWriteStopsTheNodeBeforeItSendsAnything) {
  Replica& primary = *replicas_[0];
  primary.store.Fail(absl::UnavailableError("disk full"));
  primary.node->Receive(Request(1, 1));
  const absl::Status s = primary.node->Drain();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(primary.sent.empty());
  // Stopped for good: later inputs change nothing.
  primary.node->Tick();
  EXPECT_FALSE(primary.node->Drain().ok());
  EXPECT_TRUE(primary.sent.empty());
}

TEST_F(ReplicaNodeTest, AFailedBlockStopsTheNodeWithoutReplies) {
  Replica& backup = *replicas_[2];
  backup.machine.Fail(absl::DataLossError("ledger write failed"));
  replicas_[0]->node->Receive(Request(1, 1));
  ASSERT_TRUE(replicas_[0]->node->Drain().ok());
  Run(60);
  EXPECT_EQ(backup.node->failed().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(backup.replies.empty());
  EXPECT_EQ(backup.machine.last_executed(), 0u);
  // The other three executed and replied.
  EXPECT_EQ(replicas_[1]->replies.size(), 1u);
}

// With an executor the node submits each batch the core hands out, in
// order, and goes on; the replies wait for the results it gets back.
TEST_F(ReplicaNodeTest, WithAnExecutorRepliesWaitForItsResults) {
  Replica& backup = *replicas_[2];
  HeldExecutor exec(&backup.log);
  ReopenWith(backup, &exec);
  Order(7, 1, 3);
  EXPECT_EQ(replicas_[1]->machine.last_executed(), 3u);
  ASSERT_FALSE(exec.held.empty());
  EXPECT_EQ(backup.machine.last_executed(), 0u);
  EXPECT_TRUE(backup.replies.empty());
  uint64_t seq = 0;
  while (!exec.held.empty()) {
    const core::CommittedBatch b = exec.held.front();
    exec.held.pop_front();
    EXPECT_EQ(b.seq.value(), ++seq);
    backup.node->Executed(b.seq, backup.machine.Execute(b));
    ASSERT_TRUE(backup.node->Drain().ok());
  }
  EXPECT_EQ(backup.machine.last_executed(), 3u);
  ASSERT_EQ(backup.replies.size(), 3u);
  for (const pbft::v1::Reply& reply : backup.replies) {
    const std::string id = absl::StrCat("7/", reply.request_number());
    EXPECT_LT(backup.log.Find("execute " + id), backup.log.Find("reply " + id));
  }
}

TEST_F(ReplicaNodeTest, AResultOutOfOrderOrFailedStopsTheNode) {
  Replica& backup = *replicas_[2];
  HeldExecutor exec(&backup.log);
  ReopenWith(backup, &exec);
  Order(7, 1, 2);
  ASSERT_GE(exec.held.size(), 2u);
  const core::CommittedBatch second = exec.held[1];
  backup.node->Executed(second.seq, backup.machine.Execute(second));
  EXPECT_EQ(backup.node->failed().code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(backup.node->Drain().ok());
  EXPECT_TRUE(backup.replies.empty());

  Replica& other = *replicas_[3];
  HeldExecutor exec3(&other.log);
  ReopenWith(other, &exec3);
  const size_t replied = other.replies.size();  // Before the reopening.
  Order(7, 3, 4);
  ASSERT_FALSE(exec3.held.empty());
  other.node->Executed(exec3.held.front().seq,
                       absl::DataLossError("ledger write failed"));
  EXPECT_EQ(other.node->failed().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(other.replies.size(), replied);
}

// The executor may have a batch executed on the node's thread, but only
// while nothing submitted is outstanding: seq 1 runs inline; seq 2 goes to
// the executor; seq 3, though the executor would take it inline, waits
// behind seq 2 (the executor is not even asked); once seq 2's result is
// back, seq 4 runs inline again.
TEST_F(ReplicaNodeTest, AnExecutorMayRunABatchInlineOnlyWhenNoneIsOutstanding) {
  Replica& backup = *replicas_[2];
  HeldExecutor exec(&backup.log);
  exec.inline_seqs = {1, 3, 4};
  ReopenWith(backup, &exec);
  Order(7, 1, 1);
  EXPECT_EQ(backup.machine.last_executed(), 1u);
  EXPECT_TRUE(exec.held.empty());
  ASSERT_EQ(backup.replies.size(), 1u);
  Order(7, 2, 2);
  Order(7, 3, 3);
  EXPECT_EQ(backup.machine.last_executed(), 1u);
  ASSERT_EQ(exec.held.size(), 2u);
  EXPECT_EQ(exec.held[0].seq.value(), 2u);
  EXPECT_EQ(exec.held[1].seq.value(), 3u);
  EXPECT_EQ(backup.log.Find("asked 3"), -1);
  EXPECT_EQ(backup.replies.size(), 1u);
  for (; !exec.held.empty(); exec.held.pop_front()) {
    const core::CommittedBatch& b = exec.held.front();
    backup.node->Executed(b.seq, backup.machine.Execute(b));
    ASSERT_TRUE(backup.node->Drain().ok());
  }
  EXPECT_EQ(backup.replies.size(), 3u);
  Order(7, 4, 4);
  EXPECT_EQ(backup.machine.last_executed(), 4u);
  EXPECT_TRUE(exec.held.empty());
  EXPECT_EQ(backup.replies.size(), 4u);
  EXPECT_TRUE(backup.node->failed().ok());
}

TEST_F(ReplicaNodeTest, FetchesAreAnsweredFromTheStoreAndTheChain) {
  for (uint64_t t = 1; t <= 4; ++t) replicas_[0]->node->Receive(Request(1, t));
  ASSERT_TRUE(replicas_[0]->node->Drain().ok());
  Run(60);
  Replica& server = *replicas_[1];
  ASSERT_EQ(server.machine.last_executed(), 4u);
  pbft::v1::FetchRequest req;
  req.set_replica_id(3);
  req.set_from_seq(2);
  req.set_max_blocks(64);
  pbft::sim::NullSigner peer(3);
  server.sent.clear();
  EXPECT_EQ(server.node->Receive(peer.Sign(pbft::v1::MESSAGE_TYPE_FETCH_REQUEST,
                                           req.SerializeAsString())),
            ReplicaNode::Intake::kAccepted);
  ASSERT_EQ(server.sent.size(), 1u);
  pbft::v1::FetchResponse resp;
  ASSERT_TRUE(resp.ParseFromString(server.sent[0].payload()));
  ASSERT_EQ(resp.batches_size(), 3);  // Seqs 2..4.
  EXPECT_EQ(resp.batches(0).pre_prepare().payload(),
            server.machine.GetCertifiedBatch(2)->pre_prepare().payload());
  // The node keeps the service's proof at its stable checkpoint (K = 2).
  EXPECT_EQ(resp.stable_checkpoint().seq(),
            server.node->core().stable_checkpoint().seq());
  EXPECT_GE(resp.stable_checkpoint().seq(), 2u);

  // A body by (seq, digest), from the protocol store's PRE-PREPAREs.
  pbft::v1::PrePrepare pp;
  ASSERT_TRUE(pp.ParseFromString(resp.batches(0).pre_prepare().payload()));
  pbft::v1::FetchRequest body;
  body.set_replica_id(3);
  body.set_from_seq(pp.seq());
  body.set_batch_digest(pp.batch_digest());
  server.sent.clear();
  server.node->Receive(peer.Sign(pbft::v1::MESSAGE_TYPE_FETCH_REQUEST,
                                 body.SerializeAsString()));
  ASSERT_EQ(server.sent.size(), 1u);
  ASSERT_TRUE(resp.ParseFromString(server.sent[0].payload()));
  EXPECT_EQ(resp.batches_size(), 0);
  ASSERT_TRUE(resp.has_batch_pre_prepare());
  EXPECT_GT(resp.batch_pre_prepare().batch_size(), 0);
  pbft::v1::PrePrepare got;
  ASSERT_TRUE(got.ParseFromString(resp.batch_pre_prepare().payload()));
  EXPECT_EQ(got.batch_digest(), pp.batch_digest());

  // A request that claims another sender is refused, not answered.
  req.set_replica_id(2);
  server.sent.clear();
  EXPECT_EQ(server.node->Receive(peer.Sign(pbft::v1::MESSAGE_TYPE_FETCH_REQUEST,
                                           req.SerializeAsString())),
            ReplicaNode::Intake::kFetchMalformed);
  EXPECT_TRUE(server.sent.empty());
}

TEST_F(ReplicaNodeTest, ALaggingReplicaCatchesUpThroughTheFetchService) {
  // Replica 3 is down while four requests are ordered, then returns.
  for (uint64_t t = 1; t <= 4; ++t) replicas_[0]->node->Receive(Request(1, t));
  ASSERT_TRUE(replicas_[0]->node->Drain().ok());
  Run(60, {3});
  ASSERT_EQ(replicas_[3]->machine.last_executed(), 0u);
  ASSERT_EQ(replicas_[1]->machine.last_executed(), 4u);
  Run(600);
  EXPECT_EQ(replicas_[3]->machine.last_executed(), 4u);
  uint64_t served = 0;
  for (const auto& r : replicas_) served += r->fetch.served();
  EXPECT_GT(served, 0u);
}

}  // namespace
}  // namespace pbft::node
