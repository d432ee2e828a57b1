// Client requests (Castro & Liskov §4.1): admission, the request queue and
// its per-client shares, stored replies and stale rejections.
#include "tests/core/scenario.h"

namespace pbft::core::test {
namespace {

// --- Client requests (Castro–Liskov §4.1; docs/protocol.md)
// ------------------------

// The one reply of the last Ready, decoded.
v1::Reply OnlyReply(Scenario& s) {
  v1::Reply reply;
  EXPECT_EQ(s.ready().replies.size(), 1u);
  if (s.ready().replies.size() == 1) {
    reply = s.ready().replies[0].reply;
  }
  return reply;
}

TEST(Requests, DuplicateGetsStoredReplyAndOlderIsRejectedAsStale_4_1) {
  Scenario s(1);
  ASSERT_EQ(
      s.CommitAtBackup(1, s.PrePrepare(0, 0, 1, {s.Request(1, 5)}), 1).size(),
      1u);
  s.core().OnExecuted(Seq(1), Digest(),
                      {{ClientId(1), RequestNumber(5), "result-5"}});
  s.Take();
  ASSERT_EQ(s.ready().replies.size(), 1u);
  const std::string first = s.ready().replies[0].reply.SerializeAsString();
  s.Step(s.Request(1, 5));  // Same number: the stored reply again.
  ASSERT_EQ(s.ready().replies.size(), 1u);
  EXPECT_EQ(s.ready().replies[0].reply.SerializeAsString(), first);
  EXPECT_TRUE(s.ready().messages.empty());  // Not forwarded, not ordered.
  s.Step(s.Request(1, 4));  // Older: never executes; said so at once.
  const v1::Reply reply = OnlyReply(s);
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_STALE_REQUEST_NUMBER);
  EXPECT_EQ(reply.request_number(), 4u);
  EXPECT_EQ(reply.last_request_number(), 5u);
  EXPECT_TRUE(reply.result().empty());
  EXPECT_TRUE(s.ready().messages.empty());
  EXPECT_EQ(s.Dropped(DropReason::kStaleRequest), 1u);
}

TEST(Requests, RequestBelowOneCommittedForExecutionIsRejectedAtOnce_4_1) {
  Scenario s(1);
  ASSERT_EQ(
      s.CommitAtBackup(1, s.PrePrepare(0, 0, 1, {s.Request(1, 7)}), 1).size(),
      1u);                  // Handed out, not executed yet.
  s.Step(s.Request(1, 7));  // The same request: its reply comes later.
  EXPECT_TRUE(s.ready().replies.empty());
  EXPECT_EQ(s.core().queued_requests(), 0u);
  s.Step(s.Request(1, 6));  // Overtaken by 7: never executes.
  const v1::Reply reply = OnlyReply(s);
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_STALE_REQUEST_NUMBER);
  EXPECT_EQ(reply.last_request_number(), 7u);
}

TEST(Requests, StaleRequestSkippedAtExecutionIsRejected_4_1) {
  Scenario s(1);
  // 6 and 5 ordered in that order: the ledger skips 5 (its number is below
  // the client's last); the core answers it with a stale rejection.
  ASSERT_EQ(
      s.CommitAtBackup(
           1, s.PrePrepare(0, 0, 1, {s.Request(1, 6), s.Request(1, 5)}), 1)
          .size(),
      1u);
  s.core().OnExecuted(Seq(1), Digest(),
                      {{ClientId(1), RequestNumber(6), "result-6"},
                       {ClientId(1), RequestNumber(5), ""}});
  s.Take();
  ASSERT_EQ(s.ready().replies.size(), 2u);
  const v1::Reply& stale = s.ready().replies[1].reply;
  EXPECT_EQ(stale.request_number(), 5u);
  EXPECT_EQ(stale.rejected(), v1::REJECT_REASON_STALE_REQUEST_NUMBER);
  EXPECT_EQ(stale.last_request_number(), 6u);
}

TEST(Requests, AnotherRequestUnderAQueuedNumberIsRejected) {
  Scenario s(1);
  s.Step(s.Request(1, 3, "first"));
  s.Take();
  s.Step(s.Request(1, 3, "first"));  // A copy waits for the same reply.
  EXPECT_TRUE(s.ready().replies.empty());
  s.Step(s.Request(1, 3, "second"));
  const v1::Reply reply = OnlyReply(s);
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_DUPLICATE_REQUEST_NUMBER);
  EXPECT_EQ(s.core().queued_requests(), 1u);
}

