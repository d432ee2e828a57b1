#include "replica/core/new_view.h"

#include <algorithm>
#include <map>

#include "common/check.h"
#include "common/envelope.h"
#include "replica/core/messages.h"

namespace pbft::core {
namespace {

// The certificate of the highest view per seq above min_s.
struct Best {
  View view;
  Digest digest;
  uint64_t timestamp_ms;
  const v1::Envelope* pre_prepare;
};

std::map<Seq, Best> BestCertificates(
    const std::vector<const v1::ViewChange*>& vcs, Seq min_s) {
  std::map<Seq, Best> best;
  for (const v1::ViewChange* vc : vcs) {
    for (const v1::PreparedCertificate& cert : vc->prepared()) {
      v1::PrePrepare pp;
      Digest d;
      CHECK(Decode(cert.pre_prepare(), &pp, &d));
      const Seq s(pp.seq());
      if (s <= min_s) continue;
      auto it = best.find(s);
      if (it == best.end() || View(pp.view()) > it->second.view) {
        best[s] =
            Best{View(pp.view()), d, pp.timestamp_ms(), &cert.pre_prepare()};
      }
    }
  }
  return best;
}

}  // namespace

// §4.4: min-s = the highest s*; max-s = the highest certified seq; for each
// seq between, the digest of the highest-view certificate, else null.
NewViewComputation ComputeNewView(
    const std::vector<const v1::ViewChange*>& vcs) {
  CHECK(!vcs.empty());
  NewViewComputation out;
  out.min_s = Seq(0);
  for (const v1::ViewChange* vc : vcs) {
    if (out.min_proof == nullptr ||
        Seq(vc->stable_checkpoint().seq()) > out.min_s) {
      out.min_s = Seq(vc->stable_checkpoint().seq());
      out.min_proof = &vc->stable_checkpoint();
    }
  }
  const std::map<Seq, Best> best = BestCertificates(vcs, out.min_s);
  out.max_s = out.min_s;
  if (!best.empty()) out.max_s = std::max(out.max_s, best.rbegin()->first);
  uint64_t ts = 0;  // A null batch takes the timestamp of the one before.
  for (Seq s = out.min_s.next(); s <= out.max_s; s = s.next()) {
    auto it = best.find(s);
    if (it != best.end()) {
      ts = std::max(ts, it->second.timestamp_ms);
      out.o.push_back({s, it->second.digest, it->second.timestamp_ms,
                       it->second.pre_prepare});
    } else {
      out.o.push_back({s, NullBatchDigest(), ts, nullptr});
    }
  }
  return out;
}

}  // namespace pbft::core
