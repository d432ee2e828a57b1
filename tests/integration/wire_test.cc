// Wire-level checks against a running cluster (started by cluster_test.sh;
// CLUSTER_DIR names its directory). Requests are built and signed here by
// hand, so the replicas, not the SDK, must refuse what is wrong.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <random>

#include "client/client.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/keyfile.h"
#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "ledger/v1/service.grpc.pb.h"

namespace pbft::test {
namespace {

class WireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* dir = std::getenv("CLUSTER_DIR");
    if (dir == nullptr)
      GTEST_SKIP() << "CLUSTER_DIR not set (run by cluster_test.sh)";
    dir_ = dir;
    absl::StatusOr<Cluster> c = Cluster::LoadFile(dir_ + "/cluster.json");
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::make_unique<Cluster>(*std::move(c));
    absl::StatusOr<crypto::SecretKey> k =
        ReadKeyFile(dir_ + "/keys/client-1.key");
    ASSERT_TRUE(k.ok()) << k.status();
    signer_ = std::make_unique<EnvelopeSigner>(cluster_->cluster_id(), 1, *k);
    for (uint32_t i = 0; i < cluster_->n(); ++i) {
      stubs_.push_back(ledger::v1::LedgerService::NewStub(
          grpc::CreateChannel(cluster_->replica(ReplicaId(i)).address(),
                              grpc::InsecureChannelCredentials())));
    }
    std::random_device rd;
    id_base_ = (static_cast<uint64_t>(rd()) << 20) | 1;
  }

  pbft::v1::Envelope SignedTransfer(uint64_t request_number,
                                    uint64_t transfer_low, uint64_t amount) {
    ledger::v1::OperationBatch b;
    ledger::v1::Transfer* t = b.add_operations()->mutable_transfer();
    *t->mutable_id() = client::MakeId(7, transfer_low);
    *t->mutable_debit_account_id() = client::MakeId(0, 1);
    *t->mutable_credit_account_id() = client::MakeId(0, 2);
    t->set_amount(amount);
    t->set_ledger(1);
    pbft::v1::Request r;
    r.set_client_id(1);
    r.set_request_number(request_number);
    b.SerializeToString(r.mutable_operation());
    return signer_->SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, r);
  }

  grpc::Status Submit(uint32_t replica, const pbft::v1::Envelope& e,
                      ledger::v1::SubmitResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(15));
    ledger::v1::SubmitRequest req;
    *req.mutable_request() = e;
    return stubs_[replica]->Submit(&ctx, req, resp);
  }

  uint64_t NextRequestNumber() {
    // Above anything the SDK used for client 1 (it counts microseconds).
    return static_cast<uint64_t>(absl::ToUnixMicros(absl::Now())) +
           (++counter_);
  }

  std::string dir_;
  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<EnvelopeSigner> signer_;
  std::vector<std::unique_ptr<ledger::v1::LedgerService::Stub>> stubs_;
  uint64_t id_base_ = 0;
  uint64_t counter_ = 0;
};

TEST_F(WireTest, TamperedSignatureIsRefused) {
  pbft::v1::Envelope e = SignedTransfer(NextRequestNumber(), id_base_ + 1, 1);
  e.mutable_signature()->at(10) ^= 0x40;
  for (uint32_t r = 0; r < cluster_->n(); ++r) {
    ledger::v1::SubmitResponse resp;
    grpc::Status s = Submit(r, e, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << "replica " << r;
  }
  pbft::v1::Envelope body =
      SignedTransfer(NextRequestNumber(), id_base_ + 1, 1);
  body.set_payload(body.payload() +
                   "x");  // Tampered payload, original signature.
  ledger::v1::SubmitResponse resp;
  EXPECT_EQ(Submit(0, body, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(WireTest, UnregisteredClientKeyIsRefused) {
  EnvelopeSigner stranger(cluster_->cluster_id(), 99,
                          crypto::SecretKey::Generate());
  EnvelopeSigner impostor(cluster_->cluster_id(), 1,
                          crypto::SecretKey::Generate());
  pbft::v1::Request r;
  r.set_client_id(99);
  r.set_request_number(1);
  ledger::v1::SubmitResponse resp;
  grpc::Status s =
      Submit(1, stranger.SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, r), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("not a registered client"),
            std::string::npos);
  r.set_client_id(1);
  s = Submit(1, impostor.SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, r), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(WireTest, MalformedAndOversizeRequestsAreRefused) {
  ledger::v1::SubmitResponse resp;
  grpc::Status s = Submit(
      2, signer_->Sign(pbft::v1::MESSAGE_TYPE_REQUEST, "\x0a\xff\xff"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  pbft::v1::Request big;
  big.set_client_id(1);
  big.set_request_number(NextRequestNumber());
  big.set_operation(std::string(cluster_->protocol().batch_bytes_max + 1, 'x'));
  s = Submit(2, signer_->SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, big),
             &resp);
  EXPECT_TRUE(s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
              s.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
      << s.error_code() << " " << s.error_message();
}

TEST_F(WireTest, RetransmittedRequestGetsTheSameReplyAndExecutesOnce) {
  client::ClientOptions o;
  o.config_path = dir_ + "/cluster.json";
  o.key_path = dir_ + "/keys/client-2.key";
  absl::StatusOr<std::unique_ptr<client::Client>> reader =
      client::Client::Create(o);
  ASSERT_TRUE(reader.ok()) << reader.status();
  absl::StatusOr<ledger::v1::Account> before =
      (*reader)->GetAccount(client::MakeId(0, 2));
  ASSERT_TRUE(before.ok()) << before.status();

  const pbft::v1::Envelope e =
      SignedTransfer(NextRequestNumber(), id_base_ + 2, 3);
  std::vector<std::string> first(cluster_->n()), second(cluster_->n());
  for (int round = 0; round < 2; ++round) {
    for (uint32_t r = 0; r < cluster_->n(); ++r) {
      ledger::v1::SubmitResponse resp;
      grpc::Status s = Submit(r, e, &resp);
      ASSERT_TRUE(s.ok()) << "round " << round << " replica " << r << ": "
                          << s.error_message();
      pbft::v1::Reply reply;
      ASSERT_TRUE(reply.ParseFromString(resp.reply().payload()));
      (round == 0 ? first : second)[r] = reply.result();
    }
  }
  for (uint32_t r = 0; r < cluster_->n(); ++r) {
    EXPECT_EQ(first[r], first[0]) << "replicas disagree";
    EXPECT_EQ(second[r], first[0]) << "a retransmission got another result";
  }
  ledger::v1::OperationResults results;
  ASSERT_TRUE(results.ParseFromString(first[0]));
  EXPECT_EQ(results.results(0).code(), ledger::v1::RESULT_CODE_OK);
  // Executed once: the credit moved by 3, not 6. Read it linearizably.
  absl::StatusOr<ledger::v1::QueryReply> after = (*reader)->OrderedQuery([] {
    ledger::v1::Query q;
    *q.mutable_get_account()->mutable_id() = client::MakeId(0, 2);
    return q;
  }());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->account().balance(), before->balance() + 3);
}

}  // namespace
}  // namespace pbft::test
