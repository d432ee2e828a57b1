// Helpers for ledger tests: a ledger on LevelDB's in-memory Env, and
// applying one request and reading back its per-operation results.
#ifndef PBFT_LEDGER_TESTS_LEDGER_LEDGER_TEST_UTIL_H_
#define PBFT_LEDGER_TESTS_LEDGER_LEDGER_TEST_UTIL_H_

#include <memory>
#include <string>
#include <vector>

#include "common/proto_names.h"
#include "gtest/gtest.h"
#include "leveldb/env.h"
#include "leveldb/helpers/memenv.h"
#include "replica/ledger/ledger.h"
#include "tests/ledger/block_factory.h"

namespace pbft::test {

// A factory, an in-memory Env and a ledger on it (reopenable).
class MemLedger {
 public:
  explicit MemLedger(FactoryOptions options = {}, std::string path = "/ledger")
      : factory_(std::move(options)),
        env_(leveldb::NewMemEnv(leveldb::Env::Default())),
        path_(std::move(path)) {
    Reopen();
  }

  void Reopen() {
    ledger_.reset();
    ledger::LedgerOptions o;
    o.env = env_.get();
    o.sync = true;
    absl::StatusOr<std::unique_ptr<ledger::Ledger>> l =
        ledger::Ledger::Open(factory_.cluster(), path_, o);
    CHECK_OK(l.status());
    ledger_ = std::move(*l);
  }
  void Close() { ledger_.reset(); }

  // Applies one block with these requests; CHECK-fails on error.
  ledger::BlockResult Apply(std::vector<pbft::v1::Envelope> requests) {
    absl::StatusOr<ledger::BlockResult> r =
        ledger_->ApplyBlock(factory_.NextBlock(std::move(requests)));
    CHECK_OK(r.status());
    return *r;
  }

  // One request from `client` in its own block; its per-operation results.
  ledger::v1::OperationResults Run(uint64_t client,
                                   std::vector<ledger::v1::Operation> ops) {
    ledger::BlockResult r =
        Apply({factory_.Request(client, Ops(std::move(ops)))});
    CHECK_EQ(r.outcomes.size(), 1u);
    ledger::v1::OperationResults results;
    CHECK(results.ParseFromString(r.outcomes[0].result));
    return results;
  }
  // The single result code of a one-operation request.
  ledger::v1::ResultCode RunOne(uint64_t client, ledger::v1::Operation op) {
    ledger::v1::OperationResults r = Run(client, {std::move(op)});
    CHECK_EQ(r.results_size(), 1);
    return r.results(0).code();
  }

  uint64_t Balance(const ledger::v1::Uint128& id) const {
    absl::StatusOr<ledger::v1::Account> a = ledger_->GetAccount(id);
    CHECK_OK(a.status());
    return a->balance();
  }

  BlockFactory& factory() { return factory_; }
  ledger::Ledger& ledger() { return *ledger_; }
  leveldb::Env* env() { return env_.get(); }
  const std::string& path() const { return path_; }

 private:
  BlockFactory factory_;
  std::unique_ptr<leveldb::Env> env_;
  std::string path_;
  std::unique_ptr<ledger::Ledger> ledger_;
};

}  // namespace pbft::test

#endif  // PBFT_LEDGER_TESTS_LEDGER_LEDGER_TEST_UTIL_H_
