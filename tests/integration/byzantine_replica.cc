// byzantine-replica: a test-only program that plays one replica's slot with
// that replica's real key and misbehaves on the wire. It is built only
// under tests/ and never installed: a production ledgerd has no way to do
// any of this.
//
// It listens on the replica's address (so the correct replicas stream their
// messages to it), follows the protocol just enough to make its misbehaviour
// look valid, and runs the attacks named by --attack for --attack-seconds,
// then falls silent (keeps reading, sends nothing) for --silent-seconds:
//
//   pad          PREPAREs, COMMITs and CHECKPOINTs with the right view, seq
//                and digests, padded with an unknown field to --pad-bytes,
//                each followed by the same vote unpadded: a replica that
//                keeps the first vote it gets stores the padded one
//   fetch-flood  FETCH_REQUESTs for 64 blocks from height 1, --rate a second
//                to every peer
//   vote-flood   validly signed PREPAREs for seqs far above the window,
//                --rate a second to every peer (fills intake queues)
//   no-read      stops reading its inbound streams during the attack, so
//                the correct replicas' send queues to it fill up
//
//   byzantine-replica --config FILE --id I --key FILE --attack a,b
//       [--attack-seconds S] [--silent-seconds S] [--pad-bytes B] [--rate R]
//
// Last line: JSON with what it sent.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/bounded_queue.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/keyfile.h"
#include "common/proto_names.h"
#include "ledger/v1/service.grpc.pb.h"
#include "replica/net/peer_sender.h"

namespace pbft::test {
namespace {

struct Flags {
  std::string config, key;
  uint32_t id = 0;
  std::vector<std::string> attacks;
  int attack_seconds = 10;
  int silent_seconds = 10;
  size_t pad_bytes = 1 << 20;
  int rate = 2000;
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    bool ok = true;
    if (k == "--config") {
      f->config = v;
    } else if (k == "--key") {
      f->key = v;
    } else if (k == "--id") {
      ok = absl::SimpleAtoi(v, &f->id);
    } else if (k == "--attack") {
      f->attacks = absl::StrSplit(v, ',', absl::SkipEmpty());
    } else if (k == "--attack-seconds") {
      ok = absl::SimpleAtoi(v, &f->attack_seconds);
    } else if (k == "--silent-seconds") {
      ok = absl::SimpleAtoi(v, &f->silent_seconds);
    } else if (k == "--pad-bytes") {
      ok = absl::SimpleAtoi(v, &f->pad_bytes);
    } else if (k == "--rate") {
      ok = absl::SimpleAtoi(v, &f->rate);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "byzantine-replica: bad flag %s %s\n", k.c_str(),
                   v.c_str());
      return false;
    }
  }
  return !f->config.empty() && !f->key.empty() && !f->attacks.empty();
}

// Appends an unknown length-delimited field (number 15) of `bytes` bytes to
// a serialised message: it still parses, and today's receivers keep it.
std::string Padded(std::string payload, size_t bytes) {
  if (bytes == 0) return payload;
  payload.push_back(static_cast<char>((15 << 3) | 2));
  size_t len = bytes;
  while (len >= 0x80) {
    payload.push_back(static_cast<char>((len & 0x7f) | 0x80));
    len >>= 7;
  }
  payload.push_back(static_cast<char>(len));
  payload.append(bytes, 'p');
  return payload;
}

// Inbound: the correct replicas' streams to this slot.
class Inbound final : public ledger::v1::ReplicaService::Service {
 public:
  explicit Inbound(BoundedQueue<pbft::v1::Envelope>* out) : out_(out) {}
  void set_reading(bool r) { reading_ = r; }

  grpc::Status Stream(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<ledger::v1::StreamResponse,
                               ledger::v1::StreamRequest>* stream) override {
    ledger::v1::StreamRequest req;
    while (!ctx->IsCancelled()) {
      if (!reading_) {
        absl::SleepFor(absl::Milliseconds(50));
        continue;
      }
      if (!stream->Read(&req)) break;
      for (pbft::v1::Envelope& e : *req.mutable_envelopes()) {
        out_->TryPush(std::move(e));  // Dropped when the attacker lags.
      }
    }
    return grpc::Status::OK;
  }

