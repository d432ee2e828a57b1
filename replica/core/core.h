// The PBFT core: one replica's protocol logic (Castro & Liskov, OSDI '99,
// signature variant) as a pure, deterministic state machine.
//
// Inputs: Step(envelope) for a replica message or a client request whose
// envelope signature the shell has already checked; OnRequest(envelope) for
// a client request; Tick(now_ms) once per tick; OnExecuted(seq, digest,
// replies) when the shell has applied a batch. Output: one Ready value
// (TakeReady) that says what to persist, what to send, what to execute and
// which replies to deliver. The core never touches a socket, a file, a
// thread or a clock; wall time enters only as `now_ms` data in Tick, and
// crypto through the Signer and Verifier interfaces below.
//
// The content of every message is treated as possibly Byzantine: what does
// not fit the rules is dropped and counted in Stats, never asserted on.
//
// The implementation is split along the paper's sections, one file each
// (docs/architecture.md, "The PBFT core's files"): core.cc (dispatch, Ready,
// evidence), requests.cc (§4.1 queue and admission), normal_case.cc (§4.2),
// checkpoints.cc (§4.3), view_change.cc and new_view.h (§4.4), bodies.cc
// (§4.4 batch bodies), state_transfer.cc, restore.cc, invariants.cc; the
// pure quorum and certificate checks are in certificates.h, the message
// log's types in message_log.h.
//
// Ownership: the Core borrows `signer` and `verifier`; they must outlive it.
// Thread-compatible: one owner thread calls every method.
#ifndef PBFT_LEDGER_REPLICA_CORE_CORE_H_
#define PBFT_LEDGER_REPLICA_CORE_CORE_H_

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "common/protocol_params.h"
#include "common/types.h"
#include "common/wire_limits.h"
#include "pbft/v1/pbft.pb.h"
#include "replica/core/certificates.h"
#include "replica/core/message_log.h"
#include "replica/core/new_view.h"
#include "replica/core/signing.h"

namespace pbft::core {

// ClientId, Digest, ReplicaId, RequestNumber, Seq, View: message_log.h.

struct Options {
  ReplicaId id;
  uint32_t n = 4;
  uint32_t f = 1;
  ProtocolParams params;
  // Own PRE-PREPARE/PREPARE/COMMIT for a seq not yet executed here are sent
  // again every retransmit_ticks (the network may drop them), and so are
  // own CHECKPOINTs above the low watermark (not stable here yet); the
  // stable one goes only to a peer whose vote shows it still lacks it.
  uint32_t retransmit_ticks = 20;
  // A replica that executed nothing for fetch_interval_ticks while f+1
  // peers showed higher seqs asks one peer (round robin) for the certified
  // batches it lacks.
  uint32_t fetch_interval_ticks = 40;
  uint32_t fetch_blocks_max = kFetchBlocksMax;
  // A replica that executed nothing for fetch_interval_ticks WITHOUT such
  // evidence (an idle cluster gives none) still asks one peer, at most once
  // per idle_probe_interval_ticks: a replica that restarted or missed the
  // last commits a few blocks short of the others would otherwise wait for
  // new traffic to learn it is behind. Adopting what comes back is safe
  // (every batch carries its commit certificate); an up-to-date peer
  // answers with nothing.
  uint32_t idle_probe_interval_ticks = 400;
  // A backup forwards a request it holds to the primary once it has held
  // it forward_delay_ticks beyond the primary's batch_delay_ticks without
  // seeing it in a PRE-PREPARE of the current view (0: at once, as it
  // arrives). A client that sends to every replica (the SDK does) reaches
  // the primary itself; forwarding at once sent the primary n-1 more copies
  // of every request, and forwarding within the batch delay a copy of a
  // request the primary holds on purpose.
  uint32_t forward_delay_ticks = 5;
  // Every FETCH_REQUEST names the requester's view. A replica with proof
  // that the cluster is in a higher view than its own (a fetched commit
  // certificate of that view, or f+1 peers' messages of it) fetches every
  // fetch_interval_ticks, so that a peer answers with its NEW-VIEW; a peer
  // sends its NEW-VIEW to one replica at most once per retransmit_ticks.

