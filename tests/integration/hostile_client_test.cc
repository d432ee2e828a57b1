// A hostile client against real ledgerd processes (started by
// hostile_client_test.sh; CLUSTER_DIR names the cluster). Requests are built
// and signed here from the proto files, without the SDK, so that what is
// checked is what the replicas answer on the wire:
//  - request numbers: a stale number and a reversed pipelined pair are each
//    answered (a signed stale rejection naming the last number), never
//    left waiting;
//  - per-client shares: a burst of one client's calls is refused beyond its
//    share while another client is served;
//  - answers clients match: a read-only GetBlock's answers are the same
//    bytes on every replica but for how each saw the block committed,
//    which verifies;
//  - answer budgets: GetBlock answers over the budget get
//    RESULT_CODE_ANSWER_TOO_LARGE (ordered, the same bytes on every replica)
//    or OUT_OF_RANGE (read-only);
//  - limits before ordering: too many operations, an operation of exactly
//    batch_bytes_max: RESOURCE_EXHAUSTED;
//  - a Session stream carrying a burst over the client's share, a forged
//    request and one with too many operations: each answered on the stream
//    with its id (a signed reply or the status), the stream left open, and
//    another client served meanwhile.
// The script configures small limits (client_calls_max 4, batch_bytes_max
// 1 MiB, answer_bytes_max 64 KiB) so that each case is cheap.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "client/client.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/keyfile.h"
#include "common/proto_names.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "gtest/gtest.h"
#include "ledger/v1/service.grpc.pb.h"
#include "replica/ledger/block.h"

namespace pbft::test {
namespace {

struct Answer {
  grpc::Status status;
  pbft::v1::Envelope reply;
};

class HostileClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* dir = std::getenv("CLUSTER_DIR");
    if (dir == nullptr) GTEST_SKIP() << "CLUSTER_DIR not set";
    dir_ = dir;
    absl::StatusOr<Cluster> c = Cluster::LoadFile(dir_ + "/cluster.json");
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::make_unique<Cluster>(*std::move(c));
    verifier_ = std::make_unique<EnvelopeVerifier>(cluster_->MakeVerifier());
    for (uint64_t id : {1, 2}) {
      absl::StatusOr<crypto::SecretKey> k =
          ReadKeyFile(absl::StrCat(dir_, "/keys/client-", id, ".key"));
      ASSERT_TRUE(k.ok()) << k.status();
      signers_.push_back(
          std::make_unique<EnvelopeSigner>(cluster_->cluster_id(), id, *k));
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    for (uint32_t i = 0; i < cluster_->n(); ++i) {
      stubs_.push_back(ledger::v1::LedgerService::NewStub(
          grpc::CreateCustomChannel(cluster_->replica(ReplicaId(i)).address(),
                                    grpc::InsecureChannelCredentials(), args)));
    }
  }

  // Request numbers above anything used so far by this process.
  uint64_t Number() {
    static std::atomic<uint64_t> next{
        static_cast<uint64_t>(absl::ToUnixMicros(absl::Now())) << 4};
    return next.fetch_add(1000);
  }

  pbft::v1::Envelope Signed(uint64_t client, uint64_t number,
                            const ledger::v1::OperationBatch& batch) {
    pbft::v1::Request r;
    r.set_client_id(client);
    r.set_request_number(number);
    batch.SerializeToString(r.mutable_operation());
    return signers_[client - 1]->SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, r);
  }

  static ledger::v1::OperationBatch Transfers(int count, uint64_t id_base) {
    ledger::v1::OperationBatch b;
    for (int i = 0; i < count; ++i) {
      ledger::v1::Transfer* t = b.add_operations()->mutable_transfer();
      *t->mutable_id() = client::MakeId(9, id_base + static_cast<uint64_t>(i));
      *t->mutable_debit_account_id() = client::MakeId(0, 1);
      *t->mutable_credit_account_id() = client::MakeId(0, 2);
      t->set_amount(1);
      t->set_ledger(1);
    }
    return b;
  }