// §4.1: a backup holds a request for its view-change timer and forwards it
// to the primary once it has held it forward_delay_ticks (beyond the
// primary's batch delay) without seeing it in a PRE-PREPARE: a client that
// sends to every replica (the SDK does) gave the primary its own copy.
TEST(Requests, BackupForwardsRequestToPrimary_4_1) {
  Scenario s(2);
  s.Step(s.Request(1, 1));
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_REQUEST).empty());  // Not at once.
  EXPECT_EQ(s.core().queued_requests(), 1u);
  std::vector<Outbound> fwd;
  const uint32_t due =
      Options().forward_delay_ticks + Scenario::Params().batch_delay_ticks;
  for (uint32_t i = 0; i < due; ++i) {
    s.Tick();
    for (const Outbound& o : s.Sent(v1::MESSAGE_TYPE_REQUEST)) {
      fwd.push_back(o);
    }
  }
  ASSERT_EQ(fwd.size(), 1u);
  EXPECT_FALSE(fwd[0].broadcast);
  EXPECT_EQ(fwd[0].to, ReplicaId(0));
  // Once: not again on the next ticks.
  for (int i = 0; i < 3; ++i) {
    s.Tick();
    EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_REQUEST).empty());
  }
  EXPECT_EQ(s.core().queued_requests(), 1u);
  // The client retransmits (the forward may have been lost): forwarded as
  // it comes.
  s.Step(s.Request(1, 1));
  ASSERT_EQ(s.Sent(v1::MESSAGE_TYPE_REQUEST).size(), 1u);
  EXPECT_EQ(s.Sent(v1::MESSAGE_TYPE_REQUEST)[0].to, ReplicaId(0));
  EXPECT_EQ(s.core().queued_requests(), 1u);
}

// The primary may hold a request batch_delay_ticks by design (while a
// batch is in flight it waits for more): a backup counts its forward delay
// from the end of that wait, so that it does not forward what the primary
// is holding on purpose (under load that was one request in twenty).
TEST(Requests, BackupWaitsOutThePrimarysBatchDelayBeforeForwarding_4_1) {
  ProtocolParams p = Scenario::Params();
  p.batch_delay_ticks = 4;
  Scenario s(2, p);
  s.Step(s.Request(1, 1));
  const uint32_t due = Options().forward_delay_ticks + p.batch_delay_ticks;
  for (uint32_t i = 1; i < due; ++i) {
    s.Tick();
    EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_REQUEST).empty()) << "tick " << i;
  }
  s.Tick();
  ASSERT_EQ(s.Sent(v1::MESSAGE_TYPE_REQUEST).size(), 1u);
  EXPECT_EQ(s.Sent(v1::MESSAGE_TYPE_REQUEST)[0].to, ReplicaId(0));
  EXPECT_EQ(s.core().stats().requests_forwarded, 1u);
}

// A client that sent the request to the primary as well says so (the
// SDK's primary_view hint): the backup then leaves the forwarding to its
// view-change timer's probe, at half the timeout, instead of forwarding
// after its delay. A client that lied has only delayed its own request.
TEST(Requests, BackupLeavesARequestThePrimaryHasToTheTimersProbe_4_1) {
  ProtocolParams p = Scenario::Params();
  p.view_change_timeout_ticks = 40;
  Scenario s(2, p);
  s.core().OnRequest(s.Request(1, 1), View(0));
  s.Take();
  const uint32_t probe =
      p.view_change_timeout_ticks - p.view_change_timeout_ticks / 2;
  for (uint32_t i = 1; i < probe; ++i) {
    s.Tick();
    EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_REQUEST).empty()) << "tick " << i;
  }
  s.Tick();  // The probe.
  ASSERT_EQ(s.Sent(v1::MESSAGE_TYPE_REQUEST).size(), 1u);
  EXPECT_EQ(s.Sent(v1::MESSAGE_TYPE_REQUEST)[0].to, ReplicaId(0));
  EXPECT_EQ(s.core().stats().requests_forwarded, 1u);
  EXPECT_EQ(s.core().stats().timer_probes, 1u);
  EXPECT_EQ(s.core().stats().requests_primary_has_copy, 1u);
}