  // Fails naming the field (n != 3f+1, L not a multiple of K, ...).
  absl::Status Validate() const;
};

// One message to send. `broadcast` means every replica except this one.
struct Outbound {
  bool broadcast = false;
  ReplicaId to;
  v1::Envelope envelope;
};

// A batch that is committed-local and ready to be applied (the seam with
// the ledger: see docs/protocol.md).
struct CommittedBatch {
  View view;
  Seq seq;
  uint64_t timestamp_ms = 0;
  Digest batch_digest;  // NullBatchDigest() for a null batch.
  // The signed PRE-PREPARE envelope with its batch beside the header
  // (Envelope.batch: the client request envelopes exactly as the clients
  // signed them; BatchOf reads it). Never handed out without it.
  v1::Envelope pre_prepare;
  // 2f+1 signed COMMIT envelopes for (view, seq, batch_digest) from
  // distinct replicas, exactly as received.
  v1::CommitCertificate certificate;
};

// What the ledger reports per executed request (opaque result bytes).
struct ExecutedReply {
  ClientId client_id;
  RequestNumber request_number;
  std::string result;
};

// A REPLY for a client, not signed yet: the node signs it only if a call
// waits for it here (a client sends a request to f+1 replicas, so most
// replies go to nobody and are never signed).
struct ClientReply {
  ClientId client_id;
  v1::Reply reply;
};

// What must be durable before any message of the same Ready leaves.
struct Persist {
  // Set when this replica's view changed: the view it entered or, when it
  // starts a view change, the view it is moving to (durable before its
  // VIEW-CHANGE leaves, so a restart never goes back to an older view).
  std::optional<View> view;
  // The facts that bind this replica's votes, in order: PRE-PREPAREs it
  // accepted or sent, with their batches beside them (including the O set
  // of a NEW-VIEW: headers first, then each again with its body once this
  // replica holds it), its own PREPARE,
  // COMMIT and CHECKPOINT envelopes, the 2f PREPAREs of others that make a
  // prepared certificate (so that a VIEW-CHANGE after a restart still
  // carries it), and the NEW-VIEW envelope of a view it entered (the store
  // keeps only the latest NEW-VIEW, whatever its seq).
  std::vector<v1::Envelope> entries;
  // Set when a checkpoint became stable: its 2f+1 proof. Persisted entries
  // with seq <= stable_checkpoint->seq() may be deleted afterwards.
  std::optional<v1::CheckpointProof> stable_checkpoint;

  bool empty() const { return !view && entries.empty() && !stable_checkpoint; }
};

// The core's output. The shell handles the fields in this order.
struct Ready {
  // 1. Write `persist` durably (synced) BEFORE sending any message of
  //    `messages`: a replica must never send a vote it could forget in a
  //    crash (docs/protocol.md, crash recovery).
  Persist persist;
  // 2. Then send `messages` (any order; the protocol tolerates reordering).
  std::vector<Outbound> messages;
  // 3. Apply `execute` strictly in seq order, each seq exactly once (null
  //    batches included); seqs are contiguous across successive Readys.
  //    After applying each batch call OnExecuted(seq, ...) in that order.
  std::vector<CommittedBatch> execute;
  // 4. Deliver `replies` to their clients (best effort).
  std::vector<ClientReply> replies;

