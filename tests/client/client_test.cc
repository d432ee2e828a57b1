// pbft::client::Client against in-process fake replicas on loopback: f+1
// matching signed replies, Byzantine and unreachable replicas, retransmission,
// outcome-unknown, permanent errors, read-only quorum, thread safety.
#include "client/client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "client/first_replicas.h"
#include "client/load_throttle.h"
#include "client/timer_thread.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/keyfile.h"
#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "ledger/v1/service.grpc.pb.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"
#include "replica/ledger/block.h"
#include "replica/ledger/ledger.h"
#include "tests/ledger/block_factory.h"
#include "tests/unit/test_util.h"

namespace pbft::client {
namespace {

enum class Behaviour {
  kHonest,
  kWrongResult,     // Byzantine: signs a different result.
  kBadSignature,    // Byzantine: garbage signature.
  kDown,            // UNAVAILABLE on every call.
  kFlaky,           // UNAVAILABLE on the first call, then honest.
  kRejectArgument,  // INVALID_ARGUMENT (as if the request were malformed).
  // Honest, but the client's last number here is kStaleFloor (another
  // process of the same key ran ahead): lower numbers get a signed stale
  // rejection naming it, as ledgerd sends.
  kStaleFloor,
  kLyingStale,  // Byzantine: refuses everything as stale below 2^63.
  kBusy,        // RESOURCE_EXHAUSTED on every call (a full replica).
  // RESOURCE_EXHAUSTED on the first call, then honest: a replica that
  // refused the call for load and, asked again once the request executed,
  // answers from its stored reply.
  kBusyOnce,
  kQueueFull,  // A signed REJECT_REASON_QUEUE_FULL reply to every Submit.
};

// A client number far above any wall clock in microseconds.
constexpr uint64_t kStaleFloor = uint64_t{1} << 60;

class FakeReplica final : public ledger::v1::LedgerService::Service {
 public:
  FakeReplica(uint32_t id, crypto::SecretKey key, Behaviour b)
      : id_(id), key_(std::move(key)), behaviour_(b) {}

  void Init(const Cluster& cluster) {
    signer_ = std::make_unique<EnvelopeSigner>(cluster.cluster_id(), id_, key_);
    verifier_ = std::make_unique<EnvelopeVerifier>(cluster.MakeVerifier());
  }

  // `ctx` null: called for a Session request.
  grpc::Status Submit(grpc::ServerContext* ctx,
                      const ledger::v1::SubmitRequest* req,
                      ledger::v1::SubmitResponse* resp) override {
    calls_.fetch_add(1);
    if (ctx != nullptr) unary_.fetch_add(1);
    if (req->has_primary_view()) {
      hinted_.fetch_add(1);
      last_hint_.store(req->primary_view());
    }
    if (grpc::Status s = Gate(); !s.ok()) return s;
    if (!verifier_->Verify(req->request()).ok()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "bad request signature");
    }
    pbft::v1::Request r;
    r.ParseFromString(req->request().payload());
    if (behaviour_ == Behaviour::kQueueFull) {
      pbft::v1::Reply reply;
      reply.set_request_number(r.request_number());
      reply.set_client_id(r.client_id());
      reply.set_replica_id(id_);
      reply.set_rejected(pbft::v1::REJECT_REASON_QUEUE_FULL);
      *resp->mutable_reply() =
          signer_->SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply);
      return grpc::Status::OK;
    }
    if (behaviour_ == Behaviour::kLyingStale ||
        (behaviour_ == Behaviour::kStaleFloor &&
         r.request_number() <= kStaleFloor)) {
      pbft::v1::Reply reply;
      reply.set_request_number(r.request_number());
      reply.set_client_id(r.client_id());
      reply.set_replica_id(id_);
      reply.set_rejected(pbft::v1::REJECT_REASON_STALE_REQUEST_NUMBER);
      reply.set_last_request_number(behaviour_ == Behaviour::kLyingStale
                                        ? uint64_t{1} << 63
                                        : kStaleFloor);
      *resp->mutable_reply() =
          signer_->SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply);
      return grpc::Status::OK;
    }
    ledger::v1::OperationBatch batch;
    batch.ParseFromString(r.operation());
    ledger::v1::OperationResults results;
    results.set_seq(r.request_number());
    for (int i = 0; i < batch.operations_size(); ++i) {
      ledger::v1::OperationResult* res = results.add_results();
      res->set_code(behaviour_ == Behaviour::kWrongResult
                        ? ledger::v1::RESULT_CODE_INSUFFICIENT_FUNDS
                        : ledger::v1::RESULT_CODE_OK);
      if (batch.operations(i).has_query()) {  // An ordered read.
        res->set_code(ledger::v1::RESULT_CODE_OK);
        res->mutable_answer()->mutable_head()->set_height(
            behaviour_ == Behaviour::kWrongResult ? 999 : 42);
      }
    }
    pbft::v1::Reply reply;
    reply.set_view(view_.load());
    reply.set_request_number(r.request_number());
    reply.set_client_id(r.client_id());
    reply.set_replica_id(id_);
    results.SerializeToString(reply.mutable_result());
    *resp->mutable_reply() =
        signer_->SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply);
    if (behaviour_ == Behaviour::kBadSignature) {
      resp->mutable_reply()->set_signature(std::string(64, 'x'));
    }
    return grpc::Status::OK;
  }

  grpc::Status Query(grpc::ServerContext* ctx,
                     const ledger::v1::QueryRequest* req,
                     ledger::v1::QueryResponse* resp) override {
    if (ctx != nullptr) unary_.fetch_add(1);
    if (grpc::Status s = Gate(); !s.ok()) return s;
    pbft::v1::Request r;
    r.ParseFromString(req->query().payload());
    ledger::v1::QueryReply q;
    q.set_replica_id(id_);
    q.set_client_id(r.client_id());
    q.set_request_number(r.request_number());
    ledger::v1::Query query;
    if (answer_ && query.ParseFromString(r.operation())) {
      answer_(query, &q);
    } else {
      q.mutable_head()->set_height(behaviour_ == Behaviour::kWrongResult ? 999
                                                                         : 42);
    }
    *resp->mutable_reply() =
        signer_->SignMessage(pbft::v1::MESSAGE_TYPE_QUERY_REPLY, q);
    return grpc::Status::OK;
  }

  // Answers Session streams (else UNIMPLEMENTED, as a replica without
  // them): each request as Submit or Query would. The first `break_first`
  // streams end (UNAVAILABLE) right after reading a request, unanswered.
  // `silent`: requests are read and never answered; `lag`: each is answered
  // that long after it was read. Set before the first call.
  void EnableSessions(int break_first = 0, bool silent = false,
                      absl::Duration lag = absl::ZeroDuration()) {
    sessions_ = true;
    break_first_ = break_first;
    silent_ = silent;
    lag_ = lag;
  }
  // On sessions, as a backup holds a request the client said the primary
  // has (it neither forwards nor answers it until executed): requests with
  // the word are read and held; a copy without it is answered, and so are
  // the held ones, with the same answer (as a replica answers every call
  // waiting for a request; one call at a time). Set before the first call.
  void HoldRequestsOnTheWord() { hold_on_word_ = true; }

  grpc::Status Session(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<ledger::v1::SessionResponse,
                               ledger::v1::SessionRequest>* stream) override {
    if (!sessions_) {
      return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no sessions");
    }
    const int stream_index = streams_.fetch_add(1);
    ledger::v1::SessionRequest req;
    std::vector<uint64_t> held;  // HoldRequestsOnTheWord
    while (stream->Read(&req)) {
      session_requests_.fetch_add(1);
      if (stream_index < break_first_) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream broke");
      }
      if (hold_on_word_ && req.has_primary_view()) {
        held.push_back(req.id());
        continue;
      }
      if (silent_) continue;
      absl::SleepFor(lag_);
      pbft::v1::Request r;
      r.ParseFromString(req.request().payload());
      grpc::Status status;
      ledger::v1::SessionResponse resp;
      resp.set_id(req.id());
      if (r.read_only()) {
        ledger::v1::QueryRequest q;
        *q.mutable_query() = req.request();
        ledger::v1::QueryResponse qr;
        status = Query(nullptr, &q, &qr);
        *resp.mutable_reply() = qr.reply();
      } else {
        ledger::v1::SubmitRequest sub;
        *sub.mutable_request() = req.request();
        if (req.has_primary_view()) sub.set_primary_view(req.primary_view());
        ledger::v1::SubmitResponse sr;
        status = Submit(nullptr, &sub, &sr);
        *resp.mutable_reply() = sr.reply();
      }
      if (!status.ok()) {
        resp.clear_reply();
        resp.set_status_code(status.error_code());
        resp.set_status_message(status.error_message());
      }
      if (!stream->Write(resp)) break;
      for (uint64_t id : held) {
        resp.set_id(id);
        if (!stream->Write(resp)) break;
      }
      held.clear();
    }
    return grpc::Status::OK;
  }

  // Submit calls (ordered requests) so far, by either way.
  int calls() const { return calls_.load(); }
  // Of them, those that said the primary of a view has the request too,
  // and the view the last of them named.
  int hinted() const { return hinted_.load(); }
  uint64_t last_hint() const { return last_hint_.load(); }
  // The view its replies name.
  void SetView(uint64_t view) { view_.store(view); }
  // Unary Submit and Query calls.
  int unary() const { return unary_.load(); }
  // Session streams opened, and requests read from them.
  int streams() const { return streams_.load(); }
  int session_requests() const { return session_requests_.load(); }
  // Answers read-only queries with `answer` instead of a fixed head. Set
  // before the first query.
  void SetAnswer(
      std::function<void(const ledger::v1::Query&, ledger::v1::QueryReply*)>
          answer) {
    answer_ = std::move(answer);
  }

 private:
  grpc::Status Gate() {
    if (behaviour_ == Behaviour::kDown) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
    }
    if (behaviour_ == Behaviour::kFlaky && !flaked_.exchange(true)) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "flaky");
    }
    if (behaviour_ == Behaviour::kBusy ||
        (behaviour_ == Behaviour::kBusyOnce && !refused_once_.exchange(true))) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "replica: too many requests waiting");
    }
    if (behaviour_ == Behaviour::kRejectArgument) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "batch.operations[0]: bad");
    }
    return grpc::Status::OK;
  }

  uint32_t id_;
  crypto::SecretKey key_;
  Behaviour behaviour_;
  std::unique_ptr<EnvelopeSigner> signer_;
  std::unique_ptr<EnvelopeVerifier> verifier_;
  std::atomic<int> calls_{0};
  std::atomic<int> hinted_{0};
  std::atomic<uint64_t> last_hint_{0};
  std::atomic<bool> refused_once_{false};
  std::atomic<uint64_t> view_{0};
  std::atomic<bool> flaked_{false};
  bool sessions_ = false;
  int break_first_ = 0;
  bool silent_ = false;
  bool hold_on_word_ = false;
  absl::Duration lag_;
  std::atomic<int> unary_{0};
  std::atomic<int> streams_{0};
  std::atomic<int> session_requests_{0};
  std::function<void(const ledger::v1::Query&, ledger::v1::QueryReply*)>
      answer_;
};

