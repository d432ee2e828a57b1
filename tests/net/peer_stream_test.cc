// The replica-to-replica streams over loopback: PeerSender to
// ReplicaService, reconnecting, many senders, a peer that never reads.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/envelope.h"
#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "ledger/v1/service.grpc.pb.h"
#include "replica/net/peer_sender.h"
#include "replica/net/replica_service.h"
#include "replica/net/verify_pool.h"
#include "tests/net/net_test_util.h"

namespace pbft::net {
namespace {

// Serves `svc` on `addr` (port 0: a free one), its port into `*port`.
std::unique_ptr<grpc::Server> StartServer(grpc::Service* svc,
                                          const std::string& addr, int* port) {
  grpc::ServerBuilder b;
  b.AddListeningPort(addr, grpc::InsecureServerCredentials(), port);
  b.RegisterService(svc);
  return b.BuildAndStart();
}

TEST(PeerStreamTest, EnvelopesCrossALoopbackStreamAndReconnect) {
  Keys k;
  Sink sink;
  VerifyPool pool(&k.verifier, 1, Limits(), Share(1000),
                  [&](Envelope e) { sink.Put(std::move(e)); });
  // The first stream verifies on its own thread, the second queues for
  // the pool's: both deliver.
  ReplicaServiceImpl svc(&pool, /*verify_on_stream=*/true);
  int port = 0;
  auto server = StartServer(&svc, "127.0.0.1:0", &port);
  ASSERT_GT(port, 0);
  const std::string addr = "127.0.0.1:" + std::to_string(port);

  PeerSenderOptions o;
  o.backoff_initial = absl::Milliseconds(10);
  PeerSender sender(1, addr, grpc::InsecureChannelCredentials(), o);
  pbft::v1::Commit c;
  for (int i = 0; i < 50; ++i) {
    c.set_seq(static_cast<uint64_t>(i));
    ASSERT_TRUE(
        sender.Send(k.s0.SignMessage(pbft::v1::MESSAGE_TYPE_COMMIT, c)));
  }
  ASSERT_TRUE(sink.WaitFor(50));
  EXPECT_TRUE(Eventually([&] { return sender.connected(); }));

  // The peer restarts on the same port: the sender reconnects by itself.
  server->Shutdown(std::chrono::system_clock::now());
  server.reset();
  ReplicaServiceImpl svc2(&pool, /*verify_on_stream=*/false);
  int port2 = 0;
  auto server2 = StartServer(&svc2, addr, &port2);
  ASSERT_EQ(port2, port);
  // Messages sent while the stream is broken may be lost (PBFT tolerates
  // loss); keep sending until some arrive over the new stream.
  EXPECT_TRUE(Eventually(
      [&] {
        sender.Send(k.s0.SignMessage(pbft::v1::MESSAGE_TYPE_COMMIT, c));
        return svc2.received() > 0;
      },
      absl::Seconds(20)));
  EXPECT_GE(sender.reconnects(), 1u);
  server2->Shutdown(std::chrono::system_clock::now());
}

// Send is thread-safe: from four threads at once, every message arrives,
// and each thread's in the order it sent them (one write in flight at a
// time, taken from the queue in order).
TEST(PeerStreamTest, SendsFromManyThreadsAllArriveInEachThreadsOrder) {
  Keys k;
  Sink sink;
  VerifyPool pool(&k.verifier, 1, Limits(), Share(10000),
                  [&](Envelope e) { sink.Put(std::move(e)); });
  ReplicaServiceImpl svc(&pool, /*verify_on_stream=*/true);
  int port = 0;
  auto server = StartServer(&svc, "127.0.0.1:0", &port);
  ASSERT_GT(port, 0);
  constexpr int kThreads = 4;
  constexpr int kEach = 300;
  // Signed beforehand, so that the threads only send.
  std::vector<std::vector<Envelope>> signed_by(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    pbft::v1::Commit c;
    for (int i = 0; i < kEach; ++i) {
      c.set_view(static_cast<uint64_t>(t));
      c.set_seq(static_cast<uint64_t>(i));
      signed_by[t].push_back(
          k.s0.SignMessage(pbft::v1::MESSAGE_TYPE_COMMIT, c));
    }
  }
  PeerSender sender(1, "127.0.0.1:" + std::to_string(port),
                    grpc::InsecureChannelCredentials(), PeerSenderOptions());
  ASSERT_TRUE(Eventually([&] { return sender.connected(); }));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (Envelope& e : signed_by[t]) sender.Send(std::move(e));
    });
  }
  for (std::thread& th : threads) th.join();
  ASSERT_TRUE(sink.WaitFor(kThreads * kEach));
  EXPECT_EQ(sender.sent(), static_cast<uint64_t>(kThreads * kEach));
  EXPECT_EQ(sender.dropped(), 0u);
  std::vector<uint64_t> next(kThreads, 0);
  for (const Envelope& e : sink.Take()) {
    pbft::v1::Commit c;
    ASSERT_TRUE(c.ParseFromString(e.payload()));
    ASSERT_LT(c.view(), static_cast<uint64_t>(kThreads));
    EXPECT_EQ(c.seq(), next[c.view()]) << "thread " << c.view();
    next[c.view()] = c.seq() + 1;
  }
  server->Shutdown(std::chrono::system_clock::now());
}

// A peer that accepts the stream and never reads it: its flow-control
// window fills and the sender's write never completes; still every Send
// returns at once (it only queues; the sender's own thread is the one
// stuck), the excess is dropped and counted, and the sender stops
// (cancelling the stuck write).
class SilentReplicaService final : public ledger::v1::ReplicaService::Service {
 public:
  grpc::Status Stream(grpc::ServerContext* ctx,
                      grpc::ServerReaderWriter<ledger::v1::StreamResponse,
                                               ledger::v1::StreamRequest>*
                      /*stream*/) override {
    opened_.fetch_add(1);
    while (!ctx->IsCancelled() && !stop_.HasBeenNotified()) {
      stop_.WaitForNotificationWithTimeout(absl::Milliseconds(20));
    }
    return grpc::Status::OK;
  }
  int opened() const { return opened_.load(); }
  void Stop() { stop_.Notify(); }

 private:
  std::atomic<int> opened_{0};
  absl::Notification stop_;
};

TEST(PeerStreamTest, APeerThatNeverReadsNeitherBlocksNorBloatsTheSender) {
  SilentReplicaService svc;
  int port = 0;
  auto server = StartServer(&svc, "127.0.0.1:0", &port);
  ASSERT_GT(port, 0);
  PeerSenderOptions o;
  o.queue_max = 16;
  o.batch_envelopes_max = 4;
  {
    PeerSender sender(1, "127.0.0.1:" + std::to_string(port),
                      grpc::InsecureChannelCredentials(), o);
    ASSERT_TRUE(Eventually([&] { return svc.opened() > 0; }));
    // 64 KiB payloads: gRPC's window takes a few, the rest wait.
    Envelope e;
    e.set_type(pbft::v1::MESSAGE_TYPE_PRE_PREPARE);
    e.set_payload(std::string(64 << 10, 'x'));
    constexpr int kSends = 2000;
    for (int i = 0; i < kSends; ++i) ASSERT_TRUE(sender.Send(e));
    // All but what gRPC's windows took and the 16 still queued were
    // dropped (the windows hold a few MB at most).
    EXPECT_GE(sender.dropped(), static_cast<uint64_t>(kSends) - 500);
    EXPECT_LT(sender.sent() + sender.dropped(), static_cast<uint64_t>(kSends));
  }  // The destructor returns with a write still stuck in gRPC.
  svc.Stop();
  server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace pbft::net