 private:
  BoundedQueue<pbft::v1::Envelope>* out_;
  std::atomic<bool> reading_{true};
};

class Attacker {
 public:
  Attacker(const Cluster& cluster, const Flags& flags, crypto::SecretKey key)
      : cluster_(cluster),
        flags_(flags),
        signer_(cluster.cluster_id(), flags.id, std::move(key)) {}

  void AddPeer(uint32_t i, std::unique_ptr<net::PeerSender> p) {
    peers_[i] = std::move(p);
  }
  bool Has(const std::string& attack) const {
    for (const std::string& a : flags_.attacks)
      if (a == attack) return true;
    return false;
  }

  // One received envelope, during the attack.
  void OnMessage(const pbft::v1::Envelope& e) {
    if (!Has("pad")) return;
    if (e.type() == pbft::v1::MESSAGE_TYPE_PRE_PREPARE) {
      pbft::v1::PrePrepare pp;
      if (!pp.ParseFromString(e.payload())) return;
      Vote(pbft::v1::MESSAGE_TYPE_PREPARE, pp.view(), pp.seq(),
           pp.batch_digest());
      Vote(pbft::v1::MESSAGE_TYPE_COMMIT, pp.view(), pp.seq(),
           pp.batch_digest());
    } else if (e.type() == pbft::v1::MESSAGE_TYPE_CHECKPOINT) {
      pbft::v1::Checkpoint c;
      if (!c.ParseFromString(e.payload()) ||
          !seen_checkpoints_.insert(c.seq()).second)
        return;
      c.set_replica_id(flags_.id);
      Broadcast(pbft::v1::MESSAGE_TYPE_CHECKPOINT, c.SerializeAsString());
      Broadcast(pbft::v1::MESSAGE_TYPE_CHECKPOINT, c.SerializeAsString(),
                /*pad=*/false);
    }
  }