// Under load the view-change timer restarts at every block executed, so its
// probe may never come: the word holds a request little more than half the
// timeout of its own age, whatever else executes meanwhile. (A primary that
// refused the client's call for load, or lost it, never proposes it; the
// backup holding it with the word is then the only way it gets ordered.)
TEST(Requests, TheWordHoldsARequestHalfATimeoutEvenWhileOthersExecute_4_1) {
  ProtocolParams p = Scenario::Params();
  p.view_change_timeout_ticks = 40;
  p.checkpoint_interval = 64;
  p.watermark_window = 128;
  Scenario s(2, p);
  s.core().OnRequest(s.Request(1, 1), View(0));
  s.Take();
  const uint32_t hold = p.view_change_timeout_ticks / 2 + 1;
  uint64_t forwarded_at = 0;
  for (uint32_t tick = 1; tick <= 3 * p.view_change_timeout_ticks; ++tick) {
    if (tick % 10 == 0) {  // Another client's request executes.
      const uint64_t seq = tick / 10;
      ASSERT_EQ(
          s.CommitAtBackup(seq, s.PrePrepare(0, 0, seq, {s.Request(2, seq)}), 2)
              .size(),
          1u);
      s.core().OnExecuted(Seq(seq), Digest(),
                          {{ClientId(2), RequestNumber(seq), "r"}});
      s.Take();
    }
    s.Tick();
    for (const Outbound& o : s.Sent(v1::MESSAGE_TYPE_REQUEST)) {
      EXPECT_EQ(o.to, ReplicaId(0));
      if (forwarded_at == 0) forwarded_at = tick;
    }
  }
  EXPECT_EQ(s.core().stats().timer_probes, 0u);  // The load kept it off.
  EXPECT_EQ(forwarded_at, hold);
  EXPECT_EQ(s.core().stats().requests_forwarded, 1u);  // Once.
  EXPECT_EQ(s.core().stats().requests_word_held_long, 1u);
  EXPECT_EQ(s.core().queued_requests(), 1u);
}

// The hint holds only while every copy carries it, for this view: a copy
// without it (the client asking again) is forwarded as any copy of a
// request held that long; a hint naming another view is ignored.
TEST(Requests, ACopyWithoutTheHintOrAHintForAnotherViewForwardsAsBefore_4_1) {
  const uint32_t due =
      Options().forward_delay_ticks + Scenario::Params().batch_delay_ticks;
  Scenario s(2);
  s.core().OnRequest(s.Request(1, 1), View(0));
  s.Take();
  for (uint32_t i = 0; i < due + 2; ++i) {
    s.Tick();
    EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_REQUEST).empty()) << "tick " << i;
  }
  s.core().OnRequest(s.Request(1, 1), View(0));  // Same word: still held.
  s.Take();
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_REQUEST).empty());
  s.Step(s.Request(1, 1));  // No word: forwarded as it comes.
  ASSERT_EQ(s.Sent(v1::MESSAGE_TYPE_REQUEST).size(), 1u);
  EXPECT_EQ(s.Sent(v1::MESSAGE_TYPE_REQUEST)[0].to, ReplicaId(0));

  // A copy without the word before the delay is up: forwarded at the delay.
  Scenario b(2);
  b.core().OnRequest(b.Request(1, 1), View(0));
  b.Take();
  b.Step(b.Request(1, 1));
  std::vector<Outbound> fwd;
  for (uint32_t i = 0; i < due; ++i) {
    b.Tick();
    for (const Outbound& o : b.Sent(v1::MESSAGE_TYPE_REQUEST)) {
      fwd.push_back(o);
    }
  }
  EXPECT_EQ(fwd.size(), 1u);

  // The word for view 1 in view 0: forwarded at the delay.
  Scenario c(2);
  c.core().OnRequest(c.Request(1, 1), View(1));
  c.Take();
  fwd.clear();
  for (uint32_t i = 0; i < due; ++i) {
    c.Tick();
    for (const Outbound& o : c.Sent(v1::MESSAGE_TYPE_REQUEST)) {
      fwd.push_back(o);
    }
  }
  EXPECT_EQ(fwd.size(), 1u);
}