  bool empty() const {
    return persist.empty() && messages.empty() && execute.empty() &&
           replies.empty();
  }
};

// Why an input was dropped; metric labels.
enum class DropReason {
  kMalformed,              // Undecodable payload or field out of range.
  kWrongSender,            // Sender may not send this (e.g. not the primary).
  kWrongView,              // Not for the current view.
  kOutOfWindow,            // seq outside (h, h+L].
  kConflictingPrePrepare,  // Another digest already accepted at (v, s).
  kDigestMismatch,         // Batch digest does not match the batch.
  kBadRequest,             // A request in a batch is invalid.
  kBatchTooLarge,          // Batch over batch_requests_max / batch_bytes_max.
  kTimestamp,              // PRE-PREPARE timestamp goes back or is too skewed.
  kConflictingVote,        // Sender voted for another digest at (v, s).
  kBadCertificate,         // Fetched batch or proof failed verification.
  kStaleRequest,           // Request number below the client's last executed.
  kQueueFull,              // Request refused: queue at request_queue_max.
  kUnsupported,            // Unknown message type; §5.1 read-only request.
  kBadViewChange,          // VIEW-CHANGE failed validation (§4.4).
  kBadNewView,             // NEW-VIEW failed validation or recomputation.
  kCount,
};
const char* DropReasonName(DropReason reason);

struct Stats {
  std::array<uint64_t, static_cast<size_t>(DropReason::kCount)> dropped{};
  uint64_t pre_prepares_sent = 0;
  uint64_t batches_committed = 0;
  uint64_t batches_fetched = 0;
  uint64_t requests_forwarded = 0;
  // Held past the forward delay and not forwarded: the client said the
  // primary has it (PrimaryHasCopy).
  uint64_t requests_primary_has_copy = 0;
  // Of requests_forwarded: held back by the client's word until
  // WordHeldLong, the primary never having proposed them.
  uint64_t requests_word_held_long = 0;
  uint64_t retransmissions = 0;
  uint64_t fetches_sent = 0;
  uint64_t fetch_probes = 0;  // Of fetches_sent: idle probes.
  uint64_t checkpoints_stable = 0;
  uint64_t view_change_timer_expiries = 0;
  uint64_t view_changes_started = 0;  // VIEW-CHANGEs this replica sent.
  uint64_t views_entered = 0;         // NEW-VIEWs accepted or sent.
  uint64_t new_views_sent = 0;
  uint64_t fetch_bad_responses = 0;  // Fetch responses that failed checks.
  uint64_t view_probes = 0;  // Of fetches_sent: asked for a missed NEW-VIEW.
  uint64_t new_views_offered = 0;  // NEW-VIEWs sent to a peer in an older view.
  // View-change timer expiries held because this replica had not yet heard
  // from 2f other replicas since it started (its links were coming up).
  uint64_t view_change_timer_held = 0;
  uint64_t timer_probes = 0;  // Of fetches_sent: half-way through the timer.
  uint64_t body_fetches_sent = 0;  // FETCH_REQUESTs for a batch body (§4.4).
  uint64_t bodies_fetched = 0;     // Bodies adopted from fetch responses.

  uint64_t dropped_total() const;
};

// What a restarted replica reloads (Core::Restore). The shell fills it from
// its protocol store (every Ready.persist it wrote) and its ledger.
struct RestoreState {
  // The ledger's last applied seq and that block's timestamp.
  Seq last_executed{0};
  uint64_t last_timestamp_ms = 0;
  // The last persisted Persist.view (0 if none).
  View view{0};
  // The last persisted Persist.stable_checkpoint, if any.
  std::optional<v1::CheckpointProof> stable_checkpoint;
  // Every persisted entry still in the store, any order; include the latest
  // persisted NEW-VIEW envelope, if any.
  std::vector<v1::Envelope> entries;
};

class Core {
 public:
  // CHECK-fails on invalid options (validate them first) or null pointers.
  Core(Options options, const Signer* signer, const Verifier* verifier);

  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  // --- Inputs -------------------------------------------------------------
  // A replica message (or a client REQUEST, which goes to OnRequest) whose
  // envelope signature is valid. The shell answers a FETCH_REQUEST from its
  // ledger and passes it here too: the core sends the requester the NEW-VIEW
  // of its view if the request names an older one.
  void Step(const v1::Envelope& envelope);
  // A client request envelope with a valid client signature. A request a
  // client sent here itself may carry the client's word that it sent the
  // same request to the primary of `sent_to_primary_of` too (see
  // PrimaryHasCopy); a forwarded one carries nothing.
  void OnRequest(const v1::Envelope& request,
                 std::optional<View> sent_to_primary_of = std::nullopt);
  // One tick of logical time; `now_ms` is the shell's wall clock, used only
  // for PRE-PREPARE timestamps (§4.2 timestamp rule).
  void Tick(uint64_t now_ms);
  // The shell applied the batch at `seq` (the next one handed out).
  void OnExecuted(Seq seq, const Digest& state_digest,
                  std::vector<ExecutedReply> replies);
  // Seeds the per-client table at start-up (from the ledger).
  void RestoreClient(ClientId client_id, RequestNumber request_number,
                     std::string result);
  // Restart (docs/protocol.md, crash recovery). Call once, after RestoreClient
  // and before any other input, with everything the protocol store returned and
  // the ledger's head. Afterwards the replica:
  //  - is in the persisted view: active in it if the NEW-VIEW of that view
  //    (or view 0) is among the entries, else still changing to it (it
  //    re-sends its VIEW-CHANGE, rebuilt from the same prepared
  //    certificates, and never takes part in an older view);
  //  - holds every persisted PRE-PREPARE and own vote of its view above the
  //    ledger head, so it never pre-prepares, prepares or commits another
  //    digest at a (view, seq) where it voted before, and a primary never
  //    reuses a seq (it resumes after the highest one it assigned);
  //  - holds its prepared certificates above the stable checkpoint for
  //    later VIEW-CHANGEs;
  //  - catches up by fetching if the ledger is behind (an empty ledger and
  //    store is a fresh replica that rebuilds everything by state transfer).
  // Fails, changing nothing, if the facts do not fit together (a stable
  // checkpoint above the ledger head, the head beyond the window of the
  // stable checkpoint, an undecodable entry).
  absl::Status Restore(const RestoreState& state);

