// The replica transport over loopback: verification pool (the peer streams
// are in peer_stream_test.cc), and the client API server's admission,
// waiting and limits.
#include <grpcpp/grpcpp.h>

#include <array>
#include <atomic>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/envelope.h"
#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "ledger/v1/service.grpc.pb.h"
#include "replica/net/admission.h"
#include "replica/net/client_service.h"
#include "replica/net/peer_sender.h"
#include "replica/net/replica_service.h"
#include "replica/net/verify_pool.h"
#include "tests/net/net_test_util.h"

namespace pbft::net {
namespace {

// Two envelopes that verify (a vote, a PRE-PREPARE carrying a request) and
// four that do not: a forged sender, a tampered payload, a forged request
// inside a PRE-PREPARE, an undecodable PRE-PREPARE.
struct Mixed {
  explicit Mixed(const Keys& k) {
    pbft::v1::Prepare p;
    p.set_view(1);
    good = k.s0.SignMessage(pbft::v1::MESSAGE_TYPE_PREPARE, p);
    forged = good;
    forged.set_sender(1);  // Claims replica 1 with replica 0's signature.
    tampered = good;
    tampered.set_payload("x");
    pbft::v1::PrePrepare pp;
    good_pp = k.s0.SignMessage(pbft::v1::MESSAGE_TYPE_PRE_PREPARE, pp);
    *good_pp.add_batch() = k.Request(1);
    Envelope bad_request = k.Request(2);
    bad_request.set_signature(std::string(64, 'z'));
    forged_request_pp = good_pp;
    *forged_request_pp.add_batch() = bad_request;
    garbage_pp = k.s0.Sign(pbft::v1::MESSAGE_TYPE_PRE_PREPARE, "\xff\xff\xff");
  }
  Envelope good, forged, tampered, good_pp, forged_request_pp, garbage_pp;
};

TEST(VerifyPoolTest, DeliversOnlyVerifiedEnvelopes) {
  Keys k;
  Sink sink;
  {
    VerifyPool pool(&k.verifier, 2, Limits(), Share(100),
                    [&](Envelope e) { sink.Put(std::move(e)); });
    const Mixed m(k);
    for (const Envelope& e : {m.good, m.forged, m.tampered, m.good_pp,
                              m.forged_request_pp, m.garbage_pp}) {
      EXPECT_TRUE(pool.Submit(e));
    }
    ASSERT_TRUE(sink.WaitFor(2));
    ASSERT_TRUE(Eventually([&] {
      return pool.dropped(DropReason::kBadEnvelope) +
                 pool.dropped(DropReason::kBadNestedRequest) +
                 pool.dropped(DropReason::kMalformedPayload) ==
             4;
    }));
    EXPECT_EQ(pool.dropped(DropReason::kBadEnvelope), 2u);
    EXPECT_EQ(pool.dropped(DropReason::kBadNestedRequest), 1u);
    EXPECT_EQ(pool.dropped(DropReason::kMalformedPayload), 1u);
  }
  EXPECT_EQ(sink.size(), 2u);
}

// VerifyHere (no pool threads): the same checks, on the caller's thread,
// decided before it returns.
TEST(VerifyPoolTest, VerifyHereChecksOnTheCallersThread) {
  Keys k;
  std::vector<std::thread::id> delivered_on;
  VerifyPool pool(&k.verifier, 0, Limits(), Share(100), [&](Envelope) {
    delivered_on.push_back(std::this_thread::get_id());
  });
  const Mixed m(k);
  pbft::v1::Prepare p;
  p.set_view(1);
  Envelope padded =
      k.s0.Sign(pbft::v1::MESSAGE_TYPE_PREPARE,
                p.SerializeAsString() + std::string("\x7a\x80\x80\x01", 4) +
                    std::string(1 << 14, 'p'));

  EXPECT_TRUE(pool.VerifyHere(m.good));
  EXPECT_FALSE(pool.VerifyHere(m.forged));
  EXPECT_FALSE(pool.VerifyHere(m.tampered));
  EXPECT_TRUE(pool.VerifyHere(m.good_pp));
  EXPECT_FALSE(pool.VerifyHere(m.forged_request_pp));
  EXPECT_FALSE(pool.VerifyHere(m.garbage_pp));
  EXPECT_FALSE(pool.VerifyHere(padded));
  ASSERT_EQ(delivered_on.size(), 2u);
  for (const std::thread::id& id : delivered_on) {
    EXPECT_EQ(id, std::this_thread::get_id());
  }
  EXPECT_EQ(pool.dropped(DropReason::kBadEnvelope), 2u);
  EXPECT_EQ(pool.dropped(DropReason::kBadNestedRequest), 1u);
  EXPECT_EQ(pool.dropped(DropReason::kMalformedPayload), 1u);
  EXPECT_EQ(pool.dropped_from(0, DropReason::kOversizeForType), 1u);
  EXPECT_EQ(pool.verified(), 2u);
}

// A sender's envelopes are checked one at a time whatever the number of
// streams they arrive on; other senders are not held up.
TEST(VerifyPoolTest, VerifyHereHoldsASendersSecondStreamNotOthers) {
  Keys k;
  absl::Notification release;
  std::atomic<int> delivered_from_1{0};
  VerifyPool pool(&k.verifier, 0, Limits(), Share(100), [&](Envelope e) {
    if (e.sender() == 1) {
      release.WaitForNotification();
      delivered_from_1++;
    }
  });
  pbft::v1::Prepare p;
  p.set_view(1);
  const Envelope from_1 = k.s1.SignMessage(pbft::v1::MESSAGE_TYPE_PREPARE, p);
  std::atomic<int> started{0};
  std::thread first([&] {
    started++;
    pool.VerifyHere(from_1);
  });
  ASSERT_TRUE(Eventually([&] { return pool.verified() == 1; }));
  std::atomic<bool> second_done{false};
  std::thread second([&] {
    started++;
    pool.VerifyHere(from_1);
    second_done = true;
  });
  ASSERT_TRUE(Eventually([&] { return started.load() == 2; }));
  // Replica 0 is not behind replica 1's lock.
  EXPECT_TRUE(
      pool.VerifyHere(k.s0.SignMessage(pbft::v1::MESSAGE_TYPE_PREPARE, p)));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(second_done.load());
  EXPECT_EQ(pool.verified(), 2u);  // The first of replica 1 and replica 0's.
  release.Notify();
  first.join();
  second.join();
  EXPECT_EQ(delivered_from_1.load(), 2);
  EXPECT_EQ(pool.verified(), 3u);
}

TEST(VerifyPoolTest, FullQueueRefusesAndCounts) {
  Keys k;
  absl::Notification release;
  VerifyPool pool(&k.verifier, 1, Limits(), Share(2),
                  [&](Envelope) { release.WaitForNotification(); });
  pbft::v1::Prepare p;
  Envelope e = k.s0.SignMessage(pbft::v1::MESSAGE_TYPE_PREPARE, p);
  int refused = 0;
  for (int i = 0; i < 10; ++i) refused += pool.Submit(e) ? 0 : 1;
  EXPECT_GE(refused, 7);  // One in the worker, two queued.
  EXPECT_EQ(pool.dropped(DropReason::kQueueFull),
            static_cast<uint64_t>(refused));
  release.Notify();
}

// One peer flooding fills only its own share: another peer's votes still
// get through, and the refusals are counted against the flooder.
TEST(VerifyPoolTest, AFloodingPeerDoesNotCrowdOutAnother) {
  Keys k;
  absl::Notification release;
  Sink sink;
  VerifyPool pool(&k.verifier, 1, Limits(), Share(4), [&](Envelope e) {
    release.WaitForNotification();
    sink.Put(std::move(e));
  });
  pbft::v1::Prepare p;
  p.set_view(1);
  const Envelope flood = k.s1.SignMessage(pbft::v1::MESSAGE_TYPE_PREPARE, p);
  int refused = 0;
  for (int i = 0; i < 1000; ++i) refused += pool.Submit(flood) ? 0 : 1;
  EXPECT_GE(refused, 995);
  EXPECT_TRUE(pool.Submit(k.s0.SignMessage(pbft::v1::MESSAGE_TYPE_PREPARE, p)));
  EXPECT_EQ(pool.dropped_from(1, DropReason::kQueueFull),
            static_cast<uint64_t>(refused));
  EXPECT_EQ(pool.dropped_from(0, DropReason::kQueueFull), 0u);
  release.Notify();
  EXPECT_TRUE(sink.WaitFor(static_cast<size_t>(1000 - refused + 1)));
}

// A validly signed vote padded with an unknown field never reaches the
// core: over its type's limit it is refused before verification, and a
// small pad is refused as non-canonical after it.
TEST(VerifyPoolTest, PaddedVotesAreRefusedAndCountedBySender) {
  Keys k;
  Sink sink;
  VerifyPool pool(&k.verifier, 1, Limits(), Share(100),
                  [&](Envelope e) { sink.Put(std::move(e)); });
  pbft::v1::Commit c;
  c.set_view(1);
  c.set_seq(2);
  c.set_batch_digest(std::string(32, 'd'));
  const std::string vote = c.SerializeAsString();
  const std::string big_pad = std::string("\x7a\x80\x80\x01", 4) +
                              std::string(1 << 14, 'p');  // Field 15.
  const std::string small_pad = std::string("\x7a\x02pp", 4);
  EXPECT_FALSE(
      pool.Submit(k.s1.Sign(pbft::v1::MESSAGE_TYPE_COMMIT, vote + big_pad)));
  EXPECT_TRUE(
      pool.Submit(k.s1.Sign(pbft::v1::MESSAGE_TYPE_COMMIT, vote + small_pad)));
  EXPECT_TRUE(pool.Submit(k.s1.Sign(pbft::v1::MESSAGE_TYPE_COMMIT, vote)));
  ASSERT_TRUE(sink.WaitFor(1));
  ASSERT_TRUE(Eventually(
      [&] { return pool.dropped_from(1, DropReason::kNonCanonical) == 1; }));
  EXPECT_EQ(pool.dropped_from(1, DropReason::kOversizeForType), 1u);
  EXPECT_EQ(sink.size(), 1u);
}

// Votes far outside the window serve the core only as a sign that it lags:
// a flood of them is refused before any signature check, beyond a small
// allowance per sender; votes inside the window always pass.
TEST(VerifyPoolTest, OutOfWindowFloodIsThrottledBeforeVerification) {
  Keys k;
  Sink sink;
  VerifyPool pool(&k.verifier, 1, Limits(), Share(100000),
                  [&](Envelope e) { sink.Put(std::move(e)); });
  pool.SetWindow(100, 356);
  pbft::v1::Prepare p;
  p.set_view(0);
  p.set_seq(1'000'000);
  int refused = 0;
  for (int i = 0; i < 2000; ++i) {
    p.set_seq(1'000'000 + static_cast<uint64_t>(i));
    refused += pool.Submit(k.s1.SignMessage(pbft::v1::MESSAGE_TYPE_PREPARE, p))
                   ? 0
                   : 1;
  }
  EXPECT_GE(refused, 1700);
  EXPECT_EQ(pool.dropped_from(1, DropReason::kOutOfWindowThrottled),
            static_cast<uint64_t>(refused));
  int in_window = 0;
  for (uint64_t s = 101; s <= 356; ++s) {
    p.set_seq(s);
    in_window +=
        pool.Submit(k.s1.SignMessage(pbft::v1::MESSAGE_TYPE_PREPARE, p)) ? 1
                                                                         : 0;
  }
  EXPECT_EQ(in_window, 256);
  EXPECT_TRUE(sink.WaitFor(static_cast<size_t>(2000 - refused + 256)));
}

TEST(VerifyPoolTest, RequestVerifiedOnceIsCached) {
  Keys k;
  VerifyPool pool(&k.verifier, 1, Limits(), Share(10), [](Envelope) {});
  Envelope r = k.Request(5);
  EXPECT_TRUE(pool.VerifyNow(r).ok());
  EXPECT_TRUE(pool.VerifyNow(r).ok());
  EXPECT_EQ(pool.cache_hits(), 1u);
  Envelope bad = r;
  bad.set_signature(std::string(64, 'z'));
  EXPECT_EQ(pool.VerifyNow(bad).code(), absl::StatusCode::kUnauthenticated);
}

// A query answered only after the service shut down (the answer comes
// from another thread, e.g. a read still in progress while the replica
// stops) is dropped: no operation is started on the closed completion
// queue, which gRPC would abort on.
TEST(ClientServiceShutdownTest, AnAnswerAfterShutdownIsDropped) {
  Keys k;
  VerifyPool pool(&k.verifier, 1, Limits(), Share(100), [](Envelope) {});
  absl::Mutex mu;
  std::function<void(absl::StatusOr<Envelope>)> held;
  ClientService::Handlers h;
  h.submit = [](const Envelope&, const pbft::v1::Request&,
                std::optional<uint64_t>) { return absl::OkStatus(); };
  h.query = [&](const Envelope&, const pbft::v1::Request&,
                std::function<void(absl::StatusOr<Envelope>)> done) {
    absl::MutexLock l(&mu);
    held = std::move(done);
  };
  h.status = [] { return ledger::v1::StatusResponse(); };
  ClientService service(&pool, std::move(h), 10, 1024);
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  service.Register(&b);
  auto server = b.BuildAndStart();
  service.Start(1);
  auto stub = ledger::v1::LedgerService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  ledger::v1::QueryRequest req;
  *req.mutable_query() = k.Request(1, /*read_only=*/true);
  ledger::v1::QueryResponse resp;
  grpc::CompletionQueue cq;
  auto call = stub->AsyncQuery(&ctx, req, &cq);
  grpc::Status status;
  call->Finish(&resp, &status, reinterpret_cast<void*>(1));
  ASSERT_TRUE(Eventually([&] {
    absl::MutexLock l(&mu);
    return held != nullptr;
  }));
  server->Shutdown(std::chrono::system_clock::now());
  service.Shutdown();
  pbft::v1::Reply reply;
  held(k.s0.SignMessage(pbft::v1::MESSAGE_TYPE_QUERY_REPLY, reply));
  void* tag;
  bool ok;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_FALSE(status.ok());  // Cancelled by the shutdown, never answered.
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

AdmissionGate::Options GateOptions(absl::Duration wait_max,
                                   size_t waiting_min) {
  AdmissionGate::Options o;
  o.wait_max = wait_max;
  o.waiting_min = waiting_min;
  o.window = absl::Seconds(1);
  return o;
}

// The expected wait is waiting / the answer rate over the last window; from
// half the bound a growing share of calls is refused, all of them at it.
TEST(AdmissionGateTest, RefusesAShareGrowingToAllAtTheBound) {
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  AdmissionGate gate(GateOptions(absl::Milliseconds(200), 8), t0);
  // Nothing answered yet: the first calls of a burst are let in, no more.
  EXPECT_TRUE(gate.Check(t0, 7, 0.0).admit);
  AdmissionGate::Verdict v = gate.Check(t0 + absl::Milliseconds(1), 8, 0.99);
  EXPECT_FALSE(v.admit);
  EXPECT_EQ(v.expected_wait, absl::InfiniteDuration());
  EXPECT_EQ(v.refused_share, 1.0);
  // 100 answered over the first second: 100/s, so 20 waiting is 200 ms.
  for (int i = 0; i < 100; ++i) {
    gate.Answered(t0 + absl::Milliseconds(10 * i), 1);
  }
  const absl::Time t1 = t0 + absl::Seconds(1);
  EXPECT_NEAR(gate.Rate(t1), 100.0, 1.0);
  // 10 waiting: 100 ms, half the bound, nothing refused.
  v = gate.Check(t1, 10, 0.0);
  EXPECT_TRUE(v.admit) << v.expected_wait;
  EXPECT_NEAR(absl::ToDoubleMilliseconds(v.expected_wait), 100.0, 2.0);
  EXPECT_NEAR(v.refused_share, 0.0, 0.02);
  // 15 waiting: 150 ms, half of the calls: those drawn below one half.
  v = gate.Check(t1, 15, 0.45);
  EXPECT_FALSE(v.admit);
  EXPECT_NEAR(v.refused_share, 0.5, 0.02);
  EXPECT_TRUE(gate.Check(t1, 15, 0.55).admit);
  // 20 waiting: 200 ms, the bound: every call refused.
  v = gate.Check(t1, 20, 0.999);
  EXPECT_FALSE(v.admit) << v.expected_wait;
  EXPECT_NEAR(absl::ToDoubleMilliseconds(v.expected_wait), 200.0, 3.0);
  EXPECT_FALSE(gate.Check(t1, 25, 0.999).admit);
}

TEST(AdmissionGateTest, OnlyTheLastWindowCounts) {
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  AdmissionGate gate(GateOptions(absl::Milliseconds(100), 1), t0);
  gate.Answered(t0 + absl::Milliseconds(100), 1000);
  EXPECT_TRUE(gate.Check(t0 + absl::Milliseconds(500), 50, 0.0).admit);
  // Two seconds later those answers are out of the window: a stall.
  const absl::Time later = t0 + absl::Seconds(3);
  EXPECT_EQ(gate.Rate(later), 0.0);
  EXPECT_FALSE(gate.Check(later, 1, 0.999).admit);
  EXPECT_TRUE(gate.Check(later, 0, 0.0).admit);
  // A clock that steps back neither crashes nor counts twice.
  gate.Answered(t0, 10);
  EXPECT_GE(gate.Rate(later), 0.0);
}

TEST(AdmissionGateTest, UnboundedWaitNeverRefuses) {
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  AdmissionGate gate(AdmissionGate::Options{}, t0);
  EXPECT_TRUE(gate.Check(t0 + absl::Seconds(5), 1'000'000, 0.0).admit);
}

// What the metrics show (ledger_expected_wait_seconds,
// ledger_admission_refused_share): the wait and share a call would meet,
// without one; with admission off the wait is still measured.
TEST(AdmissionGateTest, EstimateGivesTheWaitAndShareWithoutACall) {
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  AdmissionGate on(GateOptions(absl::Milliseconds(200), 8), t0);
  AdmissionGate off(AdmissionGate::Options{}, t0);
  // Nothing waiting: no wait, whatever the rate.
  EXPECT_EQ(on.Estimate(t0, 0).expected_wait, absl::ZeroDuration());
  // Waiting, nothing answered yet: an unbounded wait; with admission on,
  // under the count let in then, nothing is refused; at it, everything.
  EXPECT_EQ(on.Estimate(t0, 7).expected_wait, absl::InfiniteDuration());
  EXPECT_EQ(on.Estimate(t0, 7).refused_share, 0.0);
  EXPECT_EQ(on.Estimate(t0, 8).refused_share, 1.0);
  EXPECT_EQ(off.Estimate(t0, 8).refused_share, 0.0);
  for (int i = 0; i < 100; ++i) {
    on.Answered(t0 + absl::Milliseconds(10 * i), 1);
    off.Answered(t0 + absl::Milliseconds(10 * i), 1);
  }
  const absl::Time t1 = t0 + absl::Seconds(1);
  // 15 waiting at 100/s: 150 ms, where half of the calls are refused.
  for (AdmissionGate* g : {&on, &off}) {
    AdmissionGate::Verdict v = g->Estimate(t1, 15);
    EXPECT_TRUE(v.admit);
    EXPECT_NEAR(absl::ToDoubleMilliseconds(v.expected_wait), 150.0, 3.0);
  }
  EXPECT_NEAR(on.Estimate(t1, 15).refused_share, 0.5, 0.02);
  EXPECT_EQ(off.Estimate(t1, 15).refused_share, 0.0);
}

// A call's draw depends on its client, its number and the second only, is
// in [0, 1) and spread evenly over it.
TEST(AdmissionGateTest, ACallsDrawIsTheSameEverywhereAndEvenlySpread) {
  const absl::Time t = absl::FromUnixSeconds(1'700'000'000);
  EXPECT_EQ(AdmissionGate::CallDraw(9, 5, t),
            AdmissionGate::CallDraw(9, 5, t + absl::Milliseconds(999)));
  EXPECT_NE(AdmissionGate::CallDraw(9, 5, t),
            AdmissionGate::CallDraw(9, 5, t + absl::Seconds(1)));
  EXPECT_NE(AdmissionGate::CallDraw(9, 5, t), AdmissionGate::CallDraw(9, 6, t));
  EXPECT_NE(AdmissionGate::CallDraw(9, 5, t), AdmissionGate::CallDraw(8, 5, t));
  std::array<int, 10> tenths{};
  for (uint64_t client = 1; client <= 100; ++client) {
    for (uint64_t number = 1; number <= 100; ++number) {
      const double d = AdmissionGate::CallDraw(client, number, t);
      ASSERT_GE(d, 0.0);
      ASSERT_LT(d, 1.0);
      ++tenths[static_cast<size_t>(d * 10)];
    }
  }
  for (int n : tenths) EXPECT_NEAR(n, 1000, 150);
}

// Two replicas whose waits differ a little (one just under the bound, one
// just over it) refuse nearly the same calls: every call the less loaded
// one refuses the other refuses too, and they disagree on about the
// difference of their shares. With one line at the bound they would
// disagree on every call: the one over it refuses all, the other none.
TEST(AdmissionGateTest, ReplicasWithCloseWaitsRefuseTheSameCalls) {
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  AdmissionGate under(GateOptions(absl::Milliseconds(100), 1), t0);
  AdmissionGate over(GateOptions(absl::Milliseconds(100), 1), t0);
  // Both answer 1,000 calls a second; 95 and 105 waiting: 95 ms and 105 ms.
  under.Answered(t0, 1000);
  over.Answered(t0, 1000);
  const absl::Time t1 = t0 + absl::Seconds(1) - absl::Milliseconds(1);
  int refused_under = 0, refused_over = 0, refused_only_under = 0;
  for (uint64_t client = 1; client <= 100; ++client) {
    for (uint64_t number = 1; number <= 100; ++number) {
      const double draw = AdmissionGate::CallDraw(client, number, t1);
      const bool u = !under.Check(t1, 95, draw).admit;
      const bool o = !over.Check(t1, 105, draw).admit;
      refused_under += u;
      refused_over += o;
      refused_only_under += u && !o;
    }
  }
  EXPECT_EQ(refused_only_under, 0);
  EXPECT_EQ(refused_over, 10000);
  // 95 ms of a 50-100 ms ramp: 90% refused; they disagree on about 10%.
  EXPECT_NEAR(refused_under, 9000, 300);
  EXPECT_LE(refused_over - refused_under, 1300);
}

// The SDK sends a call to the primary and one backup, so the primary holds
// three times the calls a backup does while both wait the same time. Both
// must refuse the same calls: a count (64 calls let in whatever the wait)
// would let the backup, holding 30, admit everything the primary refuses.
TEST(AdmissionGateTest, ReplicasHoldingDifferentSharesRefuseTheSameCalls) {
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  AdmissionGate primary(GateOptions(absl::Milliseconds(150), 64), t0);
  AdmissionGate backup(GateOptions(absl::Milliseconds(150), 64), t0);
  for (int i = 0; i < 100; ++i) {  // 900/s and 300/s over one second.
    primary.Answered(t0 + absl::Milliseconds(10 * i), 9);
    backup.Answered(t0 + absl::Milliseconds(10 * i), 3);
  }
  const absl::Time t1 = t0 + absl::Seconds(1);
  int refused = 0, differ = 0;
  for (uint64_t number = 1; number <= 10000; ++number) {
    const double draw = AdmissionGate::CallDraw(7, number, t1);
    // 90 and 30 waiting: 100 ms at both, a third of the 75-150 ms ramp.
    const bool p = !primary.Check(t1, 90, draw).admit;
    const bool b = !backup.Check(t1, 30, draw).admit;
    refused += p;
    differ += p != b;
  }
  EXPECT_NEAR(refused, 3333, 300);
  EXPECT_EQ(differ, 0);  // The same wait: the same calls.
}

// After an idle spell the rate is that of the answers since it ended, not
// those answers spread over the whole window.
TEST(AdmissionGateTest, AfterAnIdleSpellTheFirstAnswersGiveTheRate) {
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  AdmissionGate gate(GateOptions(absl::Milliseconds(100), 64), t0);
  gate.Answered(t0, 1000);
  const absl::Time burst = t0 + absl::Seconds(5) + absl::Milliseconds(250);
  gate.Answered(burst + absl::Milliseconds(10), 10);
  const absl::Time now = burst + absl::Milliseconds(20);
  EXPECT_NEAR(gate.Rate(now), 500.0, 5.0);  // 10 over the 20 ms since.
  // 20 waiting at 500/s: 40 ms, under half the bound.
  const AdmissionGate::Verdict v = gate.Check(now, 20, 0.0);
  EXPECT_TRUE(v.admit) << v.expected_wait;
}

class ClientServiceTest : public ::testing::Test {
 protected:
  void Start(size_t pending_max) {
    ClientService::Limits limits;
    limits.pending_max = pending_max;
    limits.client_pending_max = pending_max;
    limits.request_bytes_max = 1024;
    limits.request_operations_max = SIZE_MAX;
    Start(limits);
  }
  void Start(const ClientService::Limits& limits) {
    pool_ = std::make_unique<VerifyPool>(&k_.verifier, 1, Limits(), Share(100),
                                         [](Envelope) {});
    ClientService::Handlers h;
    h.submit = [this](const Envelope&, const pbft::v1::Request& r,
                      std::optional<uint64_t> primary_view) {
      if (r.request_number() == 666) {
        return absl::ResourceExhaustedError("request queue full");
      }
      absl::MutexLock l(&mu_);
      submitted_.push_back(r.request_number());
      primary_views_[r.request_number()] = primary_view;
      if (r.request_number() >= kHeld && r.request_number() < kHeld + 10) {
        // Holds this completion-queue thread until Release().
        ++held_;
        mu_.Await(absl::Condition(&released_));
        --held_;
      }
      return absl::OkStatus();
    };
    h.query = [this](const Envelope&, const pbft::v1::Request& r,
                     std::function<void(absl::StatusOr<Envelope>)> done) {
      {
        absl::MutexLock l(&mu_);
        ++queries_;
      }
      pbft::v1::Reply reply;
      reply.set_request_number(r.request_number());
      // Queries numbered from kBigAnswer get a 16 KiB answer.
      if (r.request_number() >= kBigAnswer) {
        reply.set_result(std::string(16 << 10, 'a'));
      }
      done(k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_QUERY_REPLY, reply));
    };
    h.status = [] {
      ledger::v1::StatusResponse s;
      s.set_view(3);
      return s;
    };
    service_ =
        std::make_unique<ClientService>(pool_.get(), std::move(h), limits);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    service_->Register(&b);
    server_ = b.BuildAndStart();
    service_->Start(2);
    stub_ = ledger::v1::LedgerService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                            grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    Release();
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    if (service_) service_->Shutdown();
  }
  // Submits of request numbers kHeld..kHeld+9 hold the thread that handles
  // them until Release().
  static constexpr uint64_t kHeld = 700;
  static constexpr uint64_t kBigAnswer = 1'000'000;
  void Release() {
    absl::MutexLock l(&mu_);
    released_ = true;
  }
  // Admission on (100 ms, refusing from 4 waiting calls) and Submits 1-4
  // of client 9 waiting for their replies, each adding one to `*waited_ok`
  // when it gets one; the caller joins `*waiting`. False unless all four
  // reached the owner and wait.
  bool StartWithFourWaiting(std::vector<std::thread>* waiting,
                            std::atomic<int>* waited_ok) {
    ClientService::Limits limits;
    limits.request_bytes_max = 1024;
    limits.admission_wait_max = absl::Milliseconds(100);
    limits.admission_waiting_min = 4;
    Start(limits);
    for (uint64_t i = 1; i <= 4; ++i) {
      waiting->emplace_back([this, waited_ok, i] {
        ledger::v1::SubmitResponse resp;
        if (Submit(k_.Request(i), &resp).ok()) waited_ok->fetch_add(1);
      });
    }
    return WaitSubmitted(4) &&
           Eventually([this] { return service_->pending() == 4; });
  }
  // A forged copy of request `number` (client 9) gets past the wait check
  // only to its signature check: UNAUTHENTICATED, no refusal for the wait.
  void ExpectForgedStopsAtSignatureCheck(uint64_t number) {
    const uint64_t refused = service_->refused_for_wait();
    Envelope forged = k_.Request(number);
    forged.set_signature(std::string(64, 'q'));
    ledger::v1::SubmitResponse resp;
    EXPECT_EQ(Submit(forged, &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(service_->refused_for_wait(), refused);
  }
  int queries() {
    absl::MutexLock l(&mu_);
    return queries_;
  }
  int held() {
    absl::MutexLock l(&mu_);
    return held_;
  }
  grpc::Status Submit(const Envelope& e, ledger::v1::SubmitResponse* resp,
                      absl::Duration deadline = absl::Seconds(10)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    ledger::v1::SubmitRequest req;
    *req.mutable_request() = e;
    return stub_->Submit(&ctx, req, resp);
  }
  // Holds both threads that check and hand over requests, each with a
  // Submit (kHeld, kHeld + 1) sent on a thread added to `holders` with
  // `deadline`. False if they were not both held in time.
  bool HoldBothWorkers(std::vector<std::thread>* holders,
                       absl::Duration deadline) {
    for (uint64_t i = 0; i < 2; ++i) {
      holders->emplace_back([this, i, deadline] {
        ledger::v1::SubmitResponse resp;
        Submit(k_.Request(kHeld + i), &resp, deadline);
      });
      if (!Eventually([&] { return held() == static_cast<int>(i + 1); })) {
        return false;
      }
    }
    return true;
  }
  bool WaitSubmitted(size_t n) {
    return Eventually([&] {
      absl::MutexLock l(&mu_);
      return submitted_.size() >= n;
    });
  }

  Keys k_;
  std::unique_ptr<VerifyPool> pool_;
  std::unique_ptr<ClientService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<ledger::v1::LedgerService::Stub> stub_;
  absl::Mutex mu_;
  std::vector<uint64_t> submitted_ ABSL_GUARDED_BY(mu_);
  // Request number -> the client's primary_view hint, as handed over.
  std::map<uint64_t, std::optional<uint64_t>> primary_views_
      ABSL_GUARDED_BY(mu_);
  int queries_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  int held_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(ClientServiceTest, SubmitWaitsForItsReply) {
  Start(100);
  ledger::v1::SubmitResponse resp;
  grpc::Status status;
  std::thread t([&] { status = Submit(k_.Request(7), &resp); });
  ASSERT_TRUE(WaitSubmitted(1));
  // Wait until the call is registered, then deliver.
  ASSERT_TRUE(Eventually([&] { return service_->pending() == 1; }));
  pbft::v1::Reply reply;
  reply.set_request_number(7);
  EXPECT_EQ(service_->DeliverReply(
                9, 8, k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply)),
            0);
  EXPECT_EQ(service_->DeliverReply(
                9, 7, k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply)),
            1);
  t.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  pbft::v1::Reply got;
  ASSERT_TRUE(got.ParseFromString(resp.reply().payload()));
  EXPECT_EQ(got.request_number(), 7u);
  // The finished call leaves the pending set once its done notification
  // has run on the server.
  EXPECT_TRUE(Eventually([&] { return service_->pending() == 0; }));
}

TEST_F(ClientServiceTest, BadInputGetsClearErrors) {
  Start(100);
  ledger::v1::SubmitResponse resp;
  Envelope forged = k_.Request(1);
  forged.set_signature(std::string(64, 'q'));
  grpc::Status s = Submit(forged, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  Envelope stranger =
      EnvelopeSigner("net-test", 12, crypto::SecretKey::Generate())
          .Sign(pbft::v1::MESSAGE_TYPE_REQUEST, "x");
  s = Submit(stranger, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("not a registered client"),
            std::string::npos);

  s = Submit(k_.sc.Sign(pbft::v1::MESSAGE_TYPE_REQUEST, "\xff\x01garbage"),
             &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("request.payload"), std::string::npos);

  pbft::v1::Request other;
  other.set_client_id(10);  // Not the signer.
  other.set_request_number(1);
  s = Submit(k_.sc.SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, other), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("request.client_id"), std::string::npos);

  pbft::v1::Request big;
  big.set_client_id(9);
  big.set_request_number(2);
  big.set_operation(std::string(2000, 'o'));
  s = Submit(k_.sc.SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, big), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  s = Submit(k_.Request(3, /*read_only=*/true), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  s = Submit(k_.Request(666), &resp);  // The owner refuses (queue full).
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(service_->pending(), 0u);
  EXPECT_GE(service_->rejected(absl::StatusCode::kUnauthenticated), 2u);
  EXPECT_GE(service_->rejected(absl::StatusCode::kInvalidArgument), 3u);
}

TEST_F(ClientServiceTest, PendingLimitAndCancellation) {
  Start(2);
  std::vector<std::thread> waiting;
  std::atomic<int> deadline_exceeded{0};
  for (uint64_t i = 1; i <= 2; ++i) {
    waiting.emplace_back([&, i] {
      ledger::v1::SubmitResponse resp;
      if (Submit(k_.Request(i), &resp, absl::Milliseconds(500)).error_code() ==
          grpc::StatusCode::DEADLINE_EXCEEDED) {
        deadline_exceeded.fetch_add(1);
      }
    });
  }
  ASSERT_TRUE(WaitSubmitted(2));
  ASSERT_TRUE(Eventually([&] { return service_->pending() == 2; }));
  ledger::v1::SubmitResponse resp;
  grpc::Status s = Submit(k_.Request(3), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  for (auto& t : waiting) t.join();
  EXPECT_EQ(deadline_exceeded.load(), 2);
  // The clients gave up: their calls are no longer pending.
  EXPECT_TRUE(Eventually([&] { return service_->pending() == 0; }));
}

// Clients that give up at once (tiny deadlines, as the SDK cancels the
// calls it no longer needs once it has its quorum): the done notification
// then runs on one completion-queue thread while the arrival is handled on
// another. Every call must be freed exactly once and the service must keep
// serving (the sanitizer build turns a use-after-free into a failure; the
// normal build crashed now and then with "pure virtual method called").
TEST_F(ClientServiceTest, CallsCancelledWhileArrivingAreFreedOnce) {
  Start(1000);
  std::vector<std::thread> clients;
  std::atomic<int> finished{0};
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 150; ++i) {
        const uint64_t number = 1000 * (t + 1) + i;
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() +
                                            absl::Microseconds(200 * (i % 5))));
        if (i % 2 == 0) {
          ledger::v1::QueryRequest q;
          *q.mutable_query() = k_.Request(number, /*read_only=*/true);
          ledger::v1::QueryResponse r;
          stub_->Query(&ctx, q, &r);
        } else {
          ledger::v1::SubmitRequest q;
          *q.mutable_request() = k_.Request(number);
          ledger::v1::SubmitResponse r;
          stub_->Submit(&ctx, q, &r);
        }
        finished.fetch_add(1);
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(finished.load(), 600);
  // Every submit gave up (nothing delivers replies here): none is left
  // pending, and the service still answers.
  EXPECT_TRUE(Eventually([&] { return service_->pending() == 0; }));
  grpc::ClientContext ctx;
  ledger::v1::QueryRequest q;
  *q.mutable_query() = k_.Request(99, /*read_only=*/true);
  ledger::v1::QueryResponse qr;
  EXPECT_TRUE(stub_->Query(&ctx, q, &qr).ok());
}

// Calls that arrive while the threads that check requests are busy wait
// (in the intake, or in gRPC if the completion-queue threads lag); a
// client may give up on them there (the SDK cancels what it no longer
// needs). If gRPC answered such a wait with "no call" (as at shutdown) and
// the service took it for its shutdown, it would stop asking, and every
// later call would wait in gRPC, unanswered, for good.
TEST_F(ClientServiceTest, CallsGivenUpWhileWaitingInGrpcDoNotStopIntake) {
  Start(1000);
  // Both threads that check and hand over requests held by a Submit each.
  std::vector<std::thread> holders;
  ASSERT_TRUE(HoldBothWorkers(&holders, absl::Seconds(3)));
  // Calls that give up while nobody takes them.
  std::vector<std::thread> quitters;
  std::atomic<int> gave_up{0};
  for (int t = 0; t < 4; ++t) {
    quitters.emplace_back([this, t, &gave_up] {
      for (int i = 0; i < 10; ++i) {
        ledger::v1::SubmitResponse resp;
        if (Submit(k_.Request(2000 + 100 * t + i), &resp,
                   absl::Milliseconds(20))
                .error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
          gave_up.fetch_add(1);
        }
        grpc::ClientContext ctx;
        ctx.set_deadline(
            absl::ToChronoTime(absl::Now() + absl::Milliseconds(20)));
        ledger::v1::QueryRequest q;
        *q.mutable_query() = k_.Request(3000 + 100 * t + i, /*read_only=*/true);
        ledger::v1::QueryResponse qr;
        if (stub_->Query(&ctx, q, &qr).error_code() ==
            grpc::StatusCode::DEADLINE_EXCEEDED) {
          gave_up.fetch_add(1);
        }
      }
    });
  }
  for (auto& q : quitters) q.join();
  // None was taken while both threads were held: every one gave up.
  EXPECT_EQ(gave_up.load(), 80);
  Release();
  for (auto& h : holders) h.join();
  // The service still takes Submits and Queries.
  ASSERT_TRUE(Eventually([&] { return service_->pending() == 0; }));
  ledger::v1::SubmitResponse resp;
  EXPECT_EQ(Submit(k_.Request(666), &resp, absl::Seconds(5)).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  ledger::v1::QueryRequest q;
  *q.mutable_query() = k_.Request(99, /*read_only=*/true);
  ledger::v1::QueryResponse qr;
  EXPECT_TRUE(stub_->Query(&ctx, q, &qr).ok());
}

// Calls arriving faster than the replica checks them are refused at once
// with RESOURCE_EXHAUSTED, beyond a bounded intake, instead of piling up
// unanswered inside gRPC while the threads that check them are busy.
TEST_F(ClientServiceTest, CallsBeyondTheIntakeAreRefusedAtOnceWhileChecksLag) {
  ClientService::Limits limits;
  limits.pending_max = 1000;
  limits.client_pending_max = 1000;
  limits.request_bytes_max = 1024;
  limits.intake_per_source_max = 8;
  Start(limits);
  // Both threads that check and hand over requests held by a Submit each.
  std::vector<std::thread> holders;
  ASSERT_TRUE(HoldBothWorkers(&holders, absl::Seconds(20)));
  constexpr int kCalls = 64;
  std::atomic<int> refused{0};
  std::atomic<int> other{0};
  std::vector<std::thread> senders;
  for (int i = 0; i < kCalls; ++i) {
    senders.emplace_back([this, i, &refused, &other] {
      ledger::v1::SubmitResponse resp;
      const grpc::Status s =
          Submit(k_.Request(2000 + i), &resp, absl::Seconds(20));
      if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
          absl::StrContains(s.error_message(), "signature check")) {
        refused.fetch_add(1);
      } else {
        other.fetch_add(1);
      }
    });
  }
  // All but the intake's share are answered while both threads are held.
  const bool answered = Eventually([&] { return refused.load() >= kCalls - 8; },
                                   absl::Seconds(5));
  EXPECT_TRUE(answered) << refused.load() << " refused while held";
  EXPECT_EQ(held(), 2);
  EXPECT_GE(service_->rejected(absl::StatusCode::kResourceExhausted),
            static_cast<uint64_t>(refused.load()));
  Release();
  // What waited in the intake is handed over once the threads are free;
  // its replies end those calls.
  const size_t waiting = static_cast<size_t>(kCalls - refused.load());
  EXPECT_TRUE(WaitSubmitted(2 + waiting));
  std::vector<uint64_t> numbers = {kHeld, kHeld + 1};
  for (int i = 0; i < kCalls; ++i) numbers.push_back(2000 + i);
  for (uint64_t number : numbers) {
    pbft::v1::Reply reply;
    reply.set_request_number(number);
    service_->DeliverReply(
        9, number, k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply));
  }
  for (auto& t : senders) t.join();
  for (auto& h : holders) h.join();
  EXPECT_EQ(refused.load() + other.load(), kCalls);
  EXPECT_LE(other.load(), 8);
}

TEST_F(ClientServiceTest, QueryAndStatus) {
  Start(10);
  grpc::ClientContext ctx;
  ledger::v1::QueryRequest q;
  *q.mutable_query() = k_.Request(11, /*read_only=*/true);
  ledger::v1::QueryResponse qr;
  ASSERT_TRUE(stub_->Query(&ctx, q, &qr).ok());
  EXPECT_EQ(qr.reply().type(), pbft::v1::MESSAGE_TYPE_QUERY_REPLY);

  grpc::ClientContext ctx2;
  ledger::v1::StatusResponse st;
  ASSERT_TRUE(stub_->Status(&ctx2, ledger::v1::StatusRequest(), &st).ok());
  EXPECT_EQ(st.view(), 3u);
}

using SessionStream = grpc::ClientReaderWriter<ledger::v1::SessionRequest,
                                               ledger::v1::SessionResponse>;

bool WriteSession(SessionStream* stream, uint64_t id, const Envelope& e) {
  ledger::v1::SessionRequest r;
  r.set_id(id);
  *r.mutable_request() = e;
  return stream->Write(r);
}

// Each request on a Session gets exactly one answer carrying its id: the
// reply, a query answer, or the status a unary call would have failed with;
// the stream stays open after a refusal.
TEST_F(ClientServiceTest, SessionAnswersEachRequestWithItsId) {
  Start(100);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  auto stream = stub_->Session(&ctx);
  Envelope forged = k_.Request(3);
  forged.set_signature(std::string(64, 'q'));
  ASSERT_TRUE(WriteSession(stream.get(), 1, k_.Request(11)));
  ASSERT_TRUE(WriteSession(stream.get(), 2, k_.Request(12, true)));
  ASSERT_TRUE(WriteSession(stream.get(), 3, forged));
  ASSERT_TRUE(WriteSession(stream.get(), 4, k_.Request(666)));
  ASSERT_TRUE(Eventually([&] { return service_->pending() == 1; }));
  pbft::v1::Reply reply;
  reply.set_request_number(11);
  EXPECT_EQ(service_->DeliverReply(
                9, 11, k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply)),
            1);
  std::map<uint64_t, ledger::v1::SessionResponse> got;
  ledger::v1::SessionResponse r;
  while (got.size() < 4 && stream->Read(&r)) got[r.id()] = r;
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[1].status_code(), 0);
  EXPECT_EQ(got[1].reply().type(), pbft::v1::MESSAGE_TYPE_REPLY);
  EXPECT_EQ(got[2].status_code(), 0);
  EXPECT_EQ(got[2].reply().type(), pbft::v1::MESSAGE_TYPE_QUERY_REPLY);
  EXPECT_EQ(got[3].status_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_FALSE(got[3].status_message().empty());
  EXPECT_EQ(got[4].status_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // The refusals did not end the stream: it still carries requests.
  ASSERT_TRUE(WriteSession(stream.get(), 5, k_.Request(13, true)));
  ASSERT_TRUE(stream->Read(&r));
  EXPECT_EQ(r.id(), 5u);
  EXPECT_EQ(service_->pending(), 0u);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

// The client's primary_view hint reaches the handler as sent, on a Submit
// and on a Session, and is absent where the client sent none.
TEST_F(ClientServiceTest, ThePrimaryViewHintIsHandedOverAsSent) {
  Start(100);
  std::vector<std::thread> calls;
  for (uint64_t n : {21, 22}) {
    calls.emplace_back([this, n] {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
      ledger::v1::SubmitRequest req;
      *req.mutable_request() = k_.Request(n);
      if (n == 21) req.set_primary_view(7);
      ledger::v1::SubmitResponse resp;
      stub_->Submit(&ctx, req, &resp);  // Answered below.
    });
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  auto stream = stub_->Session(&ctx);
  ledger::v1::SessionRequest r;
  r.set_id(1);
  *r.mutable_request() = k_.Request(23);
  r.set_primary_view(0);  // Set, to view 0: not the same as unset.
  ASSERT_TRUE(stream->Write(r));
  ASSERT_TRUE(WriteSession(stream.get(), 2, k_.Request(24)));
  ASSERT_TRUE(WaitSubmitted(4));
  {
    absl::MutexLock l(&mu_);
    EXPECT_EQ(primary_views_[21], std::optional<uint64_t>(7));
    EXPECT_EQ(primary_views_[22], std::nullopt);
    EXPECT_EQ(primary_views_[23], std::optional<uint64_t>(0));
    EXPECT_EQ(primary_views_[24], std::nullopt);
  }
  for (uint64_t n : {21, 22}) {
    pbft::v1::Reply reply;
    reply.set_request_number(n);
    ASSERT_TRUE(Eventually([&] {
      return service_->DeliverReply(
                 9, n,
                 k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply)) == 1;
    }));
  }
  ctx.TryCancel();
  for (std::thread& t : calls) t.join();
}

// A Session whose client goes away takes its waiting requests out of the
// pending set (their shares come back).
TEST_F(ClientServiceTest, SessionEndingFreesItsWaitingRequests) {
  Start(100);
  grpc::ClientContext ctx;
  auto stream = stub_->Session(&ctx);
  for (uint64_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(WriteSession(stream.get(), i + 1, k_.Request(20 + i)));
  }
  ASSERT_TRUE(Eventually([&] { return service_->pending() == 5; }));
  ctx.TryCancel();
  EXPECT_TRUE(Eventually([&] { return service_->pending() == 0; }));
  // Its replies find no one.
  pbft::v1::Reply reply;
  EXPECT_EQ(service_->DeliverReply(
                9, 20, k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply)),
            0);
}

// The replica reads at most session_window requests of one stream ahead
// of their answers; it reads on once answers have gone out.
TEST_F(ClientServiceTest, SessionIsNotReadBeyondItsWindow) {
  ClientService::Limits limits;
  limits.request_operations_max = SIZE_MAX;
  limits.session_window = 4;
  Start(limits);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  auto stream = stub_->Session(&ctx);
  std::thread writer([&] {
    for (uint64_t i = 0; i < 10; ++i) {
      if (!WriteSession(stream.get(), i + 1, k_.Request(30 + i))) return;
    }
  });
  ASSERT_TRUE(Eventually([&] { return service_->pending() == 4; }));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(service_->pending(), 4u);  // Not read further.
  pbft::v1::Reply reply;
  EXPECT_EQ(service_->DeliverReply(
                9, 30, k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply)),
            1);
  ledger::v1::SessionResponse r;
  ASSERT_TRUE(stream->Read(&r));
  EXPECT_EQ(r.id(), 1u);
  // One answer written: one more request read.
  EXPECT_TRUE(Eventually([&] { return service_->pending() == 4; }));
  EXPECT_TRUE(Eventually([&] {
    absl::MutexLock l(&mu_);
    return submitted_.size() == 5;
  }));
  ctx.TryCancel();
  writer.join();
}

// A client that sends on a Session but never reads its answers does not
// make the replica hold them: once the unwritten answers reach half of
// session_answer_bytes_max the replica stops reading; what the client
// writes waits in the transport, under gRPC's flow control.
TEST_F(ClientServiceTest, SessionWhoseAnswersAreNotReadIsNotRead) {
  ClientService::Limits limits;
  limits.request_operations_max = SIZE_MAX;
  limits.session_window = 100000;
  limits.session_answer_bytes_max = 64 << 10;
  Start(limits);
  grpc::ClientContext ctx;
  auto stream = stub_->Session(&ctx);
  std::atomic<int> sent{0};
  std::thread writer([&] {
    while (sent < 20000 && WriteSession(stream.get(), sent + 1,
                                        k_.Request(kBigAnswer + sent, true))) {
      ++sent;
    }
  });
  // The answers handled stop growing while the writer is still held back.
  int before = -1;
  ASSERT_TRUE(Eventually(
      [&] {
        const int now = queries();
        const bool still = now == before && now > 0;
        before = now;
        absl::SleepFor(absl::Milliseconds(300));
        return still;
      },
      absl::Seconds(30)));
  // Requests were there to read (the client's writes went out, into the
  // transport's buffers) but were not read.
  ASSERT_TRUE(Eventually([&] { return sent.load() > queries(); }));
  EXPECT_LT(queries(), sent.load());
  std::cout << "answered " << queries() << " of " << sent.load() << "\n";
  ctx.TryCancel();
  writer.join();
}

// Beyond session_answer_bytes_max of unwritten answers, with a write
// waiting session_stall for the client to read, the replica cancels the
// stream (counted as RESOURCE_EXHAUSTED) rather than hold more.
TEST_F(ClientServiceTest, SessionHoldingTooManyUnreadAnswersIsCancelled) {
  ClientService::Limits limits;
  limits.request_operations_max = SIZE_MAX;
  limits.session_window = 100000;
  limits.session_answer_bytes_max = 40 << 10;  // Two or three answers.
  limits.session_stall = absl::ZeroDuration();
  Start(limits);
  const uint64_t refused0 =
      service_->rejected(absl::StatusCode::kResourceExhausted);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto stream = stub_->Session(&ctx);
  // Written at once, never read: the answers (16 KiB each) fill the
  // transport and then the stream's queue.
  for (uint64_t i = 0; i < 400; ++i) {
    if (!WriteSession(stream.get(), i + 1, k_.Request(kBigAnswer + i, true))) {
      break;
    }
  }
  EXPECT_TRUE(Eventually([&] {
    return service_->rejected(absl::StatusCode::kResourceExhausted) > refused0;
  }));
  // (A client that reads nothing may not see the cancellation until it
  // reads or gives up: the replica's side is what is checked here.)
  ctx.TryCancel();
}

}  // namespace
}  // namespace pbft::net

