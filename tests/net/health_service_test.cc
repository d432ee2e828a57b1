// HealthService: grpc.health.v1 Check and Watch as probes and health
// checkers call them, its bounds, and its shutdown with calls open.
#include "replica/net/health_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace pbft::net {
namespace {

namespace hv1 = grpc::health::v1;

class HealthServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HealthService::Options o;
    o.poll = absl::Milliseconds(5);
    o.watchers_max = 2;
    o.request_bytes_max = 256;
    health_ = std::make_unique<HealthService>(o);
    health_->Set("", true);
    health_->Set("ready", false);
    grpc::ServerBuilder b;
    health_->Register(&b);
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    health_->Start();
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials());
    stub_ = hv1::Health::NewStub(channel_);
  }
  void TearDown() override { Stop(); }
  void Stop() {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(2));
    health_->Shutdown();
    server_.reset();
  }

  grpc::Status Check(const std::string& service, hv1::ServingStatus* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    hv1::CheckRequest req;
    req.set_service(service);
    hv1::CheckResponse resp;
    grpc::Status s = stub_->Check(&ctx, req, &resp);
    *out = resp.status();
    return s;
  }

  struct Watch {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<hv1::WatchResponse>> reader;
  };
  std::unique_ptr<Watch> StartWatch(const std::string& service) {
    auto w = std::make_unique<Watch>();
    w->ctx.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(10));
    hv1::WatchRequest req;
    req.set_service(service);
    w->reader = stub_->Watch(&w->ctx, req);
    return w;
  }

  std::unique_ptr<HealthService> health_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<hv1::Health::Stub> stub_;
};

TEST_F(HealthServiceTest, CheckAnswersTheStatusesSet) {
  hv1::ServingStatus st;
  ASSERT_TRUE(Check("", &st).ok());
  EXPECT_EQ(st, hv1::SERVING_STATUS_SERVING);
  ASSERT_TRUE(Check("ready", &st).ok());
  EXPECT_EQ(st, hv1::SERVING_STATUS_NOT_SERVING);
  health_->Set("ready", true);
  ASSERT_TRUE(Check("ready", &st).ok());
  EXPECT_EQ(st, hv1::SERVING_STATUS_SERVING);
  EXPECT_EQ(health_->checks(), 3u);
}

TEST_F(HealthServiceTest, CheckOfAnUnknownServiceIsNotFound) {
  hv1::ServingStatus st;
  grpc::Status s = Check("no-such-service", &st);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(health_->unknown_services(), 1u);
}

TEST_F(HealthServiceTest, AnOversizedRequestIsRefused) {
  hv1::ServingStatus st;
  grpc::Status s = Check(std::string(1000, 'x'), &st);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // And the service goes on answering.
  ASSERT_TRUE(Check("", &st).ok());
  EXPECT_EQ(st, hv1::SERVING_STATUS_SERVING);
}

TEST_F(HealthServiceTest, WatchSendsTheStatusThenEachChange) {
  auto w = StartWatch("ready");
  hv1::WatchResponse r;
  ASSERT_TRUE(w->reader->Read(&r));
  EXPECT_EQ(r.status(), hv1::SERVING_STATUS_NOT_SERVING);
  health_->Set("ready", true);
  ASSERT_TRUE(w->reader->Read(&r));
  EXPECT_EQ(r.status(), hv1::SERVING_STATUS_SERVING);
  // Setting the same status again sends nothing; a change does.
  health_->Set("ready", true);
  health_->Set("ready", false);
  ASSERT_TRUE(w->reader->Read(&r));
  EXPECT_EQ(r.status(), hv1::SERVING_STATUS_NOT_SERVING);
  w->ctx.TryCancel();
  while (w->reader->Read(&r)) {
  }
  EXPECT_EQ(w->reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(HealthServiceTest, WatchOfAnUnknownServiceSaysSoAndStaysOpen) {
  auto w = StartWatch("later");
  hv1::WatchResponse r;
  ASSERT_TRUE(w->reader->Read(&r));
  EXPECT_EQ(r.status(), hv1::SERVING_STATUS_SERVICE_UNKNOWN);
  health_->Set("later", true);
  ASSERT_TRUE(w->reader->Read(&r));
  EXPECT_EQ(r.status(), hv1::SERVING_STATUS_SERVING);
  w->ctx.TryCancel();
}

TEST_F(HealthServiceTest, WatchersBeyondTheBoundAreRefusedAndSlotsComeBack) {
  std::vector<std::unique_ptr<Watch>> open;
  hv1::WatchResponse r;
  for (int i = 0; i < 2; ++i) {
    open.push_back(StartWatch(""));
    ASSERT_TRUE(open.back()->reader->Read(&r));
  }
  auto extra = StartWatch("");
  EXPECT_FALSE(extra->reader->Read(&r));
  EXPECT_EQ(extra->reader->Finish().error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(health_->watchers_refused(), 1u);
  // A watcher that leaves frees its slot.
  open[0]->ctx.TryCancel();
  while (open[0]->reader->Read(&r)) {
  }
  (void)open[0]->reader->Finish();
  bool admitted = false;
  for (int tries = 0; tries < 200 && !admitted; ++tries) {
    auto again = StartWatch("");
    if (again->reader->Read(&r)) {
      admitted = true;
      again->ctx.TryCancel();
    } else {
      (void)again->reader->Finish();
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  EXPECT_TRUE(admitted);
}

TEST_F(HealthServiceTest, ShutdownEndsOpenWatches) {
  auto w = StartWatch("");
  hv1::WatchResponse r;
  ASSERT_TRUE(w->reader->Read(&r));
  Stop();  // Bounded: returns although the watch is open.
  while (w->reader->Read(&r)) {
  }
  EXPECT_FALSE(w->reader->Finish().ok());
}

TEST(HealthServiceNoStart, ShutdownWithoutStartReturns) {
  HealthService health(HealthService::Options{});
  grpc::ServerBuilder b;
  health.Register(&b);
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  auto server = b.BuildAndStart();
  ASSERT_NE(server, nullptr);
  server->Shutdown();
  health.Shutdown();
}

}  // namespace
}  // namespace pbft::net