class ClientTest : public ::testing::Test {
 protected:
  // Starts 4 fake replicas (f = 1) with the given behaviours and writes the
  // cluster config + a client key. With `factory`: its cluster (keys,
  // clients, genesis) and its client 3 as the SDK's key.
  void StartCluster(std::vector<Behaviour> behaviours,
                    const test::BlockFactory* factory = nullptr) {
    ledger::v1::ClusterConfig config;
    config.set_cluster_id("client-test");
    config.set_f(1);
    if (factory != nullptr) {
      config = factory->config();
      config.clear_replicas();
    }
    for (uint32_t i = 0; i < behaviours.size(); ++i) {
      crypto::SecretKey key = factory != nullptr
                                  ? factory->replica_key(i)
                                  : crypto::SecretKey::Generate();
      replicas_.push_back(std::make_unique<FakeReplica>(i, key, behaviours[i]));
      grpc::ServerBuilder b;
      int port = 0;
      b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                         &port);
      b.RegisterService(replicas_.back().get());
      servers_.push_back(b.BuildAndStart());
      ASSERT_GT(port, 0);
      ledger::v1::ReplicaConfig* r = config.add_replicas();
      r->set_id(i);
      r->set_address("127.0.0.1:" + std::to_string(port));
      r->set_public_key(key.public_key().ToBytes());
    }
    crypto::SecretKey client_key = factory != nullptr
                                       ? factory->client_key(3)
                                       : crypto::SecretKey::Generate();
    if (factory == nullptr) {
      ledger::v1::ClientConfig* c = config.add_clients();
      c->set_id(5);
      c->set_public_key(client_key.public_key().ToBytes());
    }
    absl::StatusOr<Cluster> cluster = Cluster::FromProto(config, "test");
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    for (auto& r : replicas_) r->Init(*cluster);
    std::ofstream(dir_.file("cluster.json")) << ClusterConfigToJson(config);
    ASSERT_TRUE(WriteKeyFile(dir_.file("client.key"), client_key).ok());
  }

  std::unique_ptr<Client> NewClient(bool retry_refused = true) {
    ClientOptions o;
    o.retry_refused = retry_refused;
    return NewClient(o);
  }

  std::unique_ptr<Client> NewClient(ClientOptions o) {
    o.config_path = dir_.file("cluster.json");
    o.key_path = dir_.file("client.key");
    o.default_deadline = absl::Seconds(5);
    o.retry_initial = absl::Milliseconds(5);
    absl::StatusOr<std::unique_ptr<Client>> c = Client::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // A client that fails refused calls (retry_refused off) and never widens
  // a call on loopback: only its first replicas are asked.
  std::unique_ptr<Client> NarrowClientFailingRefusals() {
    ClientOptions o;
    o.retry_refused = false;
    o.widen_after_initial = o.widen_after_min = absl::Seconds(30);
    return NewClient(o);
  }

  // Options of a client that fails refused calls and has `throttle`.
  static ClientOptions Throttled(std::shared_ptr<LoadThrottle> throttle) {
    ClientOptions o;
    o.retry_refused = false;
    o.throttle = std::move(throttle);
    return o;
  }

  static ledger::v1::Transfer SomeTransfer() {
    ledger::v1::Transfer t;
    *t.mutable_id() = MakeId(0, 77);
    *t.mutable_debit_account_id() = MakeId(0, 1);
    *t.mutable_credit_account_id() = MakeId(0, 2);
    t.set_amount(10);
    t.set_ledger(1);
    return t;
  }

  // A transfer given 300 ms that must end at its deadline with an unknown
  // outcome; its status into `status` if given, for further checks.
  static void TransferEndsAtDeadline(Client& c,
                                     absl::Status* status = nullptr) {
    absl::StatusOr<ledger::v1::OperationResults> r =
        c.Transfers({SomeTransfer()}, absl::Milliseconds(300));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_TRUE(IsOutcomeUnknown(r.status())) << r.status();
    if (status != nullptr) *status = r.status();
  }

  // `count` transfers on a client that never widens a call on loopback
  // (a 5-s delay, also as the floor it adapts within): which replicas it
  // asks first is all that decides who sees them.
  void TransfersToTheFirstReplicas(int count) {
    ClientOptions o;
    o.widen_after_initial = o.widen_after_min = absl::Seconds(5);
    auto c = NewClient(o);
    for (int i = 0; i < count; ++i) {
      absl::StatusOr<ledger::v1::OperationResults> r =
          c->Transfers({SomeTransfer()});
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }

  void TearDown() override {
    for (auto& s : servers_) s->Shutdown(std::chrono::system_clock::now());
  }

  test::TempDir dir_;
  std::vector<std::unique_ptr<FakeReplica>> replicas_;
  std::vector<std::unique_ptr<grpc::Server>> servers_;
};

using B = Behaviour;

TEST_F(ClientTest, HonestClusterReturnsResult) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  auto c = NewClient();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->client_id(), 5u);
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer(), SomeTransfer()});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->results_size(), 2);
  EXPECT_EQ(r->results(0).code(), ledger::v1::RESULT_CODE_OK);
}

