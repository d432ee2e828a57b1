#include "tests/fuzz/fuzz_harness.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/proto_names.h"
#include "ledger/v1/ledger.pb.h"

namespace pbft::fuzz {
namespace {

// Signs `e` again; true if its signature changed.
bool Resigned(const TestCluster& tc, pbft::v1::Envelope* e) {
  const std::string before = e->signature();
  tc.Resign(e);
  return e->signature() != before;
}

// A PRE-PREPARE envelope with the requests beside it signed again (and,
// with `fix`, its batch digest made theirs). Its payload is re-encoded only
// if the digest changed, so the fuzzer's exact bytes survive otherwise.
// `*digest` receives the batch digest it names.
void ResignPrePrepare(const TestCluster& tc, pbft::v1::Envelope* e, bool fix,
                      std::string* digest) {
  pbft::v1::PrePrepare pp;
  if (e->type() == pbft::v1::MESSAGE_TYPE_PRE_PREPARE &&
      pp.ParseFromString(e->payload())) {
    // The batch travels beside the signed header (Envelope.batch).
    for (pbft::v1::Envelope& r : *e->mutable_batch()) Resigned(tc, &r);
    if (fix) {
      const std::string d = BatchDigest(e->batch()).ToBytes();
      if (d != pp.batch_digest()) {
        pp.set_batch_digest(d);
        e->set_payload(pp.SerializeAsString());
      }
    }
    *digest = pp.batch_digest();
  }
  tc.Resign(e);
}

void ResignCommit(const TestCluster& tc, pbft::v1::Envelope* e,
                  const std::string& digest, bool fix) {
  pbft::v1::Commit c;
  if (fix && c.ParseFromString(e->payload()) && c.batch_digest() != digest) {
    c.set_batch_digest(digest);
    e->set_payload(c.SerializeAsString());
  }
  tc.Resign(e);
}

std::string ResignFetchResponse(const TestCluster& tc,
                                const std::string& payload, bool fix) {
  pbft::v1::FetchResponse resp;
  if (!resp.ParseFromString(payload)) return payload;
  const std::string before = resp.SerializeAsString();
  for (pbft::v1::CertifiedBatch& b : *resp.mutable_batches()) {
    std::string digest;
    ResignPrePrepare(tc, b.mutable_pre_prepare(), fix, &digest);
    for (pbft::v1::Envelope& c : *b.mutable_certificate()->mutable_commits()) {
      ResignCommit(tc, &c, digest, fix);
    }
  }
  if (resp.has_stable_checkpoint()) {
    for (pbft::v1::Envelope& c :
         *resp.mutable_stable_checkpoint()->mutable_checkpoints()) {
      tc.Resign(&c);
    }
  }
  if (resp.has_batch_pre_prepare()) {
    std::string digest;
    ResignPrePrepare(tc, resp.mutable_batch_pre_prepare(), fix, &digest);
  }
  std::string after = resp.SerializeAsString();
  return after == before ? payload : after;
}

// One in kSpotCheckEvery answers from the Memo is worked out again and
// compared, so a harness that remembered the wrong thing would show.
constexpr uint64_t kSpotCheckEvery = 1024;

bool SpotCheck() {
  static uint64_t hits = 0;
  return ++hits % kSpotCheckEvery == 0;
}

}  // namespace

bool Memo::Find(const Digest& key, std::string* value) const {
  const Slot& slot = SlotOf(key);
  if (!slot.used || slot.key != key) return false;
  value->assign(slot.value.data(), slot.size);
  return true;
}

void Memo::Put(const Digest& key, absl::string_view value) {
  CHECK_LE(value.size(), kValueMax);
  Slot& slot = SlotOf(key);
  slot.key = key;
  slot.used = true;
  slot.size = static_cast<uint8_t>(value.size());
  std::copy(value.begin(), value.end(), slot.value.begin());
}

Digest Memo::Key(absl::string_view tag, uint64_t a, uint64_t b,
                 absl::string_view bytes) {
  std::array<char, 16> head;
  std::memcpy(head.data(), &a, 8);
  std::memcpy(head.data() + 8, &b, 8);
  return crypto::Sha256Of(
      {tag, absl::string_view(head.data(), head.size()), bytes});
}

pbft::v1::Envelope TestCluster::Sign(pbft::v1::MessageType type,
                                     uint64_t sender,
                                     std::string payload) const {
  return SignRemembered(
      "sign", type, sender, std::move(payload),
      [&](std::string p) { return SignNow(type, sender, std::move(p)); });
}

pbft::v1::Envelope TestCluster::SignRemembered(
    absl::string_view tag, pbft::v1::MessageType type, uint64_t sender,
    std::string payload,
    const std::function<pbft::v1::Envelope(std::string)>& sign) const {
  const Digest key = Memo::Key(tag, type, sender, payload);
  std::string signature;
  if (remembered_.Find(key, &signature)) {
    if (SpotCheck()) {
      // Held in a local: CHECK_EQ binds its arguments by reference.
      const pbft::v1::Envelope again = sign(payload);
      CHECK_EQ(again.signature(), signature);
    }
    pbft::v1::Envelope e;
    e.set_type(type);
    e.set_sender(sender);
    e.set_payload(std::move(payload));
    e.set_signature(std::move(signature));
    return e;
  }
  pbft::v1::Envelope e = sign(std::move(payload));
  // What is remembered is all the signer adds to the payload.
  CHECK(e.type() == type && e.sender() == sender && e.batch_size() == 0);
  remembered_.Put(key, e.signature());
  return e;
}

pbft::v1::Envelope TestCluster::SignNow(pbft::v1::MessageType type,
                                        uint64_t sender,
                                        std::string payload) const {
  if (type == pbft::v1::MESSAGE_TYPE_REQUEST && sender >= 1 &&
      sender <= kClients) {
    return factory_.client(sender).Sign(type, std::move(payload));
  }
  if (type != pbft::v1::MESSAGE_TYPE_REQUEST && sender < kReplicas) {
    return factory_.replica(static_cast<uint32_t>(sender))
        .Sign(type, std::move(payload));
  }
  EnvelopeSigner impostor(cluster().cluster_id(), sender,
                          factory_.replica_key(0));
  return impostor.Sign(type, std::move(payload));
}

pbft::v1::Envelope TestCluster::SignAsCore(const core::Signer& signer,
                                           uint32_t id,
                                           pbft::v1::MessageType type,
                                           std::string payload) const {
  return SignRemembered(
      "core", type, id, std::move(payload),
      [&](std::string p) { return signer.Sign(type, std::move(p)); });
}

bool TestCluster::Verified(const pbft::v1::Envelope& e) {
  const Digest key =
      Memo::Key("verified", 0, 0, net::VerifiedCache::Key(e).view());
  std::string unused;
  if (remembered_.Find(key, &unused)) {
    if (SpotCheck()) CHECK(verifier_.Check(e) == EnvelopeError::kOk);
    return true;
  }
  if (verifier_.Check(e) != EnvelopeError::kOk) return false;
  remembered_.Put(key, "");
  return true;
}

absl::Status TestCluster::VerifyBatch(const ledger::v1::BlockHeader& header,
                                      const core::CommittedBatch& b,
                                      pbft::v1::PrePrepare* pp) {
  const Digest key = crypto::Sha256(
      absl::StrCat("batch/", header.SerializeAsString(), "/", b.view.value(),
                   "/", b.pre_prepare.SerializeAsString(), "/",
                   b.certificate.SerializeAsString()));
  std::string unused;
  if (remembered_.Find(key, &unused)) {
    if (SpotCheck()) {
      CHECK_OK(ledger::VerifyBlockCommit(cluster(), verifier_, header,
                                         b.view.value(), b.pre_prepare,
                                         b.certificate, nullptr));
    }
    CHECK(pp->ParseFromString(b.pre_prepare.payload()));
    return absl::OkStatus();
  }
  absl::Status s =
      ledger::VerifyBlockCommit(cluster(), verifier_, header, b.view.value(),
                                b.pre_prepare, b.certificate, pp);
  if (s.ok()) remembered_.Put(key, "");
  return s;
}

std::string ResignNested(const TestCluster& tc, pbft::v1::MessageType type,
                         const std::string& payload, bool fix_digests) {
  if (type == pbft::v1::MESSAGE_TYPE_FETCH_RESPONSE) {
    return ResignFetchResponse(tc, payload, fix_digests);
  }
  if (type != pbft::v1::MESSAGE_TYPE_PRE_PREPARE) return payload;
  pbft::v1::Envelope e;
  e.set_type(type);
  e.set_payload(payload);
  std::string digest;
  ResignPrePrepare(tc, &e, fix_digests, &digest);
  return e.payload();
}

CoreHarness::CoreHarness(TestCluster* tc, uint32_t id)
    : tc_(tc),
      signer_(tc, id),
      verifier_(&tc->pool()),
      core_(std::make_unique<core::Core>(CoreOptions(id), &signer_,
                                         &verifier_)) {}

bool CoreHarness::Deliver(const pbft::v1::Envelope& e) {
  if (tc_->pool().Check(e) != net::DropReason::kCount) return false;
  if (e.type() == pbft::v1::MESSAGE_TYPE_REQUEST) {
    core_->OnRequest(e);
  } else {
    core_->Step(e);
  }
  Drain();
  return true;
}

bool CoreHarness::Apply(const Record& r) {
  if ((r.kind & 0x8f) == 0) {
    Tick(std::min<uint32_t>(r.sender, 64));
    return false;
  }
  pbft::v1::Envelope e;
  if (r.kind & 0x80) {
    if (!e.ParseFromString(r.body)) return false;
  } else if (r.kind & 0x20) {
    // A whole envelope (a PRE-PREPARE with its batch beside the header),
    // signed again as `sender`, with what it nests.
    if (!e.ParseFromString(r.body)) return false;
    const auto type = static_cast<pbft::v1::MessageType>(r.kind & 0x0f);
    e.set_type(type);
    e.set_sender(r.sender);
    std::string digest;
    if (type == pbft::v1::MESSAGE_TYPE_PRE_PREPARE) {
      ResignPrePrepare(*tc_, &e, r.kind & 0x40, &digest);
    } else {
      e.set_payload(ResignNested(*tc_, type, e.payload(), r.kind & 0x40));
      tc_->Resign(&e);
    }
  } else {
    const auto type = static_cast<pbft::v1::MessageType>(r.kind & 0x0f);
    e = tc_->Sign(type, r.sender,
                  ResignNested(*tc_, type, r.body, r.kind & 0x40));
  }
  return Deliver(e);
}

void CoreHarness::Request(const pbft::v1::Envelope& e) {
  core_->OnRequest(e);
  Drain();
}

void CoreHarness::Tick(uint32_t ticks) {
  for (uint32_t i = 0; i < ticks; ++i) {
    now_ms_ += FuzzParams().tick_ms;
    core_->Tick(now_ms_);
    Drain();
  }
}

void CoreHarness::Drain() {
  while (core_->HasReady()) {
    core::Ready ready = core_->TakeReady();
    for (const core::Outbound& m : ready.messages) CheckSent(m);
    for (const core::CommittedBatch& b : ready.execute) CheckBatch(b);
    for (const core::ClientReply& r : ready.replies) {
      CHECK_EQ(r.reply.client_id(), r.client_id.value());
    }
  }
  const absl::Status invariants = core_->Invariants();
  if (!invariants.ok()) {
    std::fprintf(stderr, "core invariant broken: %s\n",
                 invariants.ToString().c_str());
    CHECK_OK(invariants);
  }
}

// A peer's VerifyPool must accept everything a correct core sends.
void CoreHarness::CheckSent(const core::Outbound& m) {
  const net::DropReason r = tc_->pool().Check(m.envelope);
  if (r != net::DropReason::kCount) {
    std::fprintf(stderr, "core sent a %s its peers drop: %s\n",
                 pbft::v1::MessageType_Name(m.envelope.type()).c_str(),
                 net::DropReasonName(r));
    CHECK(false);
  }
  CHECK(m.broadcast || m.to.value() < kReplicas);
  CHECK(m.broadcast || m.to != core_->id());
  if (keep_) sent_.push_back(m);
}

// What the ledger and `ledgerctl verify` require of an executed batch.
void CoreHarness::CheckBatch(const core::CommittedBatch& b) {
  CHECK_EQ(b.seq.value(), executed_ + 1);
  ledger::v1::BlockHeader header;
  header.set_height(b.seq.value());
  header.set_batch_digest(b.batch_digest.ToBytes());
  header.set_timestamp_ms(b.timestamp_ms);
  pbft::v1::PrePrepare pp;
  const absl::Status s = tc_->VerifyBatch(header, b, &pp);
  if (!s.ok()) {
    std::fprintf(stderr, "core executes seq %lu without a valid commit: %s\n",
                 static_cast<unsigned long>(b.seq.value()),
                 s.ToString().c_str());
    CHECK_OK(s);
  }
  const auto& batch = BatchOf(b.pre_prepare, pp);
  CHECK(BatchDigest(batch) == b.batch_digest);
  std::vector<core::ExecutedReply> replies;
  for (const pbft::v1::Envelope& e : batch) {
    pbft::v1::Request r;
    CHECK(r.ParseFromString(e.payload()));
    replies.push_back({ClientId(r.client_id()),
                       RequestNumber(r.request_number()), "executed"});
  }
  executed_ = b.seq.value();
  if (keep_) batches_.push_back(b);
  core_->OnExecuted(b.seq, StateDigestFor(b.seq.value()), std::move(replies));
}

}  // namespace pbft::fuzz
