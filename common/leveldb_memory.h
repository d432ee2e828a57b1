// LevelDB's approximate-memory-usage of a database: its memtables and block
// cache, in bytes (ledger_store_memory_bytes). Header-only, for the two
// stores that use LevelDB (the ledger and the protocol store): common links
// no LevelDB.
#ifndef PBFT_LEDGER_COMMON_LEVELDB_MEMORY_H_
#define PBFT_LEDGER_COMMON_LEVELDB_MEMORY_H_

#include <cstdint>
#include <string>

#include "absl/strings/numbers.h"
#include "leveldb/db.h"

namespace pbft {

// 0 if LevelDB does not report it.
inline uint64_t LevelDbMemoryBytes(leveldb::DB& db) {
  std::string v;
  uint64_t n = 0;
  if (!db.GetProperty("leveldb.approximate-memory-usage", &v) ||
      !absl::SimpleAtoi(v, &n)) {
    return 0;
  }
  return n;
}

}  // namespace pbft

#endif  // PBFT_LEDGER_COMMON_LEVELDB_MEMORY_H_