TEST_F(ClientTest, ByzantineReplicaCannotChangeTheResult) {
  // f = 1: one lying replica never reaches f+1 = 2 matching replies.
  StartCluster({B::kWrongResult, B::kHonest, B::kHonest, B::kHonest});
  auto c = NewClient();
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<ledger::v1::OperationResults> r =
        c->Transfers({SomeTransfer()});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->results(0).code(), ledger::v1::RESULT_CODE_OK);
  }
}

TEST_F(ClientTest, BadSignaturesDoNotCount) {
  // Two honest replies still make f+1; the forged ones are ignored.
  StartCluster({B::kBadSignature, B::kBadSignature, B::kHonest, B::kHonest});
  auto c = NewClient();
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results(0).code(), ledger::v1::RESULT_CODE_OK);
}

TEST_F(ClientTest, OneHonestReplyIsNotEnoughOutcomeUnknown) {
  StartCluster({B::kDown, B::kWrongResult, B::kDown, B::kHonest});
  auto c = NewClient();
  absl::Status s;
  TransferEndsAtDeadline(*c, &s);
  EXPECT_NE(s.message().find("outcome unknown"), std::string::npos);
  // Down replicas were retried, not asked once.
  EXPECT_GT(replicas_[0]->calls(), 1);
}

TEST_F(ClientTest, RetransmitsToAFailedReplica) {
  StartCluster({B::kFlaky, B::kDown, B::kDown, B::kFlaky});
  auto c = NewClient();
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(replicas_[0]->calls(), 2);
  // A failure widens the call at once and leaves the replica out.
  const ClientStats stats = c->stats();
  EXPECT_EQ(stats.ordered_sends, 1u);
  EXPECT_EQ(stats.widened_early, 1u);
  EXPECT_GE(stats.replicas_left_out, 1u);
}

// With replicas that implement Session, requests and queries go on one
// stream per replica, not as unary calls. (A call is not sent to a
// replica once it has its answers: not every replica sees every call.)
TEST_F(ClientTest, SessionsCarryRequestsAndQueries) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  for (auto& r : replicas_) r->EnableSessions();
  auto c = NewClient();
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<ledger::v1::OperationResults> r =
        c->Transfers({SomeTransfer()});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->results(0).code(), ledger::v1::RESULT_CODE_OK);
  }
  absl::StatusOr<ledger::v1::ChainHead> head = c->GetHead();
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->height(), 42u);
  int answered = 0;
  for (auto& r : replicas_) {
    EXPECT_EQ(r->unary(), 0);
    EXPECT_LE(r->streams(), 1);
    answered += r->session_requests();
  }
  // f+1 = 2 answers for each transfer, 2f+1 = 3 for the query.
  EXPECT_GE(answered, 5 * 2 + 3);
}

// An ordered request goes to f+1 replicas first: the primary (view 0:
// replica 0) and one backup set by the client id (5 % 3 = 2: replica 3).
// The other two get it inside the primary's PRE-PREPARE, not from the
// client.
TEST_F(ClientTest, OrderedRequestsGoFirstToFPlusOneReplicas) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  for (auto& r : replicas_) r->EnableSessions();
  TransfersToTheFirstReplicas(10);
  EXPECT_EQ(replicas_[0]->calls(), 10);
  EXPECT_EQ(replicas_[3]->calls(), 10);
  EXPECT_EQ(replicas_[1]->calls(), 0);
  EXPECT_EQ(replicas_[2]->calls(), 0);
}

// send_to_all: every replica gets every request at once. With replica 3
// (one of this client's first replicas) silent and a widening delay far
// beyond the deadline, only asking replicas 1 and 2 at once completes it.
TEST_F(ClientTest, SendToAllAsksEveryReplicaAtOnce) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  replicas_[3]->EnableSessions(0, /*silent=*/true);
  ClientOptions o;
  o.widen_after_initial = o.widen_after_min = absl::Seconds(30);
  o.send_to_all = true;
  auto c = NewClient(o);
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()}, absl::Seconds(3));
  ASSERT_TRUE(r.ok()) << r.status();
  // Without it the call waits for the delay and ends at its deadline.
  o.send_to_all = false;
  auto first_only = NewClient(o);
  TransferEndsAtDeadline(*first_only);
}

