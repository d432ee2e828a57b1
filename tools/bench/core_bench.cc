// core-bench: how many requests a 4-replica cluster of PBFT cores orders
// per second of CPU, with no crypto (null signer/verifier), no disk and an
// instant in-process network, at batch sizes 1, 10 and 100. Measures the
// protocol logic alone (message encoding, digests, logs, checkpoints,
// replies), so that the core is known not to be the bottleneck.
//
//   core-bench [--requests N] [--clients C]
//
// Human-readable lines, then one JSON object as the last line.
#include <time.h>

#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/crypto.h"
#include "common/flags.h"
#include "replica/core/core.h"
#include "tests/sim/sim_crypto.h"
#include "tools/bench/thread_cpu.h"

ABSL_FLAG(uint64_t, requests, 200000, "Requests per batch size.");
ABSL_FLAG(uint32_t, clients, 1000, "Distinct client ids.");
ABSL_FLAG(uint32_t, op_bytes, 64, "Operation bytes per request.");

namespace pbft::bench {
namespace {

struct Result {
  uint32_t batch = 0;
  uint64_t requests = 0;
  uint64_t batches = 0;
  uint64_t messages = 0;
  double cpu_s = 0;
};

Result Run(uint32_t batch, uint64_t total, uint32_t clients,
           uint32_t op_bytes) {
  constexpr uint32_t kN = 4;
  sim::NullVerifier verifier;
  std::vector<std::unique_ptr<sim::NullSigner>> signers;
  std::vector<std::unique_ptr<core::Core>> cores;
  for (uint32_t i = 0; i < kN; ++i) {
    signers.push_back(std::make_unique<sim::NullSigner>(i));
    core::Options o;
    o.id = ReplicaId(i);
    o.n = kN;
    o.f = 1;
    o.params.batch_requests_max = batch;
    o.params.batch_delay_ticks = 1;
    o.params.request_queue_max = 1 << 20;
    cores.push_back(
        std::make_unique<core::Core>(o, signers.back().get(), &verifier));
  }
  // Client requests are made before the clock starts: they are the
  // clients' work, not the cluster's.
  std::vector<v1::Envelope> requests;
  requests.reserve(total);
  sim::NullSigner client_signer(0);
  for (uint64_t i = 0; i < total; ++i) {
    v1::Request r;
    r.set_client_id(1 + i % clients);
    r.set_request_number(1 + i / clients);
    r.set_operation(std::string(op_bytes, 'x'));
    v1::Envelope e =
        client_signer.Sign(v1::MESSAGE_TYPE_REQUEST, r.SerializeAsString());
    e.set_sender(r.client_id());
    requests.push_back(std::move(e));
  }

  struct Msg {
    uint32_t to;
    std::shared_ptr<const v1::Envelope> e;
  };
  std::deque<Msg> net;
  std::vector<uint64_t> executed(kN, 0);
  std::vector<uint64_t> states(kN, 0);
  Result res;
  res.batch = batch;

  auto drain = [&](uint32_t id) {
    core::Core& c = *cores[id];
    while (c.HasReady()) {
      core::Ready rd = c.TakeReady();
      for (core::Outbound& o : rd.messages) {
        auto e = std::make_shared<const v1::Envelope>(std::move(o.envelope));
        if (o.broadcast) {
          for (uint32_t j = 0; j < kN; ++j) {
            if (j != id) net.push_back({j, e});
          }
        } else {
          net.push_back({o.to.value(), e});
        }
        res.messages += o.broadcast ? kN - 1 : 1;
      }
      for (const core::CommittedBatch& b : rd.execute) {
        // The ledger stand-in: count requests, fold the seq into a number.
        std::vector<core::ExecutedReply> replies;
        replies.reserve(b.pre_prepare.batch_size());
        for (const v1::Envelope& re : b.pre_prepare.batch()) {
          v1::Request r;
          CHECK(r.ParseFromString(re.payload()));
          replies.push_back({ClientId(r.client_id()),
                             RequestNumber(r.request_number()), "ok"});
        }
        executed[id] += replies.size();
        states[id] = states[id] * 31 + b.seq.value();
        std::array<uint8_t, Digest::kSize> bytes{};
        for (int k = 0; k < 8; ++k) bytes[k] = (states[id] >> (8 * k)) & 0xff;
        if (id == 0) ++res.batches;
        c.OnExecuted(b.seq, Digest(bytes), std::move(replies));
      }
    }
  };

  const double start = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
  uint64_t fed = 0;
  uint64_t now_ms = 1'000'000;
  const uint64_t window = 256ull * batch;  // L batches in flight at most.
  for (uint64_t guard = 0; executed[1] < total || executed[2] < total ||
                           executed[3] < total || executed[0] < total;
       ++guard) {
    CHECK_LT(guard, 100'000'000u);
    while (fed < total && fed - executed[0] < window) {
      cores[0]->OnRequest(requests[fed++]);
    }
    drain(0);
    if (net.empty()) {
      now_ms += 10;
      for (uint32_t i = 0; i < kN; ++i) {
        cores[i]->Tick(now_ms);
        drain(i);
      }
    }
    while (!net.empty()) {
      Msg m = std::move(net.front());
      net.pop_front();
      cores[m.to]->Step(*m.e);
      drain(m.to);
    }
  }
  res.cpu_s = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - start;
  res.requests = total;
  for (uint32_t i = 0; i < kN; ++i) CHECK_EQ(states[i], states[0]);
  return res;
}

}  // namespace
}  // namespace pbft::bench

int main(int argc, char** argv) {
  pbft::ParseFlags(argc, argv, "core-bench [--requests N] [--clients C]");
  const uint64_t total = absl::GetFlag(FLAGS_requests);
  const uint32_t clients = absl::GetFlag(FLAGS_clients);
  const uint32_t op_bytes = absl::GetFlag(FLAGS_op_bytes);
  std::string json = "{\"replicas\":4,\"crypto\":\"none\",\"disk\":\"none\"";
  absl::StrAppend(&json, ",\"requests\":", total, ",\"op_bytes\":", op_bytes);
  for (uint32_t batch : {1u, 10u, 100u}) {
    // Batch 1 orders fewer requests: it is 100x the messages per request.
    const uint64_t n = batch == 1 ? total / 10 : total;
    const pbft::bench::Result r = pbft::bench::Run(batch, n, clients, op_bytes);
    const double rps = static_cast<double>(r.requests) / r.cpu_s;
    std::printf(
        "batch %3u: %8llu requests in %6llu batches, %9llu messages, "
        "%.3f CPU s -> %.0f requests per CPU-second (%.2f us/request)\n",
        batch, static_cast<unsigned long long>(r.requests),
        static_cast<unsigned long long>(r.batches),
        static_cast<unsigned long long>(r.messages), r.cpu_s, rps,
        1e6 * r.cpu_s / static_cast<double>(r.requests));
    absl::StrAppend(&json, ",\"batch_", batch,
                    "_requests_per_cpu_s\":", static_cast<uint64_t>(rps));
  }
  json += "}";
  std::printf("%s\n", json.c_str());
  return 0;
}