TEST(Requests, BackupDoesNotForwardWhatThePrimaryProposed_4_1) {
  Scenario s(2);
  const v1::Envelope request = s.Request(1, 1);
  s.Step(request);
  s.Step(s.PrePrepare(0, 0, 1, {request}));
  for (uint32_t i = 0; i < Options().forward_delay_ticks + 3; ++i) {
    s.Tick();
    EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_REQUEST).empty());
  }
  s.Step(request);  // Nor a copy the client sends again.
  EXPECT_TRUE(s.Sent(v1::MESSAGE_TYPE_REQUEST).empty());
  EXPECT_EQ(s.core().queued_requests(), 1u);  // Held until it executes.
}

TEST(Requests, PrimaryRefusesRequestsBeyondQueueBound) {
  ProtocolParams p = Scenario::Params();
  p.batch_delay_ticks = 100;  // Keep them queued.
  p.batch_wait_when_idle = true;
  p.batch_requests_max = 10;
  Scenario s(0, p);
  for (uint64_t c = 1; c <= 3; ++c) s.Step(s.Request(c, 1));
  EXPECT_EQ(s.core().queued_requests(), 3u);
  s.Step(s.Request(1, 2));
  ASSERT_EQ(s.ready().replies.size(), 1u);
  const v1::Reply& reply = s.ready().replies[0].reply;
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_QUEUE_FULL);
  EXPECT_EQ(reply.request_number(), 2u);
  EXPECT_EQ(s.core().queued_requests(), 3u);
}

TEST(Requests, OneClientOverItsQueueShareIsRefusedOthersAreNot) {
  ProtocolParams p = Scenario::Params();
  p.batch_delay_ticks = 100;  // Keep them queued.
  p.batch_wait_when_idle = true;
  p.batch_requests_max = 10;
  p.request_queue_max = 10;
  p.client_queue_max = 2;
  Scenario s(0, p);
  s.Step(s.Request(1, 1));
  s.Step(s.Request(1, 2));
  s.Step(s.Request(1, 3));  // Over client 1's share.
  v1::Reply reply = OnlyReply(s);
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_CLIENT_SHARE_FULL);
  EXPECT_EQ(reply.request_number(), 3u);
  s.Step(s.Request(2, 1));  // Client 2 is still served.
  EXPECT_TRUE(s.ready().replies.empty());
  EXPECT_EQ(s.core().queued_requests(), 3u);
  // The share also counts bytes.
  ProtocolParams pb = p;
  pb.client_queue_max = 10;
  pb.client_queue_bytes_max = 300;
  Scenario b(0, pb);
  b.Step(b.Request(1, 1, std::string(150, 'x')));
  b.Step(b.Request(1, 2, std::string(150, 'x')));
  reply = OnlyReply(b);
  EXPECT_EQ(reply.rejected(), v1::REJECT_REASON_CLIENT_SHARE_FULL);
  b.Step(b.Request(2, 1, std::string(150, 'x')));
  EXPECT_TRUE(b.ready().replies.empty());
}

TEST(Requests, BackupRejectsOlderQueuedRequestsOnceANewerOneIsOrdered_4_1) {
  Scenario s(1);
  s.Step(s.Request(1, 1));
  s.Step(s.Request(1, 2));
  EXPECT_EQ(s.core().queued_requests(), 2u);
  s.Take();
  // The primary ordered only request 2 (request 1 is then stale).
  ASSERT_EQ(
      s.CommitAtBackup(1, s.PrePrepare(0, 0, 1, {s.Request(1, 2)}), 1).size(),
      1u);
  EXPECT_EQ(s.core().queued_requests(), 0u);
  bool rejected = false;
  for (const ClientReply& r : s.replies()) {
    const v1::Reply& reply = r.reply;
    if (reply.request_number() == 1) {
      rejected = reply.rejected() == v1::REJECT_REASON_STALE_REQUEST_NUMBER &&
                 reply.last_request_number() == 2;
    }
  }
  EXPECT_TRUE(rejected);
}

TEST(Requests, RestoredClientGetsItsStoredReply_4_1) {
  Scenario s(2);
  s.core().RestoreClient(ClientId(3), RequestNumber(9), "restored");
  s.Take();
  EXPECT_TRUE(s.ready().replies.empty());
  s.Step(s.Request(3, 9));
  ASSERT_EQ(s.ready().replies.size(), 1u);
  const v1::Reply& reply = s.ready().replies[0].reply;
  EXPECT_EQ(reply.result(), "restored");
  EXPECT_EQ(reply.request_number(), 9u);
  EXPECT_EQ(reply.replica_id(), 2u);
}

}  // namespace
}  // namespace pbft::core::test