// A first replica that reads requests and never answers: the others are
// asked once the widening delay has passed, the call completes, and after
// its second silence the replica is left out of the next calls' first
// replicas (the next backup in line, replica 1, takes its place).
TEST_F(ClientTest, SilentFirstReplicaIsBypassedAndThenLeftOut) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  replicas_[3]->EnableSessions(0, /*silent=*/true);
  ClientOptions o;
  // Long enough for replica 0 to answer the first call (connections
  // included): a replica is left out only if another first one answered.
  o.widen_after_initial = absl::Milliseconds(300);
  auto c = NewClient(o);
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<ledger::v1::OperationResults> r =
        c->Transfers({SomeTransfer()}, absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  EXPECT_EQ(replicas_[0]->calls(), 5);
  // Only the first two calls went to replica 3; each call had an answer
  // from 1 or 2 besides 0's (the next three went to 0 and 1, unless a slow
  // answer widened one of them too).
  EXPECT_EQ(replicas_[3]->session_requests(), 2);
  EXPECT_GE(replicas_[1]->calls() + replicas_[2]->calls(), 5);
  const ClientStats stats = c->stats();
  EXPECT_EQ(stats.ordered_sends, 5u);
  EXPECT_GE(stats.widened_by_timer, 2u);
  EXPECT_EQ(stats.replicas_left_out, 1u);
  EXPECT_EQ(stats.sent_to_all_first, 0u);
}

// The same silent replica with the hedge on (at 0.5): each call is
// widened half its first answer's latency after it, long before the
// widening delay, and the replica is still struck when widen_after_max
// has passed without its answer, so left out at its second silence.
TEST_F(ClientTest, HedgeWidensWhenOneFirstReplicaLagsAndStillStrikes) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  replicas_[3]->EnableSessions(0, /*silent=*/true);
  ClientOptions o;
  o.widen_after_initial = o.widen_after_min = absl::Milliseconds(200);
  o.widen_after_max = absl::Milliseconds(400);
  o.hedge_after_first = 0.5;
  auto c = NewClient(o);
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<ledger::v1::OperationResults> r =
        c->Transfers({SomeTransfer()}, absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  ClientStats stats = c->stats();
  EXPECT_EQ(stats.widened_by_hedge, 2u);
  EXPECT_EQ(stats.widened_by_timer, 0u);
  // Both calls reach widen_after_max (each strikes replica 3) while their
  // requests to it are still unanswered.
  absl::SleepFor(absl::Milliseconds(600));
  const ClientStats before_third = c->stats();
  EXPECT_EQ(before_third.replicas_left_out, 1u);
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()}, absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  stats = c->stats();
  // Replica 3 is no longer among the first ones: the third call reaches it
  // only if its own first answers were spread enough for the hedge (and
  // that late send may not have been read yet).
  const uint64_t third_hedged = (stats - before_third).widened_by_hedge;
  EXPECT_LE(replicas_[3]->session_requests(),
            2 + static_cast<int>(third_hedged));
  EXPECT_EQ(stats.ordered_sends, 3u);
  EXPECT_EQ(stats.widened_by_timer, 0u);
  EXPECT_EQ(stats.sent_to_all_first, 0u);
}

// A first replica that answers every call, but late (each 100 ms after
// the one before, beyond the 50-ms widening delay): the hedge completes
// each call without it, and since its answers come before
// widen_after_max (2 s) it is never struck, so never left out (a busy
// correct primary).
TEST_F(ClientTest, LaggingFirstReplicaIsHedgedButNeverLeftOut) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  for (auto& r : replicas_) r->EnableSessions();
  replicas_[3]->EnableSessions(0, false, absl::Milliseconds(100));
  ClientOptions o;
  // The first call also opens the connections: 300 ms; then 50 ms.
  o.widen_after_initial = absl::Milliseconds(300);
  o.widen_after_min = absl::Milliseconds(50);
  o.hedge_after_first = 0.5;
  auto c = NewClient(o);
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<ledger::v1::OperationResults> r =
        c->Transfers({SomeTransfer()}, absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  absl::SleepFor(absl::Milliseconds(700));  // Replica 3 answered all five.
  const ClientStats stats = c->stats();
  EXPECT_GE(stats.widened_by_hedge, 4u);  // The first call may warm up.
  EXPECT_EQ(stats.widened_by_timer, 0u);
  EXPECT_EQ(stats.replicas_left_out, 0u);
  EXPECT_EQ(replicas_[3]->session_requests(), 5);
  // hedge_after_first = 0 (and a delay beyond the lag): every call waits
  // for the lagging replica.
  o.hedge_after_first = 0;
  o.widen_after_initial = o.widen_after_min = absl::Seconds(1);
  auto patient = NewClient(o);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(patient->Transfers({SomeTransfer()}, absl::Seconds(5)).ok());
  }
  EXPECT_EQ(patient->stats().widened_by_hedge, 0u);
  EXPECT_EQ(patient->stats().widened_by_timer, 0u);
  EXPECT_EQ(replicas_[3]->session_requests(), 8);
}

// The primary follows the view that f+1 matching replies name: at view 2
// the first replicas are 2 and (2 + 1 + 2) % 4 = 1.
TEST_F(ClientTest, FirstReplicasFollowTheViewTheRepliesName) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  for (auto& r : replicas_) r->SetView(2);
  TransfersToTheFirstReplicas(5);
  // The first went to 0 and 3 (view 0 assumed); the rest to 2 and 1.
  EXPECT_EQ(replicas_[0]->calls(), 1);
  EXPECT_EQ(replicas_[3]->calls(), 1);
  EXPECT_EQ(replicas_[2]->calls(), 4);
  EXPECT_EQ(replicas_[1]->calls(), 4);
}

// The backup among the first replicas is told that the primary has the
// request too (SubmitRequest.primary_view: it need not forward it), naming
// the view whose primary was asked; the primary is told nothing. On
// sessions and on unary calls alike.
TEST_F(ClientTest, FirstSendsTellTheBackupThatThePrimaryHasTheRequest) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  replicas_[0]->EnableSessions();
  replicas_[3]->EnableSessions();
  for (auto& r : replicas_) r->SetView(2);
  TransfersToTheFirstReplicas(5);
  // The first went to 0 and 3 (view 0 assumed, on sessions); the rest to
  // 2 and 1 (view 2, unary calls).
  EXPECT_EQ(replicas_[0]->hinted(), 0);
  EXPECT_EQ(replicas_[3]->hinted(), 1);
  EXPECT_EQ(replicas_[3]->last_hint(), 0u);
  EXPECT_EQ(replicas_[2]->hinted(), 0);
  EXPECT_EQ(replicas_[1]->hinted(), 4);
  EXPECT_EQ(replicas_[1]->last_hint(), 2u);
  EXPECT_GT(replicas_[1]->unary(), 0);
}

// A client whose primary fails leaves it out and asks every replica at
// once: no word then (a backup told the primary has the request would not
// forward it, and none would be left to).
TEST_F(ClientTest, NoWordAboutThePrimaryWhileItIsLeftOut) {
  StartCluster({B::kDown, B::kHonest, B::kHonest, B::kHonest});
  auto c = NewClient();
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ledger::v1::OperationResults> r =
        c->Transfers({SomeTransfer()});
    ASSERT_TRUE(r.ok()) << r.status();
  }
  // The first call went to 0 and 3 (3 with the word), the others to all.
  EXPECT_GE(replicas_[1]->calls(), 2);
  EXPECT_EQ(replicas_[3]->hinted(), 1);
  EXPECT_EQ(replicas_[1]->hinted() + replicas_[2]->hinted(), 0);
}

