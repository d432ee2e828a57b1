// Table tests of the core's pure quorum and certificate checks
// (replica/core/certificates.h, replica/core/peers.h): Castro & Liskov §4.2
// (prepared, committed-local), §4.3 (stable checkpoint proofs, certified
// batches for state transfer) and §4.4 (prepared certificates, VIEW-CHANGE).
// Each table starts from a valid certificate of a 4-replica cluster (f = 1,
// quorum 3, K = 4, L = 8) and changes one thing per row.
#include "replica/core/certificates.h"

#include <functional>
#include <string>
#include <vector>

#include "common/envelope.h"
#include "gtest/gtest.h"
#include "replica/core/peers.h"
#include "tests/sim/sim_crypto.h"

namespace pbft::core {
namespace {

using sim::SimCrypto;

constexpr uint32_t kN = 4;
constexpr uint32_t kF = 1;
constexpr uint32_t kK = 4;
constexpr uint32_t kL = 8;

Digest D(char c) { return *Digest::FromBytes(std::string(32, c)); }

class Fixture {
 public:
  Fixture() : crypto_(kN, 2, /*real=*/false) {
    for (uint32_t i = 0; i < kN; ++i) {
      replica_.push_back(crypto_.ReplicaSigner(i));
    }
    client_ = crypto_.ClientSigner(1);
  }
  CertificateChecker Checker() const {
    return CertificateChecker(kN, kF, kK, kL, &crypto_.verifier());
  }
  template <typename M>
  v1::Envelope Sign(uint32_t from, v1::MessageType type, const M& m) const {
    return replica_[from]->Sign(type, m.SerializeAsString());
  }
  v1::Envelope Checkpoint(uint32_t from, uint64_t seq, const Digest& d) const {
    v1::Checkpoint m;
    m.set_seq(seq);
    m.set_state_digest(d.ToBytes());
    m.set_replica_id(from);
    return Sign(from, v1::MESSAGE_TYPE_CHECKPOINT, m);
  }
  template <typename M>
  v1::Envelope Vote(uint32_t from, v1::MessageType type, uint64_t view,
                    uint64_t seq, const Digest& d) const {
    M m;
    m.set_view(view);
    m.set_seq(seq);
    m.set_batch_digest(d.ToBytes());
    m.set_replica_id(from);
    return Sign(from, type, m);
  }
  v1::Envelope Request(uint64_t number) const {
    v1::Request r;
    r.set_client_id(1);
    r.set_request_number(number);
    r.set_operation("op");
    return client_->Sign(v1::MESSAGE_TYPE_REQUEST, r.SerializeAsString());
  }
  // A PRE-PREPARE of (view, seq) by `from` with one request beside it.
  v1::Envelope PrePrepare(uint32_t from, uint64_t view, uint64_t seq) const {
    google::protobuf::RepeatedPtrField<v1::Envelope> batch;
    *batch.Add() = Request(seq);
    v1::PrePrepare pp;
    pp.set_view(view);
    pp.set_seq(seq);
    pp.set_timestamp_ms(1000);
    pp.set_batch_digest(BatchDigest(batch).ToBytes());
    v1::Envelope e = Sign(from, v1::MESSAGE_TYPE_PRE_PREPARE, pp);
    e.mutable_batch()->Swap(&batch);
    return e;
  }
  static Digest DigestOf(const v1::Envelope& pre_prepare) {
    v1::PrePrepare pp;
    pp.ParseFromString(pre_prepare.payload());
    return *Digest::FromBytes(pp.batch_digest());
  }
  static v1::Envelope WithoutBatch(v1::Envelope e) {
    e.clear_batch();
    return e;
  }

