// Helpers shared by the replica transport's tests (net_test.cc,
// peer_stream_test.cc): keys, limits, a sink for delivered envelopes.
#ifndef PBFT_LEDGER_TESTS_NET_NET_TEST_UTIL_H_
#define PBFT_LEDGER_TESTS_NET_NET_TEST_UTIL_H_

#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/envelope.h"
#include "common/wire_limits.h"
#include "replica/net/verify_pool.h"

namespace pbft::net {

using pbft::v1::Envelope;

// Polls `cond` until it holds or `timeout` passes (bounded; no fixed sleep
// decides the outcome).
template <typename F>
bool Eventually(F cond, absl::Duration timeout = absl::Seconds(10)) {
  absl::Time until = absl::Now() + timeout;
  while (!cond()) {
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

class Keys {
 public:
  Keys()
      : r0(crypto::SecretKey::Generate()),
        r1(crypto::SecretKey::Generate()),
        client(crypto::SecretKey::Generate()),
        verifier("net-test", {r0.public_key(), r1.public_key()},
                 {{9, client.public_key()}}, 1 << 20),
        s0("net-test", 0, r0),
        s1("net-test", 1, r1),
        sc("net-test", 9, client) {}
  crypto::SecretKey r0, r1, client;
  EnvelopeVerifier verifier;
  EnvelopeSigner s0, s1, sc;

  Envelope Request(uint64_t number, bool read_only = false) const {
    pbft::v1::Request r;
    r.set_client_id(9);
    r.set_request_number(number);
    r.set_operation("op");
    r.set_read_only(read_only);
    return sc.SignMessage(pbft::v1::MESSAGE_TYPE_REQUEST, r);
  }
};

inline WireLimits Limits() { return WireLimits::For(2, ProtocolParams{}); }
inline QueueShare Share(size_t count) { return {count, 1 << 20}; }

// Collects delivered envelopes.
class Sink {
 public:
  void Put(Envelope e) {
    absl::MutexLock l(&mu_);
    got_.push_back(std::move(e));
  }
  // Waits (bounded) until `n` envelopes arrived.
  bool WaitFor(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    return Eventually([&] { return size() >= n; }, timeout);
  }
  size_t size() {
    absl::MutexLock l(&mu_);
    return got_.size();
  }
  std::vector<Envelope> Take() {
    absl::MutexLock l(&mu_);
    return std::move(got_);
  }

 private:
  absl::Mutex mu_;
  std::vector<Envelope> got_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pbft::net

#endif  // PBFT_LEDGER_TESTS_NET_NET_TEST_UTIL_H_