// The replicas asked when a call widens get no such word: the primary may
// not have the request (here the first backup is silent, and the others
// are asked after the widening delay).
TEST_F(ClientTest, WidenedSendsCarryNoWordAboutThePrimary) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  replicas_[3]->EnableSessions(0, /*silent=*/true);
  ClientOptions o;
  o.widen_after_initial = o.widen_after_min = absl::Milliseconds(50);
  auto c = NewClient(o);
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()}, absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(replicas_[3]->session_requests(), 1);  // Asked first, silent.
  // Both were asked; the call may end before the second one's arrives.
  EXPECT_GE(replicas_[1]->calls() + replicas_[2]->calls(), 1);
  EXPECT_EQ(replicas_[1]->hinted() + replicas_[2]->hinted(), 0);
}

// The primary refused the call for load and the backup asked with it was
// told the primary has the request: that backup would hold it (never
// forwarding it) for half a view-change timeout. On the refusal the client
// sends it a copy without the word, so that it forwards the request at
// once. Here the backup answers the held call only with the copy, and the
// primary, asked again once a reply came, answers from its stored reply:
// without the copy the call would end at its deadline.
TEST_F(ClientTest, ThePrimarysRefusalWithdrawsTheWordFromTheBackup) {
  StartCluster({B::kBusyOnce, B::kHonest, B::kHonest, B::kHonest});
  replicas_[3]->EnableSessions();
  replicas_[3]->HoldRequestsOnTheWord();
  auto c = NarrowClientFailingRefusals();
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()}, absl::Seconds(3));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(replicas_[3]->session_requests(), 2);
  EXPECT_EQ(replicas_[3]->hinted(), 0);  // The held copy never got through.
  EXPECT_EQ(replicas_[0]->calls(), 2);   // Refused, then asked again.
  EXPECT_EQ(replicas_[1]->calls() + replicas_[2]->calls(), 0);
  EXPECT_EQ(c->stats().words_withdrawn, 1u);
}

// The copy without the word is sent before the backup's answer to the
// first came, and that answer is a refusal: the copy, a new call there, may
// still be admitted and ordered, so the refusal must not end the call as
// refused (the application would be told RESOURCE_EXHAUSTED of a request
// that executes). Here the backup answers each call 100 ms after reading
// it, refusing the first and ordering the copy.
TEST_F(ClientTest, ARefusedCopyDoesNotEndTheCallWhileTheOtherIsOut) {
  StartCluster({B::kBusyOnce, B::kHonest, B::kHonest, B::kBusyOnce});
  replicas_[3]->EnableSessions(0, false, absl::Milliseconds(100));
  auto c = NarrowClientFailingRefusals();
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()}, absl::Seconds(3));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(replicas_[3]->calls(), 2);  // Refused, then the copy ordered.
  EXPECT_EQ(replicas_[3]->hinted(), 1);
  EXPECT_EQ(replicas_[0]->calls(), 2);
  EXPECT_EQ(c->stats().words_withdrawn, 1u);
}

// One faulty replica cannot lower the view the client follows: its view
// is not the lowest of f+1 matching replies that include a correct one.
TEST_F(ClientTest, OneReplicaCannotMoveTheFirstReplicasAlone) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  replicas_[3]->SetView(1);  // Claims view 1; the others are in view 0.
  TransfersToTheFirstReplicas(5);
  EXPECT_EQ(replicas_[0]->calls(), 5);
  EXPECT_EQ(replicas_[3]->calls(), 5);
}

// A stream that ends with a request unanswered: the request is sent again
// on a new stream, and the call completes.
TEST_F(ClientTest, SessionThatEndsMidRequestIsReopenedAndRetried) {
  StartCluster({B::kHonest, B::kHonest, B::kDown, B::kDown});
  replicas_[0]->EnableSessions(/*break_first=*/2);
  replicas_[1]->EnableSessions(/*break_first=*/1);
  auto c = NewClient();
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results(0).code(), ledger::v1::RESULT_CODE_OK);
  EXPECT_EQ(replicas_[0]->streams(), 3);
  EXPECT_EQ(replicas_[1]->streams(), 2);
  EXPECT_EQ(replicas_[0]->unary() + replicas_[1]->unary(), 0);
}

// A call whose requests are read from the streams and never answered ends
// at its deadline with an unknown outcome (the session also drops each
// request's wait at that deadline, which this does not observe).
TEST_F(ClientTest, UnansweredSessionRequestsEndAtTheDeadline) {
  StartCluster({B::kHonest, B::kHonest, B::kDown, B::kDown});
  replicas_[0]->EnableSessions(0, /*silent=*/true);
  replicas_[1]->EnableSessions(0, /*silent=*/true);
  auto c = NewClient();
  TransferEndsAtDeadline(*c);
  EXPECT_GE(replicas_[0]->session_requests(), 1);
}

// The SDK's timer thread wakes for a new item only when it would sleep past
// it: not for one due after the (cancelled) item it sleeps until, as a
// client's next request's timer mostly is; for an earlier one, at once.
TEST(TimerThreadTest, WakesForANewItemOnlyWhenItWouldSleepPastIt) {
  using Clock = std::chrono::steady_clock;
  TimerThread timers;
  const Clock::time_point t0 = Clock::now();
  const Timers::Id a = timers.At(t0 + std::chrono::hours(1), [] {});
  // Wait (bounded) until the thread sleeps until `a`.
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (timers.sleeping_until() != a.when && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(timers.sleeping_until(), a.when);
  const uint64_t woken = timers.woken();
  timers.At(t0 + std::chrono::hours(3), [] {});
  timers.Cancel(a);
  // Due after the time the thread sleeps until: no wake-up (it wakes at
  // a's time anyway and finds this one).
  timers.At(t0 + std::chrono::hours(2), [] {});
  EXPECT_EQ(timers.woken(), woken);
  // Due before it: woken, and run.
  absl::Notification ran;
  timers.At(Clock::now() + std::chrono::milliseconds(1),
            [&ran] { ran.Notify(); });
  EXPECT_LE(timers.woken(), woken + 1);
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

// Replicas without Session (UNIMPLEMENTED) get unary calls; the others
// keep their stream. Replica 0 is down, so every call needs an answer
// from replica 2 or 3.
TEST_F(ClientTest, ReplicasWithoutSessionsGetUnaryCalls) {
  StartCluster({B::kDown, B::kHonest, B::kHonest, B::kHonest});
  replicas_[1]->EnableSessions();
  auto c = NewClient();
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ledger::v1::OperationResults> r =
        c->Transfers({SomeTransfer()});
    ASSERT_TRUE(r.ok()) << r.status();
  }
  EXPECT_GE(replicas_[2]->unary() + replicas_[3]->unary(), 3);
  EXPECT_EQ(replicas_[2]->session_requests(), 0);
  EXPECT_EQ(replicas_[3]->session_requests(), 0);
  EXPECT_EQ(replicas_[1]->unary(), 0);
  EXPECT_LE(replicas_[1]->streams(), 1);
}

TEST_F(ClientTest, PermanentErrorFromFPlusOneIsReturned) {
  StartCluster({B::kRejectArgument, B::kRejectArgument, B::kDown, B::kDown});
  auto c = NewClient();
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(IsOutcomeUnknown(r.status()));
}

// By default a refusal for load is retried like any other failure.
TEST_F(ClientTest, RefusalsAreRetriedByDefault) {
  StartCluster({B::kBusy, B::kBusy, B::kBusy, B::kHonest});
  auto c = NewClient();
  TransferEndsAtDeadline(*c);
  EXPECT_GT(replicas_[0]->calls(), 1);
}

// A call that ended RESOURCE_EXHAUSTED for load, outcome unknown, saying
// `why`.
void ExpectRefusedForLoad(const absl::StatusOr<ledger::v1::OperationResults>& r,
                          absl::string_view why) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted)
      << r.status();
  EXPECT_TRUE(IsOutcomeUnknown(r.status()));
  EXPECT_TRUE(absl::StrContains(r.status().message(), why)) << r.status();
}