namespace pbft::net {
namespace {

// Calls that would wait longer than admission_wait_max behind those already
// waiting are refused at once, before their signature check, and never
// reach the owner; queries are not ordered and still pass; the calls that
// wait are not disturbed.
TEST_F(ClientServiceTest, OrderedCallsThatWouldWaitTooLongAreRefusedAtOnce) {
  // Four calls wait; none is answered, so no rate backs a fifth.
  std::vector<std::thread> waiting;
  std::atomic<int> waited_ok{0};
  ASSERT_TRUE(StartWithFourWaiting(&waiting, &waited_ok));
  ledger::v1::SubmitResponse resp;
  const absl::Time sent = absl::Now();
  grpc::Status s = Submit(k_.Request(5), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "admission_wait_ms"))
      << s.error_message();
  EXPECT_LT(absl::Now() - sent, absl::Seconds(5));  // Answered, not held.
  // Refused before its check: a forged one gets the same answer.
  Envelope forged = k_.Request(6);
  forged.set_signature(std::string(64, 'q'));
  s = Submit(forged, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(service_->rejected(absl::StatusCode::kUnauthenticated), 0u);
  EXPECT_EQ(service_->refused_for_wait(), 2u);
  EXPECT_GE(service_->rejected(absl::StatusCode::kResourceExhausted), 2u);
  {
    absl::MutexLock l(&mu_);
    EXPECT_EQ(submitted_.size(), 4u);  // Neither reached the owner.
  }
  // A query is not ordered: it is answered.
  grpc::ClientContext qctx;
  ledger::v1::QueryRequest q;
  *q.mutable_query() = k_.Request(7, /*read_only=*/true);
  ledger::v1::QueryResponse qr;
  EXPECT_TRUE(stub_->Query(&qctx, q, &qr).ok());
  // The same on a Session: its ordered request is refused, its query not.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    auto stream = stub_->Session(&ctx);
    ASSERT_TRUE(WriteSession(stream.get(), 1, k_.Request(8)));
    ASSERT_TRUE(WriteSession(stream.get(), 2, k_.Request(9, true)));
    std::map<uint64_t, ledger::v1::SessionResponse> got;
    ledger::v1::SessionResponse r;
    while (got.size() < 2 && stream->Read(&r)) got[r.id()] = r;
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[1].status_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_TRUE(absl::StrContains(got[1].status_message(), "calls wait"));
    EXPECT_EQ(got[2].status_code(), 0);
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
  }
  EXPECT_EQ(service_->refused_for_wait(), 3u);
  // The waiting calls get their replies.
  for (uint64_t i = 1; i <= 4; ++i) {
    pbft::v1::Reply reply;
    reply.set_request_number(i);
    EXPECT_EQ(service_->DeliverReply(
                  9, i, k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply)),
              1);
  }
  for (auto& t : waiting) t.join();
  EXPECT_EQ(waited_ok.load(), 4);
  ASSERT_TRUE(Eventually([&] { return service_->pending() == 0; }));
  // Fewer than admission_waiting_min wait now: let in again.
  std::thread again([&] {
    ledger::v1::SubmitResponse r2;
    EXPECT_TRUE(Submit(k_.Request(10), &r2).ok());
  });
  ASSERT_TRUE(WaitSubmitted(5));
  ASSERT_TRUE(Eventually([&] { return service_->pending() == 1; }));
  pbft::v1::Reply reply;
  reply.set_request_number(10);
  service_->DeliverReply(
      9, 10, k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply));
  again.join();
}