  // --- Output -------------------------------------------------------------
  bool HasReady() const { return !ready_.empty(); }
  Ready TakeReady();

  // --- Observation --------------------------------------------------------
  // Cheap consistency checks of the core's state (the simulator runs this
  // after every step). OK or INTERNAL naming the broken invariant.
  absl::Status Invariants() const;

  ReplicaId id() const { return options_.id; }
  View view() const { return view_; }
  ReplicaId primary() const { return PrimaryOf(view_); }
  bool is_primary() const { return primary() == options_.id; }
  // False between sending a VIEW-CHANGE for view() and entering it (§4.4:
  // no PRE-PREPARE, PREPARE or COMMIT is accepted or sent meanwhile).
  bool view_active() const { return view_active_; }
  uint64_t view_change_timeout_ticks() const {
    return view_change_timeout_ticks_;
  }
  Seq low_watermark() const { return low_watermark_; }
  Seq high_watermark() const {
    return low_watermark_ + options_.params.watermark_window;
  }
  Seq last_executed() const { return last_executed_; }
  Seq last_handed_out() const { return last_handed_out_; }
  // Where the cluster is, on evidence no f replicas can fake: the (f+1)-th
  // highest seq reported by distinct replicas (or a verified checkpoint
  // proof), and the highest view proven by a fetched commit certificate or
  // by f+1 distinct replicas' PRE-PREPARE/PREPARE/COMMIT/FETCH_REQUEST.
  // Both only grow; right after a restart they start from what is local.
  Seq cluster_head() const;
  View cluster_view() const;
  // Active in view() and no evidence of a higher view: this replica takes
  // part in the cluster's current view (readiness, docs/protocol.md).
  bool in_cluster_view() const { return view_active_ && ProvenView() <= view_; }
  size_t queued_requests() const { return queue_.size(); }
  const Stats& stats() const { return stats_; }
  const v1::CheckpointProof& stable_checkpoint() const { return stable_proof_; }

  struct PreparedEntry {
    View view;
    Seq seq;
    Digest digest;
  };
  // Every (view, seq, digest) this replica holds as prepared, ascending.
  std::vector<PreparedEntry> PreparedEntries() const;
  // The prepared certificates its VIEW-CHANGE would carry now (the
  // highest view per seq above h), ascending by seq.
  std::vector<PreparedEntry> PreparedCertificates() const;