// With retry_refused off, a call that every replica asked refused (gRPC
// status or signed QUEUE_FULL), f+1 of them, fails at once with
// RESOURCE_EXHAUSTED, outcome unknown; the others are never asked (they
// would hold a request the client was told was refused), and no refusing
// replica is asked twice, but for the copy that takes back the client's
// word from the backup when the primary's refusal comes before the
// backup's answer (ThePrimarysRefusalWithdrawsTheWordFromTheBackup): which
// comes first is up to the threads' timing.
TEST_F(ClientTest, RefusedByEveryReplicaAskedFailsAtOnceWithoutRetry) {
  StartCluster({B::kBusy, B::kQueueFull, B::kBusy, B::kQueueFull});
  auto c = NewClient(/*retry_refused=*/false);
  ExpectRefusedForLoad(c->Transfers({SomeTransfer()}, absl::Seconds(30)),
                       "refused for load by 2 of 4 replicas (every replica "
                       "asked; none of them holds it)");
  // The f+1 first replicas, the primary once and the backup once (twice
  // with the copy); never the other two.
  const int copies = static_cast<int>(c->stats().words_withdrawn);
  EXPECT_LE(copies, 1);
  EXPECT_EQ(replicas_[0]->calls(), 1);
  int calls = 0, asked = 0;
  for (auto& replica : replicas_) {
    EXPECT_LE(replica->calls(), 1 + copies);
    calls += replica->calls();
    asked += replica->calls() > 0 ? 1 : 0;
  }
  EXPECT_EQ(asked, 2);
  EXPECT_EQ(calls, 2 + copies);
}

// One of the replicas asked admitted the call: it may be ordered through
// that one, so n-f refusals do not end it (the application would be told
// "refused" for a request that executes). Once that replica's reply says it
// executed, the ones that refused are asked again and answer from their
// stored replies: f+1 matching, the call succeeds.
TEST_F(ClientTest, RefusedByNMinusFWhenOneAdmittedAsksTheRefusersAgain) {
  StartCluster({B::kBusyOnce, B::kHonest, B::kBusyOnce, B::kBusyOnce});
  ClientOptions o;
  o.retry_refused = false;
  o.send_to_all = true;  // So that the one that admits it is asked.
  auto c = NewClient(o);
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()}, absl::Seconds(30));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(replicas_[1]->calls(), 1);
  int asked_again = 0;
  for (int i : {0, 2, 3}) {
    EXPECT_LE(replicas_[i]->calls(), 2);
    asked_again += replicas_[i]->calls() == 2 ? 1 : 0;
  }
  EXPECT_GE(asked_again, 1);
}

// The same while the others keep refusing: one reply is not f+1, so the
// call is not refused (it executed) and not answered; it ends at its
// deadline, outcome unknown, having asked the refusing replicas again.
TEST_F(ClientTest, OneReplyAndRefusalsEndAtTheDeadlineNotRefused) {
  StartCluster({B::kBusy, B::kHonest, B::kBusy, B::kQueueFull});
  ClientOptions o;
  o.retry_refused = false;
  o.send_to_all = true;
  o.retry_initial = absl::Milliseconds(20);
  auto c = NewClient(o);
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()}, absl::Seconds(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded)
      << r.status();
  EXPECT_TRUE(IsOutcomeUnknown(r.status()));
  EXPECT_GE(
      replicas_[0]->calls() + replicas_[2]->calls() + replicas_[3]->calls(), 4);
}

// One replica replied, two refused, and the fourth admitted the call and
// stays silent (faulty): waiting for it would end the call at its deadline.
// The refusers are asked again after a while and answer from their stored
// replies.
TEST_F(ClientTest, AdmittedButSilentDoesNotHoldTheCallOnceOneReplied) {
  StartCluster({B::kBusyOnce, B::kHonest, B::kHonest, B::kBusyOnce});
  replicas_[2]->EnableSessions(0, /*silent=*/true);
  ClientOptions o;
  o.retry_refused = false;
  o.send_to_all = true;
  o.widen_after_initial = o.widen_after_min = absl::Seconds(30);
  auto c = NewClient(o);
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()}, absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  // A refuser was asked again (under load a first call may not reach a
  // replica at all, so the sum over both says less than this).
  EXPECT_GE(std::max(replicas_[0]->calls(), replicas_[3]->calls()), 2)
      << "calls: " << replicas_[0]->calls() << ", " << replicas_[1]->calls()
      << ", " << replicas_[2]->calls() << ", " << replicas_[3]->calls();
}

// f refusals among the replicas asked, the others admitting: f+1 replicas
// can answer and the call succeeds.
TEST_F(ClientTest, RefusedByFewerStillSucceedsWithoutRetry) {
  StartCluster({B::kBusy, B::kHonest, B::kHonest, B::kQueueFull});
  ClientOptions o;
  o.retry_refused = false;
  o.send_to_all = true;
  auto c = NewClient(o);
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()});
  ASSERT_TRUE(r.ok()) << r.status();
  // The two honest answers may complete the call before the refusing
  // replica's handler has even run (or the call is cancelled first), so
  // it saw the request at most once: never a retry.
  EXPECT_LE(replicas_[0]->calls(), 1);
  EXPECT_LE(replicas_[3]->calls(), 1);
}

TEST_F(ClientTest, LocalValidationBeforeSending) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  auto c = NewClient();
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Submit(ledger::v1::OperationBatch());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(replicas_[0]->calls(), 0);
}