 private:
  SimCrypto crypto_;
  std::vector<std::unique_ptr<Signer>> replica_;
  std::unique_ptr<Signer> client_;
};

// --- §4.2: matching votes ----------------------------------------------------

TEST(MatchingVotes, CountsVotesForTheDigestLeavingOutThePrimary_4_2) {
  struct Row {
    const char* name;
    std::vector<std::pair<uint32_t, char>> votes;  // (sender, digest)
    std::optional<uint32_t> except;
    size_t matching;
  };
  const std::vector<Row> rows = {
      {"none", {}, std::nullopt, 0},
      {"all match", {{0, 'a'}, {1, 'a'}, {2, 'a'}}, std::nullopt, 3},
      {"one for another digest",
       {{0, 'a'}, {1, 'b'}, {2, 'a'}},
       std::nullopt,
       2},
      {"primary left out", {{0, 'a'}, {1, 'a'}, {2, 'a'}}, 0, 2},
      {"primary's vote for another digest", {{0, 'b'}, {1, 'a'}}, 0, 1},
      {"only other digests", {{1, 'b'}, {2, 'c'}}, std::nullopt, 0},
  };
  for (const Row& row : rows) {
    VotesBySender votes;
    for (const auto& [sender, c] : row.votes) {
      votes[ReplicaId(sender)] = Vote{D(c), v1::Envelope()};
    }
    std::optional<ReplicaId> except;
    if (row.except) except = ReplicaId(*row.except);
    const std::vector<const Vote*> m = MatchingVotes(votes, D('a'), except);
    EXPECT_EQ(m.size(), row.matching) << row.name;
    for (const Vote* v : m) EXPECT_EQ(v->digest, D('a')) << row.name;
    if (row.except) {
      EXPECT_EQ(MatchingPrepares(votes, ReplicaId(*row.except), D('a')),
                row.matching)
          << row.name;
    }
  }
}

TEST(DistinctQuorum, NeedsDistinctKnownValidSenders_4_2) {
  struct Row {
    const char* name;
    std::vector<uint64_t> senders;
    std::vector<bool> valid;
    uint32_t need;
    bool ok;
  };
  const std::vector<Row> rows = {
      {"2f+1 distinct", {0, 1, 2}, {true, true, true}, 3, true},
      {"all four", {3, 1, 0, 2}, {true, true, true, true}, 3, true},
      {"only 2f", {0, 1}, {true, true}, 3, false},
      {"2f is enough when 2f is needed", {0, 2}, {true, true}, 2, true},
      {"a duplicate sender", {0, 1, 1}, {true, true, true}, 3, false},
      {"a duplicate beyond the quorum",
       {0, 1, 2, 0},
       {true, true, true, true},
       3,
       false},
      {"a sender beyond n", {0, 1, 4}, {true, true, true}, 3, false},
      {"one invalid", {0, 1, 2}, {true, false, true}, 3, false},
      {"one invalid beyond the quorum",
       {0, 1, 2, 3},
       {true, true, true, false},
       3,
       false},
  };
  for (const Row& row : rows) {
    google::protobuf::RepeatedPtrField<v1::Envelope> envelopes;
    for (size_t i = 0; i < row.senders.size(); ++i) {
      v1::Envelope* e = envelopes.Add();
      e->set_sender(row.senders[i]);
      e->set_payload(row.valid[i] ? "valid" : "invalid");
    }
    int checked = 0;
    const bool ok =
        DistinctQuorum(envelopes, kN, row.need, [&](const v1::Envelope& e) {
          ++checked;
          return e.payload() == "valid";
        });
    EXPECT_EQ(ok, row.ok) << row.name;
    EXPECT_LE(checked, static_cast<int>(row.senders.size())) << row.name;
  }
}

// --- §4.3: stable checkpoint proofs -----------------------------------------

TEST(CheckpointProof, TwoFPlusOneMatchingSignedCheckpoints_4_3) {
  Fixture fx;
  const CertificateChecker checker = fx.Checker();
  auto valid = [&] {
    v1::CheckpointProof p;
    p.set_seq(8);
    p.set_state_digest(D('s').ToBytes());
    for (uint32_t i : {0u, 1u, 2u}) {
      *p.add_checkpoints() = fx.Checkpoint(i, 8, D('s'));
    }
    return p;
  };
  struct Row {
    const char* name;
    std::function<void(v1::CheckpointProof*)> change;
    bool ok;
  };
  const std::vector<Row> rows = {
      {"valid", [](v1::CheckpointProof*) {}, true},
      {"four checkpoints",
       [&](v1::CheckpointProof* p) {
         *p->add_checkpoints() = fx.Checkpoint(3, 8, D('s'));
       },
       true},
      {"seq 0", [](v1::CheckpointProof* p) { p->set_seq(0); }, false},
      {"seq not a multiple of K",
       [&](v1::CheckpointProof* p) {
         p->set_seq(6);
         p->clear_checkpoints();
         for (uint32_t i : {0u, 1u, 2u}) {
           *p->add_checkpoints() = fx.Checkpoint(i, 6, D('s'));
         }
       },
       false},
      {"only 2f",
       [](v1::CheckpointProof* p) { p->mutable_checkpoints()->RemoveLast(); },
       false},
      {"a duplicate sender",
       [&](v1::CheckpointProof* p) {
         *p->mutable_checkpoints(2) = fx.Checkpoint(1, 8, D('s'));
       },
       false},
      {"one for another seq",
       [&](v1::CheckpointProof* p) {
         *p->mutable_checkpoints(1) = fx.Checkpoint(1, 12, D('s'));
       },
       false},
      {"one for another digest",
       [&](v1::CheckpointProof* p) {
         *p->mutable_checkpoints(1) = fx.Checkpoint(1, 8, D('t'));
       },
       false},
      {"a forged signature",
       [](v1::CheckpointProof* p) {
         p->mutable_checkpoints(0)->set_signature("forged");
       },
       false},
      {"replica id is not the signer",
       [&](v1::CheckpointProof* p) {
         v1::Checkpoint m;
         m.set_seq(8);
         m.set_state_digest(D('s').ToBytes());
         m.set_replica_id(3);
         *p->mutable_checkpoints(0) =
             fx.Sign(0, v1::MESSAGE_TYPE_CHECKPOINT, m);
       },
       false},
      {"a COMMIT in place of a CHECKPOINT",
       [&](v1::CheckpointProof* p) {
         *p->mutable_checkpoints(0) =
             fx.Vote<v1::Commit>(0, v1::MESSAGE_TYPE_COMMIT, 0, 8, D('s'));
       },
       false},
      {"an undecodable state digest",
       [](v1::CheckpointProof* p) { p->set_state_digest("short"); }, false},
  };
  for (const Row& row : rows) {
    v1::CheckpointProof p = valid();
    row.change(&p);
    Digest d;
    EXPECT_EQ(checker.CheckpointProof(p, &d), row.ok) << row.name;
    if (row.ok) {
      EXPECT_EQ(d, D('s')) << row.name;
    }
  }
}

// --- §4.3 state transfer: certified batches ---------------------------------

TEST(CertifiedBatch, PrimarysPrePrepareAndTwoFPlusOneCommits_4_3) {
  Fixture fx;
  const CertificateChecker checker = fx.Checker();
  // View 1: the primary is replica 1.
  const v1::Envelope pe = fx.PrePrepare(1, 1, 5);
  const Digest d = Fixture::DigestOf(pe);
  auto valid = [&] {
    v1::CertifiedBatch b;
    *b.mutable_pre_prepare() = pe;
    for (uint32_t i : {0u, 2u, 3u}) {
      *b.mutable_certificate()->add_commits() =
          fx.Vote<v1::Commit>(i, v1::MESSAGE_TYPE_COMMIT, 1, 5, d);
    }
    return b;
  };
  auto commit = [&](uint32_t from, uint64_t view, uint64_t seq,
                    const Digest& digest) {
    return fx.Vote<v1::Commit>(from, v1::MESSAGE_TYPE_COMMIT, view, seq,
                               digest);
  };
  struct Row {
    const char* name;
    std::function<void(v1::CertifiedBatch*)> change;
    bool ok;
  };
  const std::vector<Row> rows = {
      {"valid", [](v1::CertifiedBatch*) {}, true},
      {"pre-prepare not from the view's primary",
       [&](v1::CertifiedBatch* b) {
         *b->mutable_pre_prepare() = fx.PrePrepare(2, 1, 5);
       },
       false},
      {"batch does not match the digest",
       [&](v1::CertifiedBatch* b) {
         *b->mutable_pre_prepare()->mutable_batch(0) = fx.Request(99);
       },
       false},
      {"pre-prepare signature forged",
       [](v1::CertifiedBatch* b) {
         b->mutable_pre_prepare()->set_signature("forged");
       },
       false},
      {"only 2f commits",
       [](v1::CertifiedBatch* b) {
         b->mutable_certificate()->mutable_commits()->RemoveLast();
       },
       false},
      {"a commit of another view",
       [&](v1::CertifiedBatch* b) {
         *b->mutable_certificate()->mutable_commits(1) = commit(2, 2, 5, d);
       },
       false},
      {"a commit of another seq",
       [&](v1::CertifiedBatch* b) {
         *b->mutable_certificate()->mutable_commits(1) = commit(2, 1, 6, d);
       },
       false},
      {"a commit for another digest",
       [&](v1::CertifiedBatch* b) {
         *b->mutable_certificate()->mutable_commits(1) =
             commit(2, 1, 5, D('x'));
       },
       false},
      {"a duplicate committer",
       [&](v1::CertifiedBatch* b) {
         *b->mutable_certificate()->mutable_commits(2) = commit(0, 1, 5, d);
       },
       false},
      {"a forged commit",
       [](v1::CertifiedBatch* b) {
         b->mutable_certificate()->mutable_commits(0)->set_signature("forged");
       },
       false},
      {"the primary's own commit counts",
       [&](v1::CertifiedBatch* b) {
         *b->mutable_certificate()->mutable_commits(2) = commit(1, 1, 5, d);
       },
       true},
  };
  for (const Row& row : rows) {
    v1::CertifiedBatch b = valid();
    row.change(&b);
    v1::PrePrepare pp;
    Digest out;
    EXPECT_EQ(checker.CertifiedBatch(b, &pp, &out), row.ok) << row.name;
    if (row.ok) {
      EXPECT_EQ(out, d) << row.name;
      EXPECT_EQ(pp.seq(), 5u) << row.name;
    }
  }
}

// --- §4.4: prepared certificates and VIEW-CHANGE ----------------------------

// A prepared certificate of view 1 (primary 1) at `seq`: the header and
// PREPAREs from backups 0 and 2.
v1::PreparedCertificate PreparedCert(const Fixture& fx, uint64_t seq) {
  const v1::Envelope pe = fx.PrePrepare(1, 1, seq);
  const Digest d = Fixture::DigestOf(pe);
  v1::PreparedCertificate c;
  *c.mutable_pre_prepare() = Fixture::WithoutBatch(pe);
  for (uint32_t i : {0u, 2u}) {
    *c.add_prepares() =
        fx.Vote<v1::Prepare>(i, v1::MESSAGE_TYPE_PREPARE, 1, seq, d);
  }
  return c;
}

TEST(PreparedCertificate, HeaderOfThePrimaryAndTwoFBackupPrepares_4_4) {
  Fixture fx;
  const CertificateChecker checker = fx.Checker();
  const v1::PreparedCertificate base = PreparedCert(fx, 5);
  const Digest d = Fixture::DigestOf(base.pre_prepare());
  auto prepare = [&](uint32_t from, uint64_t seq, const Digest& digest) {
    return fx.Vote<v1::Prepare>(from, v1::MESSAGE_TYPE_PREPARE, 1, seq, digest);
  };
  struct Row {
    const char* name;
    std::function<void(v1::PreparedCertificate*)> change;
    uint64_t target;
    uint64_t low;
    bool ok;
  };
  const std::vector<Row> rows = {
      {"valid", [](v1::PreparedCertificate*) {}, 2, 0, true},
      {"valid, three prepares",
       [&](v1::PreparedCertificate* c) {
         *c->add_prepares() = prepare(3, 5, d);
       },
       2, 0, true},
      {"view not below the target", [](v1::PreparedCertificate*) {}, 1, 0,
       false},
      {"seq at the low watermark", [](v1::PreparedCertificate*) {}, 2, 5,
       false},
      {"seq beyond low + L",
       [&](v1::PreparedCertificate* c) { *c = PreparedCert(fx, 9); }, 2, 0,
       false},
      {"seq at exactly low + L",
       [&](v1::PreparedCertificate* c) { *c = PreparedCert(fx, 8); }, 2, 0,
       true},
      {"header carries the batch",
       [&](v1::PreparedCertificate* c) {
         *c->mutable_pre_prepare() = fx.PrePrepare(1, 1, 5);
       },
       2, 0, false},
      {"header not from the primary",
       [&](v1::PreparedCertificate* c) {
         *c->mutable_pre_prepare() =
             Fixture::WithoutBatch(fx.PrePrepare(2, 1, 5));
       },
       2, 0, false},
      {"the primary's PREPARE",
       [&](v1::PreparedCertificate* c) {
         *c->mutable_prepares(1) = prepare(1, 5, d);
       },
       2, 0, false},
      {"only one prepare",
       [](v1::PreparedCertificate* c) { c->mutable_prepares()->RemoveLast(); },
       2, 0, false},
      {"a prepare for another digest",
       [&](v1::PreparedCertificate* c) {
         *c->mutable_prepares(1) = prepare(2, 5, D('x'));
       },
       2, 0, false},
      {"a prepare for another seq",
       [&](v1::PreparedCertificate* c) {
         *c->mutable_prepares(1) = prepare(2, 6, d);
       },
       2, 0, false},
      {"a duplicate preparer",
       [&](v1::PreparedCertificate* c) {
         *c->mutable_prepares(1) = prepare(0, 5, d);
       },
       2, 0, false},
      {"a forged prepare",
       [](v1::PreparedCertificate* c) {
         c->mutable_prepares(0)->set_signature("forged");
       },
       2, 0, false},
  };
  for (const Row& row : rows) {
    v1::PreparedCertificate c = base;
    row.change(&c);
    EXPECT_EQ(checker.PreparedCertificate(c, View(row.target), Seq(row.low)),
              row.ok)
        << row.name;
  }
}

TEST(ViewChangeMessage, CheckpointProofAndAscendingCertificates_4_4) {
  Fixture fx;
  const CertificateChecker checker = fx.Checker();
  auto build = [&](uint32_t from, uint64_t target,
                   const v1::CheckpointProof& proof,
                   const std::vector<uint64_t>& seqs) {
    v1::ViewChange vc;
    vc.set_new_view(target);
    vc.set_replica_id(from);
    *vc.mutable_stable_checkpoint() = proof;
    for (uint64_t s : seqs) *vc.add_prepared() = PreparedCert(fx, s);
    return fx.Sign(from, v1::MESSAGE_TYPE_VIEW_CHANGE, vc);
  };
  v1::CheckpointProof none;
  v1::CheckpointProof at4;
  at4.set_seq(4);
  at4.set_state_digest(D('s').ToBytes());
  for (uint32_t i : {0u, 1u, 2u}) {
    *at4.add_checkpoints() = fx.Checkpoint(i, 4, D('s'));
  }
  v1::CheckpointProof claimed = none;  // s* = 0 with checkpoints in it.
  *claimed.add_checkpoints() = fx.Checkpoint(0, 4, D('s'));
  v1::CheckpointProof short_proof = at4;
  short_proof.mutable_checkpoints()->RemoveLast();
  struct Row {
    const char* name;
    v1::Envelope e;
    uint64_t target;
    bool ok;
  };
  v1::Envelope forged_id = build(3, 2, none, {});
  {
    v1::ViewChange vc;
    vc.ParseFromString(forged_id.payload());
    vc.set_replica_id(0);
    forged_id = fx.Sign(3, v1::MESSAGE_TYPE_VIEW_CHANGE, vc);
  }
  const std::vector<Row> rows = {
      {"no checkpoint, no certificates", build(3, 2, none, {}), 2, true},
      {"no checkpoint, two certificates", build(3, 2, none, {2, 5}), 2, true},
      {"proven checkpoint, certificates above it", build(0, 2, at4, {5, 12}), 2,
       true},
      {"for another view", build(3, 2, none, {}), 3, false},
      {"s* = 0 carrying checkpoints", build(3, 2, claimed, {}), 2, false},
      {"checkpoint proof short of 2f+1", build(3, 2, short_proof, {}), 2,
       false},
      {"certificates not ascending", build(3, 2, none, {5, 2}), 2, false},
      {"two certificates for one seq", build(3, 2, none, {5, 5}), 2, false},
      {"a certificate at s*", build(0, 2, at4, {4}), 2, false},
      {"a certificate beyond s* + L", build(0, 2, at4, {13}), 2, false},
      {"replica id is not the signer", forged_id, 2, false},
  };
  for (const Row& row : rows) {
    v1::ViewChange vc;
    EXPECT_EQ(checker.ViewChange(row.e, View(row.target), &vc), row.ok)
        << row.name;
    if (row.ok) {
      EXPECT_EQ(vc.new_view(), row.target) << row.name;
    }
  }
}

// --- Round-robin peer choice ------------------------------------------------

TEST(NextPeer, RoundRobinSkippingSelfAndIneligible) {
  struct Row {
    const char* name;
    uint32_t from;
    uint32_t self;
    std::vector<bool> eligible;  // Per replica of 4.
    std::optional<uint32_t> next;
  };
  const std::vector<Row> rows = {
      {"the next one", 0, 3, {true, true, true, true}, 1},
      {"wraps around", 2, 1, {true, true, true, true}, 3},
      {"wraps past n", 3, 1, {true, true, true, true}, 0},
      {"skips self", 0, 1, {true, true, true, true}, 2},
      {"skips the ineligible", 0, 3, {true, false, false, true}, 0},
      {"from itself comes last", 2, 0, {false, false, true, false}, 2},
      {"self never, even if eligible",
       1,
       2,
       {false, false, true, false},
       std::nullopt},
      {"none eligible", 0, 0, {false, false, false, false}, std::nullopt},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(NextPeer(row.from, 4, row.self,
                       [&](uint32_t p) { return row.eligible[p]; }),
              row.next)
        << row.name;
  }
}

}  // namespace
}  // namespace pbft::core