 private:
  // A valid VIEW-CHANGE, the latest one per sender.
  struct ViewChangeMsg {
    View view;
    v1::Envelope envelope;
    v1::ViewChange vc;
  };
  struct ClientRecord {
    RequestNumber last_executed;
    RequestNumber last_ordered;  // Highest handed out for execution.
    std::string result;
    bool replied = false;  // result is last_executed's (resent on a duplicate).
  };
  struct Queued {
    v1::Envelope envelope;
    ClientId client;
    RequestNumber number;
    uint64_t arrival_tick = 0;
    size_t bytes = 0;
    // The view whose primary the client said it sent this request to as
    // well (every copy that came said so); unset if any copy did not.
    std::optional<View> sent_to_primary_of;
  };
  using RequestKey = std::pair<uint64_t, uint64_t>;  // (client, number)

  // The view-change timeout doubles on each view change that fails and
  // returns to its base after progress; it stops doubling at this multiple
  // of the base (a bound the paper does not have; see docs/protocol.md).
  static constexpr uint64_t kViewChangeBackoffMax = 32;
  static constexpr size_t kFetchedProofsMax = 4;
  // A peer whose fetch response failed verification is skipped this long.
  static constexpr uint64_t kFetchBadPeerTicks = 400;
  // Bodies kept per seq (one per view a PRE-PREPARE was accepted in; the
  // oldest view goes first).
  static constexpr size_t kBodiesPerSeqMax = 4;
  // One FETCH_REQUEST for a missing body every this many ticks, to the next
  // peer in turn (peers rate-limit fetches: replica/fetch_server.h).
  static constexpr uint64_t kBodyFetchIntervalTicks = 2;

  // --- core.cc: dispatch, output, evidence of where the cluster is.
  ReplicaId PrimaryOf(View v) const { return certs_.PrimaryOf(v); }
  bool InWindow(Seq s) const {
    return s > low_watermark_ && s <= high_watermark();
  }
  void Drop(DropReason reason) {
    ++stats_.dropped[static_cast<size_t>(reason)];
  }
  void Broadcast(v1::Envelope e);
  void SendTo(ReplicaId to, v1::Envelope e);
  void NoteSeq(uint64_t sender, Seq s, std::vector<Seq>* seen);
  Seq HighestSeenBy(const std::vector<Seq>& per_replica) const;
  Seq BehindEvidence() const { return HighestSeenBy(highest_seq_seen_); }
  void NoteView(uint64_t sender, View v);
  // The higher of the (f+1)-th highest view reported by distinct replicas
  // and the highest view of a verified fetched commit certificate.
  View ProvenView() const;
  // Evidence says a NEW-VIEW this replica has not accepted exists.
  bool MissedNewView() const {
    const View proven = ProvenView();
    return proven > view_ || (proven == view_ && !view_active_);
  }
  // Since it started, this replica heard from 2f other replicas (any message
  // that passed the shell's checks): it knows where the cluster is.
  bool HeardFromQuorum() const { return heard_count_ + 1 >= quorum_; }
  void NoteHeard(uint32_t sender);

  // --- requests.cc: request queue and admission (§4.1).
  bool AdmitNumber(ClientId c, RequestNumber t);
  bool HandedOut(ClientId c, RequestNumber t) const;
  bool Enqueue(const v1::Envelope& e, ClientId c, RequestNumber t,
               std::optional<View> sent_to_primary_of);
  // Removes one queued request (and its share of its client's quota).
  void Dequeue(std::map<uint64_t, Queued>::iterator it);
  // Removes the client's queued requests numbered <= t (they are ordered
  // now, or stale: those below t get a stale rejection).
  void RemoveQueuedUpTo(ClientId c, RequestNumber t);
  // The REPLY for the client's last executed request, in the current view.
  ClientReply ReplyFor(ClientId client, const ClientRecord& record) const;
  void Reject(ClientId c, RequestNumber t, v1::RejectReason reason,
              RequestNumber last = RequestNumber(0));
  // Rejects (c, t) as stale, naming the client's last executed or
  // committed number (which must be above t).
  void RejectStale(ClientId c, RequestNumber t);

