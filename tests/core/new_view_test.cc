// Table tests of the new-view computation (Castro & Liskov §4.4,
// replica/core/new_view.h): given the VIEW-CHANGEs of V, the expected
// min-s, max-s and O. Digests are written as one letter ('-' is the null
// request); certificates as (view, seq, digest, timestamp).
#include "replica/core/new_view.h"

#include <string>
#include <vector>

#include "common/envelope.h"
#include "gtest/gtest.h"

namespace pbft::core {
namespace {

struct Cert {
  uint64_t view;
  uint64_t seq;
  char digest;
  uint64_t timestamp_ms;
};
struct ViewChangeRow {
  uint64_t stable_seq;  // s*
  std::vector<Cert> certs;
};
struct Entry {
  uint64_t seq;
  char digest;  // '-': the null request.
  uint64_t timestamp_ms;
};
struct Row {
  const char* name;
  std::vector<ViewChangeRow> v;
  uint64_t min_s;
  uint64_t max_s;
  std::vector<Entry> o;
  size_t min_proof_from = 0;  // Index in V of the VIEW-CHANGE proving min-s.
};

Digest D(char c) {
  if (c == '-') return NullBatchDigest();
  return *Digest::FromBytes(std::string(32, c));
}

v1::ViewChange Build(const ViewChangeRow& row, uint64_t replica) {
  v1::ViewChange vc;
  vc.set_new_view(9);
  vc.set_replica_id(replica);
  vc.mutable_stable_checkpoint()->set_seq(row.stable_seq);
  // Tells the proofs apart (ComputeNewView does not verify them).
  vc.mutable_stable_checkpoint()->set_state_digest(
      std::string(32, static_cast<char>('0' + replica)));
  for (const Cert& c : row.certs) {
    v1::PrePrepare pp;
    pp.set_view(c.view);
    pp.set_seq(c.seq);
    pp.set_timestamp_ms(c.timestamp_ms);
    pp.set_batch_digest(D(c.digest).ToBytes());
    v1::Envelope* h = vc.add_prepared()->mutable_pre_prepare();
    h->set_type(v1::MESSAGE_TYPE_PRE_PREPARE);
    h->set_sender(c.view % 4);
    h->set_payload(pp.SerializeAsString());
  }
  return vc;
}

TEST(NewViewComputation, MinSMaxSAndOFromTheViewChanges_4_4) {
  const std::vector<Row> rows = {
      {"nothing prepared anywhere", {{0, {}}, {0, {}}, {0, {}}}, 0, 0, {}},
      {"one certificate",
       {{0, {{1, 1, 'a', 100}}}, {0, {}}, {0, {}}},
       0,
       1,
       {{1, 'a', 100}}},
      {"a gap is filled with the null request, with the timestamp before it",
       {{0, {{1, 1, 'a', 100}, {1, 3, 'b', 300}}}, {0, {}}, {0, {}}},
       0,
       3,
       {{1, 'a', 100}, {2, '-', 100}, {3, 'b', 300}}},
      {"the certificate of the highest view wins",
       {{0, {{1, 2, 'a', 100}}}, {0, {{2, 2, 'b', 200}}}, {0, {}}},
       0,
       2,
       {{1, '-', 0}, {2, 'b', 200}}},
      {"the highest view wins whatever its place in V",
       {{0, {{3, 2, 'c', 50}}}, {0, {{2, 2, 'b', 200}}}, {0, {{1, 2, 'a', 1}}}},
       0,
       2,
       {{1, '-', 0}, {2, 'c', 50}}},
      {"in one view the first certificate in V is kept",
       {{0, {{1, 1, 'a', 10}}}, {0, {{1, 1, 'b', 20}}}, {0, {}}},
       0,
       1,
       {{1, 'a', 10}}},
      {"min-s is the highest s*; certificates at or below it are ignored",
       {{4, {{1, 6, 'x', 60}}},
        {8, {{1, 10, 'y', 100}}},
        {0, {{1, 3, 'z', 3}}}},
       8,
       10,
       {{9, '-', 0}, {10, 'y', 100}},
       1},
      {"min-s with nothing above it: O is empty",
       {{4, {}}, {8, {{1, 8, 'a', 1}}}, {8, {}}},
       8,
       8,
       {},
       1},
      {"a null request takes the highest timestamp before it",
       {{0, {{1, 1, 'a', 100}, {1, 3, 'b', 50}, {1, 5, 'c', 200}}},
        {0, {}},
        {0, {}}},
       0,
       5,
       {{1, 'a', 100},
        {2, '-', 100},
        {3, 'b', 50},
        {4, '-', 100},
        {5, 'c', 200}}},
      {"certificates from different replicas at different seqs",
       {{0, {{1, 1, 'a', 1}}}, {0, {{1, 2, 'b', 2}}}, {0, {{2, 4, 'd', 4}}}},
       0,
       4,
       {{1, 'a', 1}, {2, 'b', 2}, {3, '-', 2}, {4, 'd', 4}}},
  };
  for (const Row& row : rows) {
    std::vector<v1::ViewChange> parsed;
    for (size_t i = 0; i < row.v.size(); ++i) {
      parsed.push_back(Build(row.v[i], i));
    }
    std::vector<const v1::ViewChange*> vcs;
    for (const v1::ViewChange& vc : parsed) vcs.push_back(&vc);
    const NewViewComputation got = ComputeNewView(vcs);
    EXPECT_EQ(got.min_s, Seq(row.min_s)) << row.name;
    EXPECT_EQ(got.max_s, Seq(row.max_s)) << row.name;
    EXPECT_EQ(got.min_proof, &parsed[row.min_proof_from].stable_checkpoint())
        << row.name;
    ASSERT_EQ(got.o.size(), row.o.size()) << row.name;
    for (size_t i = 0; i < row.o.size(); ++i) {
      const OEntry& e = got.o[i];
      EXPECT_EQ(e.seq, Seq(row.o[i].seq)) << row.name << " entry " << i;
      EXPECT_EQ(e.digest, D(row.o[i].digest)) << row.name << " entry " << i;
      EXPECT_EQ(e.timestamp_ms, row.o[i].timestamp_ms)
          << row.name << " entry " << i;
      // A certified entry points at the PRE-PREPARE header it came from.
      EXPECT_EQ(e.source == nullptr, row.o[i].digest == '-')
          << row.name << " entry " << i;
      if (e.source != nullptr) {
        v1::PrePrepare pp;
        ASSERT_TRUE(pp.ParseFromString(e.source->payload()));
        EXPECT_EQ(pp.seq(), row.o[i].seq) << row.name;
        EXPECT_EQ(pp.batch_digest(), D(row.o[i].digest).ToBytes()) << row.name;
      }
    }
  }
}

}  // namespace
}  // namespace pbft::core