  Answer Submit(uint32_t replica, const pbft::v1::Envelope& e,
                absl::Duration deadline = absl::Seconds(10)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    // Every replica is up: a failed first connect is retried within the
    // deadline, not taken for the replica's answer.
    ctx.set_wait_for_ready(true);
    ledger::v1::SubmitRequest req;
    *req.mutable_request() = e;
    ledger::v1::SubmitResponse resp;
    Answer a;
    a.status = stubs_[replica]->Submit(&ctx, req, &resp);
    a.reply = resp.reply();
    return a;
  }

  // Sends `e` to every replica at once; every answer.
  std::vector<Answer> SubmitAll(const pbft::v1::Envelope& e) {
    std::vector<std::future<Answer>> fs;
    for (uint32_t r = 0; r < cluster_->n(); ++r) {
      fs.push_back(std::async(std::launch::async,
                              [this, r, e] { return Submit(r, e); }));
    }
    std::vector<Answer> out;
    for (auto& f : fs) out.push_back(f.get());
    return out;
  }

  // `q` as a read-only query of client 1, signed.
  pbft::v1::Envelope ReadOnly(const ledger::v1::Query& q) {
    pbft::v1::Request r;
    r.set_client_id(1);
    r.set_request_number(Number());
    r.set_read_only(true);
    q.SerializeToString(r.mutable_operation());
    return signers_[0]->SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, r);
  }

  Answer QueryOne(uint32_t replica, const pbft::v1::Envelope& e) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    ctx.set_wait_for_ready(true);
    ledger::v1::QueryRequest req;
    *req.mutable_query() = e;
    ledger::v1::QueryResponse resp;
    Answer a;
    a.status = stubs_[replica]->Query(&ctx, req, &resp);
    a.reply = resp.reply();
    return a;
  }

  // The decoded reply, after checking its signature and sender.
  pbft::v1::Reply Decode(uint32_t replica, const Answer& a) {
    pbft::v1::Reply r;
    EXPECT_TRUE(a.status.ok())
        << "replica " << replica << ": " << a.status.error_code() << " "
        << a.status.error_message();
    EXPECT_EQ(verifier_->Check(a.reply), EnvelopeError::kOk);
    EXPECT_EQ(a.reply.sender(), replica);
    EXPECT_TRUE(r.ParseFromString(a.reply.payload()));
    return r;
  }

  std::string dir_;
  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<EnvelopeVerifier> verifier_;
  std::vector<std::unique_ptr<EnvelopeSigner>> signers_;
  std::vector<std::unique_ptr<ledger::v1::LedgerService::Stub>> stubs_;
};