  // --- normal_case.cc (§4.2). Handlers: filter, assert, mutate, emit.
  void MaybeCutBatches();
  void SendPrePrepare();
  void HandlePrePrepare(const v1::Envelope& e);
  // PRE-PREPARE batch checks shared by acceptance paths.
  bool CheckBatch(const google::protobuf::RepeatedPtrField<v1::Envelope>& batch,
                  const Digest& digest,
                  std::vector<std::pair<ClientId, RequestNumber>>* requests);
  bool CheckTimestamp(Seq s, uint64_t timestamp_ms) const;
  void HandlePrepare(const v1::Envelope& e);
  void HandleCommit(const v1::Envelope& e);
  // The shared filters of PREPARE and COMMIT; records the vote in `votes`
  // of its slot and returns the slot's seq, or nullopt if it was dropped
  // or changes nothing.
  template <typename VoteMessage>
  std::optional<Seq> AcceptVote(const v1::Envelope& e,
                                VotesBySender Slot::*votes, bool backups_only);
  // This replica's PREPARE or COMMIT for the slot's (view, s, digest).
  template <typename VoteMessage>
  v1::Envelope SignVote(v1::MessageType type, Seq s, const Slot& slot) const;
  void SendOwnPrepare(Seq s, Slot* slot);
  void CheckPrepared(Seq s);
  void CheckCommitted(Seq s);
  void HandOutCommitted();
  void Retransmit();

  // --- checkpoints.cc (§4.3).
  void TakeCheckpoint(Seq s, const Digest& state_digest);
  void HandleCheckpoint(const v1::Envelope& e);
  void AnswerStableVote(ReplicaId from, Seq s, const Digest& d);
  void CheckStable(Seq s);
  void MakeStable(Seq s, const Digest& digest,
                  std::vector<v1::Envelope> checkpoints);
  void AdoptStableProof(Seq s, const Digest& digest,
                        const v1::CheckpointProof& proof);
  // Keeps a verified stable proof beyond the window (state transfer) and
  // lists its CHECKPOINTs for persisting, so that batches executed up to it
  // are still inside the window Restore rebuilds after a crash.
  void AdoptFetchedProof(Seq s, const v1::CheckpointProof& proof);

  // --- view_change.cc (§4.4); the O set is computed by new_view.h.
  void UpdateViewChangeTimer(bool executed_one);
  void OnViewChangeTimer();
  void HoldViewChangeTimer();
  // Half-way through the view-change timer: ask a peer for what this replica
  // may have missed, so that a replica that is merely behind catches up
  // before it would time out alone.
  void ProbeBeforeTimeout();
  // A backup sends every request it holds to the current primary.
  void ForwardHeldRequests();
  // Whether a backup has held `q` long enough to forward it: the primary's
  // batch_delay_ticks and forward_delay_ticks (unless forward_delay_ticks
  // is 0: then it forwards each as it arrives).
  bool HeldLong(const Queued& q) const;
  // Whether the client said it sent `q` to this view's primary too: then a
  // backup leaves the forwarding to its view-change timer's probe
  // (ProbeBeforeTimeout), or to WordHeldLong, whichever comes first. A
  // false word delays only that request.
  bool PrimaryHasCopy(const Queued& q) const;
  // Whether `q` has been held longer than half the base view-change timeout:
  // the most the client's word holds it back. The probe alone would not do:
  // under load the timer restarts at every block executed and never reaches it.
  bool WordHeldLong(const Queued& q) const;
  // Forwards the requests HeldLong that no PRE-PREPARE of
  // the current view carries (each once; backups, every tick), those the
  // client's word held back once WordHeldLong.
  void ForwardLateRequests();
  // Of ForwardLateRequests: sends `q` on unless a PRE-PREPARE of the view
  // carries it (`proposed`, gathered on first use); whether it did.
  bool ForwardUnlessProposed(
      const Queued& q,
      std::optional<absl::flat_hash_set<RequestKey>>* proposed);
  // The requests that PRE-PREPAREs of the current view not yet executed
  // here carry. At most L slots are looked at.
  absl::flat_hash_set<RequestKey> ProposedInView() const;
  void RecordPreparedCert(Seq s, const Slot& slot);
  void StartViewChange(View target);
  void SendOwnViewChange();
  v1::Envelope BuildViewChange() const;
  void HandleViewChange(const v1::Envelope& e);
  void MaybeJoin();
  void MaybeStartNewViewTimer();
  void MaybeSendNewView();
  void HandleNewView(const v1::Envelope& e);
  bool CheckNewViewSet(const v1::NewView& nv, View v,
                       std::vector<v1::ViewChange>* parsed) const;
  bool CheckNewViewO(const v1::NewView& nv, uint64_t primary,
                     const std::vector<OEntry>& o,
                     std::vector<v1::Envelope>* pps) const;
  void EnterView(View v, const v1::Envelope& new_view,
                 std::vector<v1::Envelope> o, Seq min_s,
                 const v1::CheckpointProof& min_proof);
  void PendO(std::vector<v1::Envelope> o, Seq min_s);
  void InstallPendingO();
  // Sends the NEW-VIEW of the current view to `to`, rate-limited per peer.
  void OfferNewView(ReplicaId to);