TEST_F(ClientTest, ReadOnlyQueryNeedsTwoFPlusOneMatching) {
  StartCluster({B::kWrongResult, B::kHonest, B::kHonest, B::kHonest});
  auto c = NewClient();
  absl::StatusOr<ledger::v1::ChainHead> head = c->GetHead();
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->height(), 42u);
}

TEST_F(ClientTest, ReadOnlyQueryWithoutQuorumFailsAsReadOnly) {
  // Only 2 honest answers: f+1, not 2f+1.
  StartCluster({B::kWrongResult, B::kDown, B::kHonest, B::kHonest});
  auto c = NewClient();
  ledger::v1::Query q;
  q.mutable_get_head();
  absl::StatusOr<ledger::v1::QueryReply> r =
      c->Query(q, absl::Milliseconds(300));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(ClientTest, ReadWithoutReadOnlyQuorumFallsBackToOrderedRequest_5_1) {
  // §5.1: no 2f+1 matching read-only answers -> retry as an ordered
  // request, accepted on f+1 matching replies (the liar cannot win).
  StartCluster({B::kWrongResult, B::kDown, B::kHonest, B::kHonest});
  auto c = NewClient();
  absl::StatusOr<ledger::v1::ChainHead> head = c->GetHead(absl::Seconds(2));
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->height(), 42u);
  EXPECT_GT(replicas_[2]->calls(), 0);  // It went through Submit.
}

// Four fake replicas answering read-only queries from real ledgers that
// committed the same block (a transfer 7 from account 1 to 2) in different
// views, so with different pre-prepares and certificates. `tamper` may
// change replica i's answer.
class LedgerClusterTest : public ClientTest {
 protected:
  using Tamper = std::function<void(uint32_t, ledger::v1::QueryReply*)>;
  void StartLedgers(const Tamper& tamper) {
    StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest}, &f_);
    const std::vector<pbft::v1::Envelope> requests = {f_.Request(
        1, test::Ops(
               {test::TransferOp(test::Id(7), test::Id(1), test::Id(2), 5)}))};
    for (uint32_t i = 0; i < 4; ++i) {
      envs_.emplace_back(leveldb::NewMemEnv(leveldb::Env::Default()));
      ledger::LedgerOptions o;
      o.env = envs_.back().get();
      ledgers_.push_back(*ledger::Ledger::Open(f_.cluster(), "/ledger", o));
      // Replica i committed the batch in view i, with 3 or 4 commits.
      ASSERT_TRUE(ledgers_.back()
                      ->ApplyBlock(f_.MakeBlock(1, requests, /*view=*/i, 0,
                                                /*commits=*/3 + i % 2))
                      .ok());
      ledger::Ledger* l = ledgers_.back().get();
      replicas_[i]->SetAnswer([l, i, tamper](const ledger::v1::Query& q,
                                             ledger::v1::QueryReply* r) {
        ASSERT_TRUE(l->Answer(q, r).ok());
        tamper(i, r);
      });
    }
  }

  test::BlockFactory f_;
  std::vector<std::unique_ptr<leveldb::Env>> envs_;
  std::vector<std::unique_ptr<ledger::Ledger>> ledgers_;
};

// Correct replicas answer a read-only GetBlock identically but for
// block_commit: the SDK completes on 2f+1 matching answers without the
// ordered fallback, skips a replica's invalid certificate and returns the
// block with one it verified (docs/api.md "Blocks").
TEST_F(LedgerClusterTest, ReadOnlyGetBlockMatchesAcrossViews) {
  StartLedgers([](uint32_t i, ledger::v1::QueryReply* r) {
    if (i == 0 && r->has_block_commit()) {  // A certificate that fails.
      r->mutable_block_commit()
          ->mutable_certificate()
          ->mutable_commits(0)
          ->mutable_signature()
          ->back() ^= 1;
    }
  });
  auto c = NewClient();
  absl::StatusOr<ledger::v1::Block> b = c->GetBlock(1, absl::Seconds(4));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(ledger::BlockHash(b->header()).ToBytes(),
            ledgers_[1]->head().block_hash());
  EXPECT_EQ(b->requests_size(), 1);
  EXPECT_NE(b->view(), 0u);  // Replica 0's forged certificate was skipped.
  EXPECT_TRUE(ledger::VerifyBlockCommit(
                  f_.cluster(), f_.cluster().MakeVerifier(), b->header(),
                  b->view(), b->pre_prepare(), b->certificate())
                  .ok());
  for (const auto& r : replicas_) EXPECT_EQ(r->calls(), 0);  // No fallback.
}

// A receipt fetched from the cluster: one lying replica (another outcome)
// is outvoted, the SDK verifies the certificate and the whole receipt, and
// the receipt's header is every replica's block 1.
TEST_F(LedgerClusterTest, GetReceiptFromTheCluster) {
  StartLedgers([](uint32_t i, ledger::v1::QueryReply* r) {
    if (i == 2 && r->has_receipt()) {
      r->mutable_receipt()->mutable_transfer()->set_result(
          ledger::v1::RESULT_CODE_INSUFFICIENT_FUNDS);
    }
  });
  auto c = NewClient();
  absl::StatusOr<ledger::v1::Receipt> receipt =
      c->GetReceipt(test::Id(7), absl::Seconds(4));
  ASSERT_TRUE(receipt.ok()) << receipt.status();
  EXPECT_EQ(receipt->transfer().result(), ledger::v1::RESULT_CODE_OK);
  EXPECT_GE(receipt->certificate().commits_size(), 3);
  absl::StatusOr<ledger::ReceiptSummary> s =
      ledger::VerifyReceipt(f_.cluster(), *receipt);
  ASSERT_TRUE(s.ok()) << s.status();
  for (const auto& l : ledgers_) {
    EXPECT_EQ(s->block_hash.ToBytes(), l->head().block_hash());
  }
  absl::StatusOr<ledger::v1::Receipt> none =
      c->GetReceipt(test::Id(99), absl::Seconds(4));
  EXPECT_TRUE(absl::IsNotFound(none.status())) << none.status();
}

TEST_F(ClientTest, RequestNumbersIncreaseAcrossClientRestart) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  // The fake echoes the request number as seq. Two client instances one
  // after the other (a restart) must keep the numbers strictly increasing,
  // or replicas would drop the new process's requests as old.
  std::vector<uint64_t> seen;
  for (int round = 0; round < 2; ++round) {
    auto c = NewClient();
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<ledger::v1::OperationResults> r =
          c->Transfers({SomeTransfer()});
      ASSERT_TRUE(r.ok()) << r.status();
      seen.push_back(r->seq());
    }
  }
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_LT(seen[i - 1], seen[i]) << "request " << i;
  }
}

TEST_F(ClientTest, StaleRejectionsFromFPlusOneRenumberTheRequest) {
  // Another process of this key ran ahead of our clock: f+1 signed stale
  // rejections name its last number; the SDK renumbers above it and the
  // request executes, with no "outcome unknown".
  StartCluster({B::kStaleFloor, B::kStaleFloor, B::kStaleFloor, B::kHonest});
  auto c = NewClient();
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()}, absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->seq(), kStaleFloor);  // The fake echoes the number.
  // The next request starts above it at once.
  r = c->Transfers({SomeTransfer()}, absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->seq(), kStaleFloor + 1);
}