TEST_F(HostileClientTest, StaleNumberIsAnsweredBySignedRejection) {
  const uint64_t t = Number();
  std::vector<Answer> done = SubmitAll(Signed(1, t, Transfers(1, t)));
  for (uint32_t r = 0; r < done.size(); ++r) {
    EXPECT_FALSE(Decode(r, done[r]).result().empty());
  }
  // Below the last executed number: every replica says so at once (the old
  // replicas stayed silent until the deadline).
  const absl::Time start = absl::Now();
  std::vector<Answer> stale = SubmitAll(Signed(1, t - 7, Transfers(1, t - 7)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  for (uint32_t r = 0; r < stale.size(); ++r) {
    pbft::v1::Reply reply = Decode(r, stale[r]);
    EXPECT_EQ(reply.rejected(), pbft::v1::REJECT_REASON_STALE_REQUEST_NUMBER)
        << "replica " << r;
    EXPECT_EQ(reply.request_number(), t - 7);
    EXPECT_EQ(reply.last_request_number(), t);
  }
}

TEST_F(HostileClientTest, ReversedPipelinedPairIsEachAnswered) {
  const uint64_t t = Number();
  const pbft::v1::Envelope high = Signed(1, t + 1, Transfers(1, t + 1));
  const pbft::v1::Envelope low = Signed(1, t, Transfers(1, t));
  auto first = std::async(std::launch::async, [&] { return SubmitAll(high); });
  absl::SleepFor(absl::Milliseconds(2));
  std::vector<Answer> second = SubmitAll(low);
  std::vector<Answer> high_answers = first.get();
  int low_executed = 0, low_stale = 0;
  std::set<std::string> low_results;
  for (uint32_t r = 0; r < cluster_->n(); ++r) {
    EXPECT_FALSE(Decode(r, high_answers[r]).result().empty());
    pbft::v1::Reply reply = Decode(r, second[r]);
    if (reply.rejected() == pbft::v1::REJECT_REASON_STALE_REQUEST_NUMBER) {
      EXPECT_EQ(reply.last_request_number(), t + 1);
      ++low_stale;
    } else if (!reply.result().empty()) {
      low_results.insert(reply.result());
      ++low_executed;
    }
  }
  // Every replica answers t, never silence: its result, or a stale
  // rejection naming t+1. Not all alike: t may be ordered before t+1 and
  // still reach a replica after it executed both; t is below its last then,
  // and the answer is the stale rejection (docs/protocol.md, "Request
  // numbers": the SDK never has two ordered requests in flight). Replicas
  // that executed t agree on its result.
  EXPECT_EQ(low_executed + low_stale, static_cast<int>(cluster_->n()))
      << low_executed << " executed, " << low_stale << " stale";
  EXPECT_LE(low_results.size(), 1u);
}

TEST_F(HostileClientTest, OneClientOverItsCallShareDoesNotStopOthers) {
  const size_t share = cluster_->protocol().client_calls_max;
  ASSERT_LE(share, 16u) << "the script sets a small client_calls_max";
  std::atomic<int> refused_share{0}, answered{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> burst;
  for (int i = 0; i < 48; ++i) {
    burst.emplace_back([&] {
      while (!stop.load()) {
        const uint64_t t = Number();
        Answer a = Submit(0, Signed(1, t, Transfers(1, t)), absl::Seconds(5));
        if (a.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
            a.status.error_message().find("client 1 has") !=
                std::string::npos) {
          refused_share.fetch_add(1);
        } else if (a.status.ok()) {
          answered.fetch_add(1);
        }
      }
    });
  }
  // Meanwhile client 2 is served by the same replica.
  int other_ok = 0;
  for (int i = 0; i < 5; ++i) {
    const uint64_t t = Number();
    std::vector<Answer> a = SubmitAll(Signed(2, t, Transfers(1, t)));
    for (uint32_t r = 0; r < a.size(); ++r) {
      EXPECT_NE(a[r].status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << a[r].status.error_message();
    }
    if (a[0].status.ok()) ++other_ok;
  }
  absl::SleepFor(absl::Milliseconds(200));
  stop.store(true);
  for (auto& t : burst) t.join();
  EXPECT_EQ(other_ok, 5);
  EXPECT_GT(refused_share.load(), 0) << answered.load() << " answered";
  EXPECT_GT(answered.load(), 0);
}

TEST_F(HostileClientTest, SessionAnswersEachRequestWithinTheShares) {
  const ProtocolParams& p = cluster_->protocol();
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto stream = stubs_[0]->Session(&ctx);
  constexpr uint64_t kBurst = 24;
  std::map<uint64_t, std::string> what;  // id -> what was sent.
  auto send = [&](uint64_t id, const pbft::v1::Envelope& e,
                  const std::string& kind) {
    ledger::v1::SessionRequest r;
    r.set_id(id);
    *r.mutable_request() = e;
    what[id] = kind;
    return stream->Write(r);
  };
  for (uint64_t i = 1; i <= kBurst; ++i) {
    const uint64_t t = Number();
    ASSERT_TRUE(send(i, Signed(1, t, Transfers(1, t)), "burst"));
  }
  pbft::v1::Envelope forged = Signed(1, Number(), Transfers(1, 7));
  forged.set_signature(std::string(64, 'f'));
  ASSERT_TRUE(send(kBurst + 1, forged, "forged"));
  const uint64_t t = Number();
  ASSERT_TRUE(
      send(kBurst + 2,
           Signed(1, t,
                  Transfers(static_cast<int>(p.request_operations_max) + 1, t)),
           "too many"));
  // Another client is served by the same replica meanwhile.
  const uint64_t t2 = Number();
  std::vector<Answer> other = SubmitAll(Signed(2, t2, Transfers(1, t2)));
  for (uint32_t r = 0; r < other.size(); ++r) Decode(r, other[r]);

  std::map<uint64_t, ledger::v1::SessionResponse> got;
  ledger::v1::SessionResponse resp;
  while (got.size() < what.size() && stream->Read(&resp)) {
    EXPECT_TRUE(what.count(resp.id())) << "answer for unknown id " << resp.id();
    EXPECT_TRUE(got.emplace(resp.id(), resp).second)
        << "two answers for id " << resp.id();
  }
  ASSERT_EQ(got.size(), what.size()) << "a request got no answer";
  int replied = 0, over_share = 0;
  for (uint64_t i = 1; i <= kBurst; ++i) {
    const ledger::v1::SessionResponse& a = got[i];
    if (a.status_code() == 0) {
      EXPECT_EQ(verifier_->Check(a.reply()), EnvelopeError::kOk);
      ++replied;
    } else {
      EXPECT_EQ(a.status_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << a.status_message();
      ++over_share;
    }
  }
  EXPECT_GT(replied, 0);
  EXPECT_GT(over_share, 0) << "a burst of " << kBurst << " with a share of "
                           << p.client_calls_max;
  EXPECT_EQ(got[kBurst + 1].status_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(got[kBurst + 2].status_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << got[kBurst + 2].status_message();
  // The stream is still open: a read-only query on it is answered.
  ledger::v1::Query q;
  q.mutable_get_head();
  pbft::v1::Request qr;
  qr.set_client_id(2);
  qr.set_request_number(Number());
  qr.set_read_only(true);
  q.SerializeToString(qr.mutable_operation());
  ASSERT_TRUE(send(kBurst + 3,
                   signers_[1]->SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, qr),
                   "query"));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.id(), kBurst + 3);
  EXPECT_EQ(resp.status_code(), 0) << resp.status_message();
  EXPECT_EQ(resp.reply().type(), pbft::v1::MESSAGE_TYPE_QUERY_REPLY);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(HostileClientTest, LimitsAreCheckedBeforeOrdering) {
  const ProtocolParams& p = cluster_->protocol();
  // More operations than a request may carry: refused at intake.
  uint64_t t = Number();
  for (int count : {static_cast<int>(p.request_operations_max) + 1, 100001}) {
    pbft::v1::Envelope e = Signed(1, t, Transfers(count, t));
    for (uint32_t r = 0; r < cluster_->n(); ++r) {
      Answer a = Submit(r, e);
      EXPECT_EQ(a.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << count << " operations, replica " << r << ": "
          << a.status.error_message();
    }
    t = Number();
  }
  // An operation of exactly batch_bytes_max is too large, not malformed.
  pbft::v1::Request big;
  big.set_client_id(1);
  big.set_request_number(Number());
  big.set_operation(std::string(p.batch_bytes_max, 'x'));
  Answer a =
      Submit(1, signers_[0]->SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, big));
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << a.status.error_message();
}

TEST_F(HostileClientTest, AnswersStayWithinTheirBudget) {
  const ProtocolParams& p = cluster_->protocol();
  ASSERT_LE(p.answer_bytes_max, 100000u) << "the script sets a small budget";
  // A block whose answer exceeds the answer budget: one request of
  // ~2000 transfers (most fail; they are in the block all the same).
  uint64_t t = Number();
  std::vector<Answer> done = SubmitAll(Signed(1, t, Transfers(2000, t)));
  ledger::v1::OperationResults results;
  ASSERT_TRUE(results.ParseFromString(Decode(0, done[0]).result()));
  const uint64_t height = results.seq();
  ASSERT_GT(height, 0u);

  // Six ordered GetBlock queries of that block and a GetHead.
  ledger::v1::OperationBatch queries;
  for (int i = 0; i < 6; ++i) {
    queries.add_operations()->mutable_query()->mutable_get_block()->set_height(
        height);
  }
  queries.add_operations()->mutable_query()->mutable_get_head();
  t = Number();
  std::vector<Answer> answers = SubmitAll(Signed(1, t, queries));
  std::string first;
  for (uint32_t r = 0; r < answers.size(); ++r) {
    pbft::v1::Reply reply = Decode(r, answers[r]);
    EXPECT_LT(answers[r].reply.ByteSizeLong(), p.reply_bytes_max);
    ledger::v1::OperationResults rs;
    ASSERT_TRUE(rs.ParseFromString(reply.result()));
    ASSERT_EQ(rs.results_size(), 7);
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(rs.results(i).code(), ledger::v1::RESULT_CODE_ANSWER_TOO_LARGE);
      EXPECT_FALSE(rs.results(i).has_answer());
    }
    EXPECT_EQ(rs.results(6).code(), ledger::v1::RESULT_CODE_OK);
    EXPECT_TRUE(rs.results(6).answer().has_head());
    // The same result bytes on every replica.
    if (r == 0) first = reply.result();
    EXPECT_EQ(reply.result(), first) << "replica " << r;
  }

  // Read-only: refused with OUT_OF_RANGE by every replica.
  ledger::v1::Query q;
  q.mutable_get_block()->set_height(height);
  const pbft::v1::Envelope e = ReadOnly(q);
  for (uint32_t r = 0; r < cluster_->n(); ++r) {
    grpc::Status s = QueryOne(r, e).status;
    EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE)
        << "replica " << r << ": " << s.error_message();
  }
}

// Answers that clients match are byte-identical on correct replicas: a
// read-only GetBlock of an executed block, sent to every replica, gets
// answers that differ only in replica_id and block_commit (how each
// replica saw the block committed, which the client verifies instead of
// matching), and every block_commit certifies the block's header. So 2f+1
// of them complete the read without the ordered fallback.
TEST_F(HostileClientTest, ReadOnlyBlockAnswersMatchOnEveryReplica) {
  uint64_t t = Number();
  std::vector<Answer> done = SubmitAll(Signed(1, t, Transfers(3, t)));
  ledger::v1::OperationResults results;
  ASSERT_TRUE(results.ParseFromString(Decode(0, done[0]).result()));
  const uint64_t height = results.seq();
  ASSERT_GT(height, 0u);  // Every replica replied: every one executed it.

  ledger::v1::Query q;
  q.mutable_get_block()->set_height(height);
  const pbft::v1::Envelope e = ReadOnly(q);
  std::string first;
  for (uint32_t r = 0; r < cluster_->n(); ++r) {
    Answer a = QueryOne(r, e);
    ASSERT_TRUE(a.status.ok())
        << "replica " << r << ": " << a.status.error_message();
    EXPECT_EQ(verifier_->Check(a.reply), EnvelopeError::kOk);
    ledger::v1::QueryReply answer;
    ASSERT_TRUE(answer.ParseFromString(a.reply.payload()));
    EXPECT_EQ(answer.replica_id(), r);
    ASSERT_TRUE(answer.has_block()) << "replica " << r;
    EXPECT_EQ(answer.block().header().height(), height);
    ASSERT_TRUE(answer.has_block_commit()) << "replica " << r;
    const ledger::v1::BlockCommit& c = answer.block_commit();
    EXPECT_TRUE(ledger::VerifyBlockCommit(*cluster_, *verifier_,
                                          answer.block().header(), c.view(),
                                          c.pre_prepare(), c.certificate())
                    .ok())
        << "replica " << r;
    answer.clear_replica_id();
    answer.clear_block_commit();
    std::string bytes;
    google::protobuf::io::StringOutputStream sos(&bytes);
    {
      google::protobuf::io::CodedOutputStream cos(&sos);
      cos.SetSerializationDeterministic(true);
      ASSERT_TRUE(answer.SerializeToCodedStream(&cos));
    }
    if (r == 0) first = bytes;
    EXPECT_EQ(bytes, first) << "replica " << r << "'s answer differs";
  }
}

}  // namespace
}  // namespace pbft::test
