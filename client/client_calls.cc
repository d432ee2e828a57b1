// The typed calls of Client over Submit and Query, ClientStats' arithmetic,
// and the id helpers (client/client.h); the calls themselves go through
// GrpcClient (client.cc).
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/crypto.h"
#include "replica/ledger/block.h"

namespace pbft::client {

ClientStats& ClientStats::operator+=(const ClientStats& o) {
  ordered_sends += o.ordered_sends;
  sent_to_all_first += o.sent_to_all_first;
  widened_by_timer += o.widened_by_timer;
  widened_early += o.widened_early;
  widened_by_hedge += o.widened_by_hedge;
  replicas_left_out += o.replicas_left_out;
  throttled += o.throttled;
  words_withdrawn += o.words_withdrawn;
  return *this;
}

ClientStats operator-(ClientStats a, const ClientStats& b) {
  a.ordered_sends -= b.ordered_sends;
  a.sent_to_all_first -= b.sent_to_all_first;
  a.widened_by_timer -= b.widened_by_timer;
  a.widened_early -= b.widened_early;
  a.widened_by_hedge -= b.widened_by_hedge;
  a.replicas_left_out -= b.replicas_left_out;
  a.throttled -= b.throttled;
  a.words_withdrawn -= b.words_withdrawn;
  return a;
}

std::future<absl::StatusOr<ledger::v1::OperationResults>> Client::SubmitFuture(
    const ledger::v1::OperationBatch& batch, absl::Duration deadline) {
  auto p = std::make_shared<
      std::promise<absl::StatusOr<ledger::v1::OperationResults>>>();
  auto f = p->get_future();
  SubmitAsync(batch, Deadline(deadline),
              [p](absl::StatusOr<ledger::v1::OperationResults> r) {
                p->set_value(std::move(r));
              });
  return f;
}

absl::StatusOr<ledger::v1::OperationResults> Client::CreateAccounts(
    const std::vector<ledger::v1::CreateAccount>& accounts,
    absl::Duration deadline) {
  ledger::v1::OperationBatch b;
  for (const auto& a : accounts)
    *b.add_operations()->mutable_create_account() = a;
  return Submit(b, deadline);
}

absl::StatusOr<ledger::v1::OperationResults> Client::Transfers(
    const std::vector<ledger::v1::Transfer>& transfers,
    absl::Duration deadline) {
  ledger::v1::OperationBatch b;
  for (const auto& t : transfers) *b.add_operations()->mutable_transfer() = t;
  return Submit(b, deadline);
}

absl::StatusOr<ledger::v1::OperationResults> Client::Mint(
    const ledger::v1::Mint& mint, absl::Duration deadline) {
  ledger::v1::OperationBatch b;
  *b.add_operations()->mutable_mint() = mint;
  return Submit(b, deadline);
}

namespace {
absl::Status NotFound(const ledger::v1::QueryReply& r) {
  return absl::NotFoundError(r.not_found());
}
}  // namespace

absl::StatusOr<ledger::v1::QueryReply> Client::OrderedQuery(
    const ledger::v1::Query& query, absl::Duration deadline) {
  ledger::v1::OperationBatch b;
  *b.add_operations()->mutable_query() = query;
  absl::StatusOr<ledger::v1::OperationResults> r = Submit(b, deadline);
  if (!r.ok()) return r.status();
  if (r->results_size() != 1 ||
      r->results(0).code() != ledger::v1::RESULT_CODE_OK) {
    return absl::FailedPreconditionError(absl::StrCat(
        "ordered query: ", r->results_size() == 1 ? ledger::v1::ResultCode_Name(
                                                        r->results(0).code())
                                                  : "malformed results"));
  }
  if (!r->results(0).has_answer()) {
    // Only a resent duplicate reply lacks its answer; ask again.
    return absl::UnavailableError("ordered query: reply without answer; retry");
  }
  return r->results(0).answer();
}

absl::StatusOr<ledger::v1::QueryReply> Client::Read(
    const ledger::v1::Query& query, absl::Duration deadline) {
  const absl::Duration d = Deadline(deadline);
  if (linearizable_reads_) return OrderedQuery(query, d);
  // Castro–Liskov §5.1: the read-only answer needs 2f+1 matching replies; when
  // replicas disagree (some are behind) or too few answer, retry as an
  // ordered request, which needs only f+1.
  absl::StatusOr<ledger::v1::QueryReply> r = Query(query, d / 2);
  if (r.ok() || !absl::IsDeadlineExceeded(r.status())) return r;
  return OrderedQuery(query, d / 2);
}

absl::StatusOr<ledger::v1::Account> Client::GetAccount(
    const ledger::v1::Uint128& id, absl::Duration deadline) {
  ledger::v1::Query q;
  *q.mutable_get_account()->mutable_id() = id;
  absl::StatusOr<ledger::v1::QueryReply> r = Read(q, deadline);
  if (!r.ok()) return r.status();
  if (!r->has_account()) return NotFound(*r);
  return r->account();
}

absl::StatusOr<ledger::v1::TransferRecord> Client::GetTransfer(
    const ledger::v1::Uint128& id, absl::Duration deadline) {
  ledger::v1::Query q;
  *q.mutable_get_transfer()->mutable_id() = id;
  absl::StatusOr<ledger::v1::QueryReply> r = Read(q, deadline);
  if (!r.ok()) return r.status();
  if (!r->has_transfer()) return NotFound(*r);
  return r->transfer();
}

absl::StatusOr<ledger::v1::HistoryPage> Client::History(
    const ledger::v1::Uint128& account_id, uint32_t limit,
    const ledger::v1::Uint128& cursor, absl::Duration deadline) {
  ledger::v1::Query q;
  *q.mutable_get_history()->mutable_account_id() = account_id;
  q.mutable_get_history()->set_limit(limit);
  *q.mutable_get_history()->mutable_cursor() = cursor;
  absl::StatusOr<ledger::v1::QueryReply> r = Read(q, deadline);
  if (!r.ok()) return r.status();
  if (!r->has_history()) return NotFound(*r);
  return r->history();
}

absl::StatusOr<ledger::v1::Block> Client::GetBlock(uint64_t height,
                                                   absl::Duration deadline) {
  ledger::v1::Query q;
  q.mutable_get_block()->set_height(height);
  absl::StatusOr<ledger::v1::QueryReply> r = Read(q, deadline);
  if (!r.ok()) return r.status();
  if (!r->has_block()) return NotFound(*r);
  // A read-only answer carries a commit certificate the SDK verified; an
  // ordered one (the fallback) is certified by f+1 matching replies instead
  // and has none (docs/api.md "Blocks").
  ledger::v1::Block block = std::move(*r->mutable_block());
  if (r->has_block_commit()) {
    ledger::v1::BlockCommit* c = r->mutable_block_commit();
    block.set_view(c->view());
    *block.mutable_pre_prepare() = std::move(*c->mutable_pre_prepare());
    *block.mutable_certificate() = std::move(*c->mutable_certificate());
  }
  return block;
}

absl::StatusOr<ledger::v1::Receipt> Client::GetReceipt(
    const ledger::v1::Uint128& transfer_id, absl::Duration deadline) {
  ledger::v1::Query q;
  *q.mutable_get_receipt()->mutable_transfer_id() = transfer_id;
  // Read-only only: an ordered answer would carry no certificate.
  absl::StatusOr<ledger::v1::QueryReply> r = Query(q, Deadline(deadline));
  if (!r.ok()) return r.status();
  if (!r->has_receipt()) return NotFound(*r);
  ledger::v1::Receipt receipt = std::move(*r->mutable_receipt());
  receipt.set_view(r->block_commit().view());
  *receipt.mutable_certificate() =
      std::move(*r->mutable_block_commit()->mutable_certificate());
  absl::StatusOr<ledger::ReceiptSummary> s =
      ledger::VerifyReceipt(cluster(), receipt);
  if (!s.ok()) {
    return absl::DataLossError(
        absl::StrCat("receipt from 2f+1 matching answers does not verify: ",
                     s.status().message()));
  }
  return receipt;
}

absl::StatusOr<ledger::v1::ChainHead> Client::GetHead(absl::Duration deadline) {
  ledger::v1::Query q;
  q.mutable_get_head();
  absl::StatusOr<ledger::v1::QueryReply> r = Read(q, deadline);
  if (!r.ok()) return r.status();
  if (!r->has_head()) return NotFound(*r);
  return r->head();
}

ledger::v1::Uint128 MakeId(uint64_t high, uint64_t low) {
  ledger::v1::Uint128 id;
  id.set_high(high);
  id.set_low(low);
  return id;
}

ledger::v1::Uint128 NewId() {
  static absl::Mutex mu(absl::kConstInit);
  static uint64_t last_high ABSL_GUARDED_BY(mu) = 0;
  static uint64_t last_low ABSL_GUARDED_BY(mu) = 0;
  const auto ms = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())) &
                  0xffffffffffffull;
  absl::MutexLock l(&mu);
  if (ms > last_high >> 16) {
    // A new millisecond: the time and 80 fresh random bits.
    const std::string random = crypto::RandomBytes(10);
    uint64_t r_high = 0, r_low = 0;
    for (int i = 0; i < 2; ++i) {
      r_high = r_high << 8 | static_cast<uint8_t>(random[i]);
    }
    for (int i = 2; i < 10; ++i) {
      r_low = r_low << 8 | static_cast<uint8_t>(random[i]);
    }
    last_high = ms << 16 | r_high;
    last_low = r_low;
  } else {
    // The same millisecond, or a clock that stepped back: one past the
    // last id, so ids of this process never repeat and never go backwards.
    if (++last_low == 0) ++last_high;
  }
  return MakeId(last_high, last_low);
}

absl::StatusOr<ledger::v1::Uint128> ParseId(const std::string& text,
                                            const std::string& field) {
  uint64_t high = 0, low = 0;
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  bool ok = false;
  if (parts.size() == 2) {
    ok = absl::SimpleAtoi(parts[0], &high) && absl::SimpleAtoi(parts[1], &low);
  } else if (text.rfind("0x", 0) == 0) {
    ok = text.size() > 2 && text.size() <= 18 &&
         absl::SimpleHexAtoi(text.substr(2), &low);
  } else {
    ok = absl::SimpleAtoi(text, &low);
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": '", text, "' is not an id (decimal, 0xHEX, or HIGH:LOW)"));
  }
  return MakeId(high, low);
}

std::string IdToString(const ledger::v1::Uint128& id) {
  if (id.high() == 0) return absl::StrCat(id.low());
  return absl::StrCat(id.high(), ":", id.low());
}

}  // namespace pbft::client