TEST_F(ClientTest, OneLyingStaleRejectionCannotPushTheNumber) {
  StartCluster({B::kLyingStale, B::kHonest, B::kHonest, B::kHonest});
  auto c = NewClient();
  absl::StatusOr<ledger::v1::OperationResults> r =
      c->Transfers({SomeTransfer()}, absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(r->seq(), kStaleFloor);  // Still a wall-clock number.
}

TEST_F(ClientTest, PipelinedCallsOfOneClientAreNumberedInSendingOrder) {
  // Many async calls at once: each number is assigned when the call goes
  // out, one at a time, so no call can overtake another and turn stale.
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  auto c = NewClient();
  std::vector<std::future<absl::StatusOr<ledger::v1::OperationResults>>> fs;
  ledger::v1::OperationBatch b;
  *b.add_operations()->mutable_transfer() = SomeTransfer();
  for (int i = 0; i < 20; ++i) fs.push_back(c->SubmitFuture(b));
  uint64_t prev = 0;
  for (auto& f : fs) {
    absl::StatusOr<ledger::v1::OperationResults> r = f.get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_GT(r->seq(), prev);  // Completed in submission order.
    prev = r->seq();
  }
}

TEST_F(ClientTest, ManyThreadsShareOneClient) {
  StartCluster({B::kHonest, B::kHonest, B::kWrongResult, B::kHonest});
  auto c = NewClient();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        absl::StatusOr<ledger::v1::OperationResults> r =
            c->Transfers({SomeTransfer()});
        if (r.ok() && r->results(0).code() == ledger::v1::RESULT_CODE_OK)
          ok.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 200);
}

TEST_F(ClientTest, AsyncFutures) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  auto c = NewClient();
  ledger::v1::OperationBatch b;
  *b.add_operations()->mutable_transfer() = SomeTransfer();
  std::vector<std::future<absl::StatusOr<ledger::v1::OperationResults>>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(c->SubmitFuture(b));
  for (auto& f : fs) {
    absl::StatusOr<ledger::v1::OperationResults> r = f.get();
    ASSERT_TRUE(r.ok()) << r.status();
  }
}

TEST_F(ClientTest, UnregisteredKeyIsRefusedAtCreate) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  ASSERT_TRUE(
      WriteKeyFile(dir_.file("stranger.key"), crypto::SecretKey::Generate())
          .ok());
  ClientOptions o;
  o.config_path = dir_.file("cluster.json");
  o.key_path = dir_.file("stranger.key");
  absl::StatusOr<std::unique_ptr<Client>> c = Client::Create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated);
}

// With a throttle, a client the cluster keeps refusing soon refuses most
// calls itself: they come back RESOURCE_EXHAUSTED at once, "not sent" and
// not an unknown outcome, and no replica sees them.
TEST_F(ClientTest, ThrottleKeepsRefusedCallsFromTheReplicas) {
  StartCluster({B::kBusy, B::kBusy, B::kBusy, B::kBusy});
  auto throttle = LoadThrottle::Create({});
  ASSERT_TRUE(throttle.ok()) << throttle.status();
  const ClientOptions o = Throttled(*throttle);
  auto c = NewClient(o);
  ASSERT_NE(c, nullptr);
  constexpr int kCalls = 100;
  int not_sent = 0;
  for (int i = 0; i < kCalls; ++i) {
    absl::StatusOr<ledger::v1::OperationResults> r =
        c->Transfers({SomeTransfer()}, absl::Seconds(30));
    ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted)
        << r.status();
    if (absl::StrContains(r.status().message(), "not sent")) {
      EXPECT_FALSE(IsOutcomeUnknown(r.status())) << r.status();
      ++not_sent;
    } else {
      EXPECT_TRUE(IsOutcomeUnknown(r.status())) << r.status();
    }
  }
  // With none accepted the i-th call is refused with probability i/(i+1):
  // about H(100) = 5.2 are sent; more than 20 once in some 10^7 runs.
  EXPECT_GE(not_sent, kCalls - 20);
  EXPECT_EQ(c->stats().throttled, static_cast<uint64_t>(not_sent));
  EXPECT_EQ((*throttle)->refused(), static_cast<uint64_t>(not_sent));
  // Each call sent was refused by the f+1 replicas asked; none other came.
  int calls = 0;
  for (auto& replica : replicas_) calls += replica->calls();
  EXPECT_EQ(calls, 2 * (kCalls - not_sent));
}

// A cluster that answers: every call is counted accepted, none throttled
// (without the count of accepted calls the share would grow to 1).
TEST_F(ClientTest, ThrottleRefusesNothingWhileTheClusterAnswers) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  auto throttle = LoadThrottle::Create({.k = 1});
  ASSERT_TRUE(throttle.ok()) << throttle.status();
  const ClientOptions o = Throttled(*throttle);
  auto c = NewClient(o);
  ASSERT_NE(c, nullptr);
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<ledger::v1::OperationResults> r =
        c->Transfers({SomeTransfer()});
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
  }
  EXPECT_EQ(c->stats().throttled, 0U);
  EXPECT_EQ((*throttle)->RefusedShare(absl::Now()), 0.0);
}

// Many clients sharing one throttle, their calls in flight at once, a
// cluster that accepts them all: none is throttled.
TEST_F(ClientTest, SharedThrottleRefusesNothingWithCallsInFlight) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  auto throttle = LoadThrottle::Create({.k = 1.25});
  ASSERT_TRUE(throttle.ok()) << throttle.status();
  const ClientOptions o = Throttled(*throttle);
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(NewClient(o));
  std::vector<std::future<absl::StatusOr<ledger::v1::OperationResults>>> calls;
  ledger::v1::OperationBatch batch;
  *batch.add_operations()->mutable_transfer() = SomeTransfer();
  for (int round = 0; round < 10; ++round) {
    for (auto& c : clients) calls.push_back(c->SubmitFuture(batch));
  }
  for (auto& f : calls) {
    absl::StatusOr<ledger::v1::OperationResults> r = f.get();
    EXPECT_TRUE(r.ok()) << r.status();
  }
  uint64_t throttled = 0;
  for (auto& c : clients) throttled += c->stats().throttled;
  EXPECT_EQ(throttled, 0U);
  EXPECT_EQ((*throttle)->refused(), 0U);
}

TEST_F(ClientTest, ThrottleNeedsRetryRefusedOff) {
  StartCluster({B::kHonest, B::kHonest, B::kHonest, B::kHonest});
  ClientOptions o;
  o.config_path = dir_.file("cluster.json");
  o.key_path = dir_.file("client.key");
  o.throttle = *LoadThrottle::Create({});
  absl::StatusOr<std::unique_ptr<Client>> c = Client::Create(o);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(c.status().message(), "throttle"));
}

}  // namespace
}  // namespace pbft::client