// A request the replica has answered (it executed it, ordered through
// another replica) is asked again by a client that needs f+1 replies: it is
// answered from the stored reply, never refused for the wait, whatever the
// load; the client's next request still is. A forged envelope naming the
// answered request gets past the wait check only to its signature check.
TEST_F(ClientServiceTest, AnAnsweredRequestAskedAgainIsNotRefusedForItsWait) {
  std::vector<std::thread> waiting;
  std::atomic<int> waited_ok{0};
  ASSERT_TRUE(StartWithFourWaiting(&waiting, &waited_ok));
  service_->NoteAnswered(9, 5);
  std::thread asked_again([&] {
    ledger::v1::SubmitResponse resp;
    if (Submit(k_.Request(5), &resp).ok()) waited_ok.fetch_add(1);
  });
  ASSERT_TRUE(WaitSubmitted(5));  // It reached the owner.
  EXPECT_EQ(service_->refused_for_wait(), 0u);
  ledger::v1::SubmitResponse resp;
  EXPECT_EQ(Submit(k_.Request(6), &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(service_->refused_for_wait(), 1u);
  ExpectForgedStopsAtSignatureCheck(5);
  // On a Session too.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    auto stream = stub_->Session(&ctx);
    ASSERT_TRUE(WriteSession(stream.get(), 1, k_.Request(7)));
    ledger::v1::SessionResponse r;
    ASSERT_TRUE(stream->Read(&r));
    EXPECT_EQ(r.status_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_EQ(service_->refused_for_wait(), 2u);
    service_->NoteAnswered(9, 7);
    ASSERT_TRUE(WriteSession(stream.get(), 2, k_.Request(7)));
    ASSERT_TRUE(WaitSubmitted(6));
    EXPECT_EQ(service_->refused_for_wait(), 2u);
    ctx.TryCancel();
  }
  for (uint64_t i = 1; i <= 5; ++i) {
    pbft::v1::Reply reply;
    reply.set_request_number(i);
    service_->DeliverReply(
        9, i, k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply));
  }
  for (auto& t : waiting) t.join();
  asked_again.join();
  EXPECT_EQ(waited_ok.load(), 5);
}

// A copy of a request a call already waits for here (a client withdrawing
// its word that the primary has it, after the primary refused the call) is
// not refused for its wait: refusing it would shed nothing, the first copy
// being held. It reaches the owner (so the core sees the copy without the
// word), and both calls get the reply. A forged copy gets past the wait
// check only to its signature check; a second copy does not get past it.
TEST_F(ClientServiceTest, ACopyOfAWaitingRequestIsNotRefusedForItsWait) {
  std::vector<std::thread> waiting;
  std::atomic<int> waited_ok{0};
  ASSERT_TRUE(StartWithFourWaiting(&waiting, &waited_ok));
  ledger::v1::SubmitResponse resp;
  ASSERT_EQ(Submit(k_.Request(5), &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(service_->refused_for_wait(), 1u);
  std::thread copy([&] {
    ledger::v1::SubmitResponse r;
    if (Submit(k_.Request(3), &r).ok()) waited_ok.fetch_add(1);
  });
  ASSERT_TRUE(WaitSubmitted(5));  // It reached the owner.
  EXPECT_EQ(service_->refused_for_wait(), 1u);
  ExpectForgedStopsAtSignatureCheck(2);
  ASSERT_TRUE(Eventually([&] { return service_->pending() == 5; }));
  // One copy: a third call for the request is judged as a new one.
  EXPECT_EQ(Submit(k_.Request(3), &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(service_->refused_for_wait(), 2u);
  for (uint64_t i = 1; i <= 4; ++i) {
    pbft::v1::Reply reply;
    reply.set_request_number(i);
    EXPECT_EQ(service_->DeliverReply(
                  9, i, k_.s0.SignMessage(pbft::v1::MESSAGE_TYPE_REPLY, reply)),
              i == 3 ? 2 : 1);
  }
  for (auto& t : waiting) t.join();
  copy.join();
  EXPECT_EQ(waited_ok.load(), 5);
}
}  // namespace
}  // namespace pbft::net
