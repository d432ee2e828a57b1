// The replica's metrics (replica/metrics.h): counters kept by enum number
// land in the same labelled series a scrape shows, from many threads at
// once, and numbers outside the cached range are still counted.
#include "replica/metrics.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "ledger/v1/ledger.pb.h"
#include "pbft/v1/pbft.pb.h"

namespace pbft::replica {
namespace {

// The value of counter `name`{label=value}, or -1 if no such series.
double CounterValue(Metrics& m, const std::string& name,
                    const std::string& label, const std::string& value) {
  for (const prometheus::MetricFamily& f : m.registry().Collect()) {
    if (f.name != name) continue;
    for (const prometheus::ClientMetric& c : f.metric) {
      for (const prometheus::ClientMetric::Label& l : c.label) {
        if (l.name == label && l.value == value) return c.counter.value;
      }
    }
  }
  return -1;
}

TEST(MetricsTest, CountsByNumberUnderTheEnumValuesName) {
  Metrics m(0);
  m.MessageReceived(pbft::v1::MESSAGE_TYPE_PREPARE);
  m.MessageReceived(pbft::v1::MESSAGE_TYPE_PREPARE);
  m.MessageReceived(pbft::v1::MESSAGE_TYPE_COMMIT);
  m.TransferResult(ledger::v1::RESULT_CODE_OK, 100);
  m.TransferResult(ledger::v1::RESULT_CODE_INSUFFICIENT_FUNDS);

  EXPECT_EQ(CounterValue(m, "ledger_messages_received_total", "type",
                         "MESSAGE_TYPE_PREPARE"),
            2);
  EXPECT_EQ(CounterValue(m, "ledger_messages_received_total", "type",
                         "MESSAGE_TYPE_COMMIT"),
            1);
  EXPECT_EQ(
      CounterValue(m, "ledger_operations_total", "result", "RESULT_CODE_OK"),
      100);
  EXPECT_EQ(CounterValue(m, "ledger_operations_total", "result",
                         "RESULT_CODE_INSUFFICIENT_FUNDS"),
            1);
  // Nothing counted, no series.
  EXPECT_EQ(CounterValue(m, "ledger_operations_total", "result",
                         "RESULT_CODE_OVERFLOW"),
            -1);
}

TEST(MetricsTest, NumbersWithoutANameAreCountedUnderTheEmptyName) {
  Metrics m(0);
  m.MessageReceived(-7);    // Below the cached range.
  m.MessageReceived(1000);  // Above it.
  m.MessageReceived(63);    // Inside it, not a MessageType.
  EXPECT_EQ(CounterValue(m, "ledger_messages_received_total", "type", ""), 3);
}

TEST(MetricsTest, ThreadsCountingAtOnceLoseNothing) {
  Metrics m(0);
  constexpr int kThreads = 4;
  constexpr int kEach = 10000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < kEach; ++i) {
        m.TransferResult(ledger::v1::RESULT_CODE_OK);
        m.MessageReceived(pbft::v1::MESSAGE_TYPE_REQUEST);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(
      CounterValue(m, "ledger_operations_total", "result", "RESULT_CODE_OK"),
      kThreads * kEach);
  EXPECT_EQ(CounterValue(m, "ledger_messages_received_total", "type",
                         "MESSAGE_TYPE_REQUEST"),
            kThreads * kEach);
}

}  // namespace
}  // namespace pbft::replica