  // Rate-driven attacks, called every 10 ms during the attack.
  void OnTick(uint64_t tick) {
    const int per_tick = std::max(1, flags_.rate / 100);
    if (Has("fetch-flood")) {
      pbft::v1::FetchRequest r;
      r.set_replica_id(flags_.id);
      r.set_from_seq(1);
      r.set_max_blocks(64);
      for (int i = 0; i < per_tick; ++i)
        Broadcast(pbft::v1::MESSAGE_TYPE_FETCH_REQUEST, r.SerializeAsString(),
                  /*pad=*/false);
    }
    if (Has("vote-flood")) {
      for (int i = 0; i < per_tick; ++i) {
        pbft::v1::Prepare p;
        p.set_view(0);
        p.set_seq(1'000'000'000 + tick * per_tick + i);
        p.set_batch_digest(std::string(32, 'x'));
        p.set_replica_id(flags_.id);
        Broadcast(pbft::v1::MESSAGE_TYPE_PREPARE, p.SerializeAsString(),
                  /*pad=*/false);
      }
    }
  }

  std::string Summary() const {
    return absl::StrCat("{\"sent\":", sent_, ",\"send_refused\":", refused_,
                        ",\"attacks\":\"", absl::StrJoin(flags_.attacks, ","),
                        "\"}");
  }

 private:
  void Vote(pbft::v1::MessageType type, uint64_t view, uint64_t seq,
            const std::string& digest) {
    pbft::v1::Commit v;  // PREPARE has the same fields and numbers.
    v.set_view(view);
    v.set_seq(seq);
    v.set_batch_digest(digest);
    v.set_replica_id(flags_.id);
    Broadcast(type, v.SerializeAsString());
    Broadcast(type, v.SerializeAsString(), /*pad=*/false);
  }

  void Broadcast(pbft::v1::MessageType type, std::string payload,
                 bool pad = true) {
    if (pad) payload = Padded(std::move(payload), flags_.pad_bytes);
    const pbft::v1::Envelope e = signer_.Sign(type, std::move(payload));
    for (auto& [id, p] : peers_) {
      if (p->Send(e)) {
        ++sent_;
      } else {
        ++refused_;
      }
    }
  }

  const Cluster& cluster_;
  const Flags& flags_;
  EnvelopeSigner signer_;
  std::map<uint32_t, std::unique_ptr<net::PeerSender>> peers_;
  std::set<uint64_t> seen_checkpoints_;
  uint64_t sent_ = 0, refused_ = 0;
};

int Run(const Flags& flags) {
  absl::StatusOr<Cluster> cluster = Cluster::LoadFile(flags.config);
  absl::StatusOr<crypto::SecretKey> key = ReadKeyFile(flags.key);
  if (!cluster.ok() || !key.ok() || flags.id >= cluster->n()) {
    std::fprintf(stderr, "byzantine-replica: bad config, key or id\n");
    return 2;
  }
  BoundedQueue<pbft::v1::Envelope> inbox(65536);
  Inbound inbound(&inbox);
  const int max_msg =
      static_cast<int>(cluster->protocol().message_bytes_max) + (1 << 20);
  grpc::ServerBuilder b;
  int bound = 0;
  b.AddListeningPort(cluster->replica(ReplicaId(flags.id)).address(),
                     grpc::InsecureServerCredentials(), &bound);
  b.SetMaxReceiveMessageSize(max_msg);
  b.RegisterService(&inbound);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (server == nullptr || bound == 0) {
    std::fprintf(stderr, "byzantine-replica: cannot listen\n");
    return 2;
  }
  Attacker attacker(*cluster, flags, *std::move(key));
  net::PeerSenderOptions po;
  po.message_bytes_max = max_msg;
  po.queue_max = 1 << 16;
  for (uint32_t i = 0; i < cluster->n(); ++i) {
    if (i == flags.id) continue;
    attacker.AddPeer(i, std::make_unique<net::PeerSender>(
                            i, cluster->replica(ReplicaId(i)).address(),
                            grpc::InsecureChannelCredentials(), po));
  }
  std::fprintf(stderr, "byzantine-replica %u: attacking for %d s\n", flags.id,
               flags.attack_seconds);
  if (attacker.Has("no-read")) inbound.set_reading(false);
  const absl::Time attack_end =
      absl::Now() + absl::Seconds(flags.attack_seconds);
  std::vector<pbft::v1::Envelope> batch;
  for (uint64_t tick = 0; absl::Now() < attack_end; ++tick) {
    batch.clear();
    inbox.PopMany(&batch, 4096, absl::Milliseconds(10));
    for (const pbft::v1::Envelope& e : batch) attacker.OnMessage(e);
    attacker.OnTick(tick);
  }
  inbound.set_reading(true);
  std::fprintf(stderr, "byzantine-replica %u: silent for %d s\n", flags.id,
               flags.silent_seconds);
  const absl::Time silent_end =
      absl::Now() + absl::Seconds(flags.silent_seconds);
  while (absl::Now() < silent_end) {
    batch.clear();
    inbox.PopMany(&batch, 4096, absl::Milliseconds(100));
  }
  std::printf("%s\n", attacker.Summary().c_str());
  std::fflush(stdout);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  std::_Exit(0);  // Peer senders may be blocked on a full stream.
}

}  // namespace
}  // namespace pbft::test

int main(int argc, char** argv) {
  pbft::test::Flags flags;
  if (!pbft::test::ParseFlags(argc, argv, &flags)) {
    std::fprintf(stderr,
                 "usage: byzantine-replica --config FILE --id I --key FILE "
                 "--attack pad,fetch-flood,vote-flood,no-read "
                 "[--attack-seconds S] [--silent-seconds S] [--pad-bytes B] "
                 "[--rate R]\n");
    return 2;
  }
  return pbft::test::Run(flags);
}
