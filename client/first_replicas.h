// Which replicas an ordered request goes to first, and when to ask the
// rest (docs/api.md, "Which replicas a request goes to").
//
// A request needs f+1 matching replies, and a replica replies only to a
// request the client sent it. FirstReplicas picks f+1 of them: the primary
// of the latest view f+1 matching replies named, and f backups counted from
// a place set by the client id (so that clients spread over the backups),
// leaving out for a while a replica that failed, or that stayed silent
// twice in close succession (once is the tail of a busy replica's
// latency, not a sign of a fault: leaving the primary out sends every
// request to every replica, doubling what the cluster checks). Its delay
// before the others are asked follows the latency of the client's requests
// as a TCP retransmission timer does (RFC 6298): smoothed latency plus four
// times its variation, doubled each time it ran out, within [min, max].
// A call may be widened sooner (FanOut): when a first replica fails or
// refuses, or when their answers are spread apart (a hedge).
//
// Thread-safe.
#ifndef PBFT_LEDGER_CLIENT_FIRST_REPLICAS_H_
#define PBFT_LEDGER_CLIENT_FIRST_REPLICAS_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/client.h"

namespace pbft::client {

// Why a call was asked of the replicas not asked yet (ClientStats).
enum class WidenCause {
  kTimer,  // The widening delay ran out.
  kEarly,  // A first replica failed, refused or disagreed.
  kHedge,  // One answered; the others lagged well behind it.
};

class FirstReplicas {
 public:
  struct Options {
    uint32_t n = 4;
    uint64_t client_id = 0;
    bool send_to_all = false;
    absl::Duration widen_after_initial = absl::Milliseconds(200);
    absl::Duration widen_after_min = absl::Milliseconds(50);
    absl::Duration widen_after_max = absl::Seconds(2);
    // How long a replica that failed or stayed silent is left out.
    absl::Duration avoid_for = absl::Seconds(10);
  };
  explicit FirstReplicas(const Options& options);

  // What happened to the ordered requests so far (Client::stats()).
  ClientStats counts() const;
  // A call widened to the replicas not asked yet.
  void CountWidened(WidenCause cause);

  // The replicas a request needing `needed` matching replies goes to first,
  // at `now`: every replica if `needed` >= n, with send_to_all, or if the
  // primary or too many backups are left out. `*primary_view` (if not
  // null) is set only when they are f+1 of them headed by the primary of
  // that view: then the backups among them may be told that the primary
  // has the request, since the others are still there to be asked (and to
  // forward it) if the primary fails.
  std::vector<uint32_t> Choose(uint32_t needed, absl::Time now,
                               std::optional<uint64_t>* primary_view = nullptr);
  // How long the first replicas have before the others are asked.
  absl::Duration WidenAfter();
  // A request took `latency` from its first send to f+1 matching replies.
  void NoteLatency(absl::Duration latency);
  // The first replicas ran out of time at `now`; `silent` of them had not
  // answered while the others had: the delay doubles, and each of those is
  // struck (Strike).
  void NoteWidenedByTimer(const std::vector<uint32_t>& silent, absl::Time now);
  // `silent` stayed silent through a call's widening delay while another
  // first replica answered: each is struck; a replica with a strike still
  // standing from an earlier silence is left out until now + avoid_for. A
  // strike stands until the replica has answered kAnswersPerStrike calls
  // (NoteAnswered): one silent in one call of every kAnswersPerStrike, or
  // more often, is left out sooner or later.
  void Strike(const std::vector<uint32_t>& silent, absl::Time now);
  // `replicas` sent the matching replies that completed a call.
  void NoteAnswered(const std::set<uint32_t>& replicas);
  static constexpr uint32_t kAnswersPerStrike = 16;
  // `replica` failed a request at `now`: left out until now + avoid_for.
  void Avoid(uint32_t replica, absl::Time now);
  // f+1 matching replies named views of at least `view` (the lowest of
  // them, so that one faulty replica cannot move it): the primary is
  // view mod n from now on, unless a higher view was seen before.
  void NoteView(uint64_t view);

 private:
  const Options options_;
  std::atomic<uint64_t> view_{0};
  mutable absl::Mutex mu_;
  ClientStats counts_ ABSL_GUARDED_BY(mu_);
  bool sampled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration smoothed_ ABSL_GUARDED_BY(mu_);
  absl::Duration variation_ ABSL_GUARDED_BY(mu_);
  absl::Duration widen_after_ ABSL_GUARDED_BY(mu_);
  // Per replica: not among the first ones before this time.
  std::vector<absl::Time> avoid_until_ ABSL_GUARDED_BY(mu_);
  // Per replica: kAnswersPerStrike per standing strike, less one per call
  // answered since.
  std::vector<uint32_t> strikes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pbft::client

#endif  // PBFT_LEDGER_CLIENT_FIRST_REPLICAS_H_