  // --- bodies.cc (§4.4: O carries digests; bodies are fetched by digest).
  void KeepBody(Seq s, const Digest& d, View v, const v1::Envelope& pe);
  const Body* FindBody(Seq s, const Digest& d) const;
  // Puts the batch beside the slot's PRE-PREPARE if it is known here (the
  // null batch always is); then the slot may prepare.
  bool AttachBody(Seq s, Slot* slot);
  // A slot above the last handed-out seq holds a PRE-PREPARE without body.
  bool BodiesMissing() const;
  // The slot's batch arrived: note its requests; a backup multicasts its
  // PREPARE for an O entry; check whether it prepared.
  void OnBodyAttached(Seq s, Slot* slot, bool send_prepare);
  void MaybeFetchBody();
  void HandleFetchedBody(const v1::Envelope& pe, uint64_t from);

  // --- state_transfer.cc.
  void MaybeFetch();
  // Moves fetch_peer_ to the next peer not recently caught serving garbage.
  void NextFetchPeer();
  void SendFetch();
  void HandleFetchRequest(const v1::Envelope& e);
  void HandleFetchResponse(const v1::Envelope& e);
  bool AdoptCertifiedBatches(const v1::FetchResponse& resp, uint64_t sender,
                             bool asked);
  void OnBadFetchResponse(uint64_t sender, bool asked);
  // Highest seq a fetched batch may have: H, or a verified fetched proof.
  Seq FetchLimit() const;

  // --- restore.cc.
  struct StoredVotes;
  struct StoredEntries;
  absl::Status DecodeStored(const v1::Envelope& e, View view,
                            StoredEntries* out) const;
  absl::Status DecodeStoredPrePrepare(const v1::Envelope& e,
                                      StoredEntries* out) const;
  std::map<Seq, v1::CheckpointProof> ProofsAhead(const StoredEntries& stored,
                                                 Seq h) const;
  void RestoreVotes(const StoredEntries& stored);
  bool RestoreSlot(Seq s, View v, const StoredVotes& votes);
  void RestoreNewView(const v1::Envelope& new_view);

  // --- invariants.cc.
  absl::Status QueueInvariants() const;
  absl::Status SlotInvariants(Seq s, const Slot& slot) const;
  absl::Status ViewChangeInvariants() const;

  const Options options_;
  const Signer* const signer_;
  const Verifier* const verifier_;
  const uint32_t quorum_;  // 2f+1.
  const CertificateChecker certs_;

  // Protocol state.
  View view_{0};
  bool view_active_ = true;
  Seq low_watermark_{0};  // h: seq of the last stable checkpoint.
  Seq last_assigned_{0};  // Primary: last seq it pre-prepared.
  Seq last_handed_out_{0};
  Seq last_executed_{0};
  uint64_t last_executed_timestamp_ms_ = 0;
  uint64_t last_assigned_timestamp_ms_ = 0;
  std::map<Seq, Slot> log_;  // Keys in (h, h+L].
  // Checkpoint votes with seq >= h: seq -> sender -> vote.
  std::map<Seq, VotesBySender> checkpoints_;
  v1::CheckpointProof stable_proof_;
  // Verified proofs (fetch responses, NEW-VIEW) above the executed seq;
  // at most kFetchedProofsMax, the highest kept.
  std::map<Seq, v1::CheckpointProof> fetched_proofs_;
  std::map<Seq, PreparedCert> prepared_certs_;       // Keys in (h, H].
  std::map<ReplicaId, ViewChangeMsg> view_changes_;  // At most n.
  std::optional<v1::Envelope> own_view_change_;
  std::optional<v1::Envelope> new_view_;  // The NEW-VIEW of view_.
  // O entries of the current view not yet in the log (above H when the
  // view was entered): installed as the window moves.
  std::map<Seq, v1::Envelope> pending_o_;
  // Bodies by seq in (h, H] (Body); at most kBodiesPerSeqMax per seq.
  std::map<Seq, std::vector<Body>> bodies_;
  uint32_t body_fetch_peer_ = 0;
  Seq body_fetch_next_{0};  // Seq after the last body asked for.

  // Clients and requests. Hash maps are only looked up, never iterated.
  absl::flat_hash_map<uint64_t, ClientRecord> clients_;
  std::map<uint64_t, Queued> queue_;  // Arrival order -> request.
  // (client, number) -> arrival; ordered so that HandOutCommitted can drop
  // a client's older queued requests in one range.
  std::map<RequestKey, uint64_t> queue_index_;
  absl::flat_hash_set<RequestKey> assigned_;  // Primary: in a batch.
  uint64_t next_arrival_ = 0;
  // Backups: arrivals below this were considered by ForwardLateRequests;
  // below word_next_, those the client's word held back too.
  uint64_t forward_next_ = 0;
  uint64_t word_next_ = 0;
  size_t queue_bytes_ = 0;
  // Each client's share of the queue (clients with something queued only).
  // Iterated only by Invariants, where order does not matter.
  struct ClientShare {
    size_t requests = 0;
    size_t bytes = 0;
  };
  absl::flat_hash_map<uint64_t, ClientShare> queued_by_client_;

  // Time and timers (ticks).
  uint64_t tick_ = 0;
  uint64_t now_ms_ = 0;
  // View-change timer (§4.4): remaining ticks, 0 = stopped. On expiry the
  // next issue starts a view change; timeout doubles on each failed view
  // change and returns to base after progress.
  uint64_t view_change_timer_ticks_ = 0;
  uint64_t view_change_timeout_ticks_;
  // The timer expired once while this replica was behind and it fetched
  // instead of changing views; cleared when a batch executes.
  bool timer_deferred_ = false;
  // Per replica: a message from it reached this core since it started.
  std::vector<bool> heard_;
  uint32_t heard_count_ = 0;
  Seq executed_at_last_fetch_check_{0};
  uint32_t fetch_peer_ = 0;
  bool fetch_outstanding_ = false;  // Awaiting fetch_peer_'s response.
  bool fetch_continue_ = false;     // Fetch again once all is executed.
  // The last asked-for response was full (fetch_blocks_max batches): there
  // may be more even without evidence (a probe's answer).
  bool fetch_response_full_ = false;
  uint64_t next_probe_tick_ = 0;  // Earliest tick for the next idle probe.
  std::vector<uint64_t> fetch_bad_until_;  // Per replica: skip until tick.
  // Per replica: this replica's executed seq when that peer last answered
  // an asked fetch with no batches (it has nothing above it yet).
  std::vector<Seq> fetch_empty_at_;
  std::vector<Seq> highest_seq_seen_;     // Per replica, any message.
  std::vector<Seq> highest_commit_seen_;  // Per replica, COMMITs only.
  std::vector<View> highest_view_seen_;   // Per replica.
  View certified_view_{0};  // Highest view of a verified fetched batch.
  std::vector<uint64_t> new_view_offered_until_;  // Per replica: tick.
  // Per replica: the tick before which our stable checkpoint is not sent
  // to it again (once per retransmit_ticks, as the one above),
  // so two replicas that both have it stable answer each other once.
  std::vector<uint64_t> stable_offered_until_;

  Ready ready_;
  Stats stats_;
};

}  // namespace pbft::core

#endif  // PBFT_LEDGER_REPLICA_CORE_CORE_H_
