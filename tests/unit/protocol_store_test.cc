#include "replica/storage/protocol_store.h"

#include <string>
#include <thread>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "leveldb/helpers/memenv.h"
#include "replica/storage/background_env.h"
#include "tests/unit/held_thread.h"
#include "tests/unit/power_cut_env.h"
#include "tests/unit/test_util.h"

namespace pbft::storage {
namespace {

pbft::v1::Envelope Vote(pbft::v1::MessageType type, uint64_t seq) {
  pbft::v1::Prepare p;  // Prepare and Commit share the field layout used.
  p.set_seq(seq);
  p.set_view(1);
  pbft::v1::Envelope e;
  e.set_type(type);
  e.set_payload(p.SerializeAsString());
  return e;
}

TEST(ProtocolStoreTest, SurvivesReopenAndCollectsGarbageAtStableCheckpoint) {
  std::unique_ptr<leveldb::Env> env(
      leveldb::NewMemEnv(leveldb::Env::Default()));
  {
    auto store = ProtocolStore::Open("/p", env.get());
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)
                    ->Append(3,
                             {Vote(pbft::v1::MESSAGE_TYPE_PREPARE, 5),
                              Vote(pbft::v1::MESSAGE_TYPE_COMMIT, 5),
                              Vote(pbft::v1::MESSAGE_TYPE_PREPARE, 12)},
                             std::nullopt)
                    .ok());
  }
  {
    auto store = ProtocolStore::Open("/p", env.get());
    ASSERT_TRUE(store.ok());
    absl::StatusOr<ProtocolState> st = (*store)->Load();
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_EQ(st->view, 3u);
    ASSERT_EQ(st->entries.size(), 3u);
    EXPECT_FALSE(st->stable_checkpoint.has_value());

    pbft::v1::CheckpointProof proof;
    proof.set_seq(10);
    ASSERT_TRUE((*store)
                    ->Append(std::nullopt,
                             {Vote(pbft::v1::MESSAGE_TYPE_COMMIT, 12)}, proof)
                    .ok());
  }
  auto store = ProtocolStore::Open("/p", env.get());
  ASSERT_TRUE(store.ok());
  absl::StatusOr<ProtocolState> st = (*store)->Load();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->view, 3u);
  ASSERT_TRUE(st->stable_checkpoint.has_value());
  EXPECT_EQ(st->stable_checkpoint->seq(), 10u);
  // Seq 5 is below the stable checkpoint: gone. Seq 12 twice: kept.
  ASSERT_EQ(st->entries.size(), 2u);
  for (const auto& e : st->entries) EXPECT_EQ(*EntrySeq(e), 12u);
}

TEST(ProtocolStoreTest, MemoryBytesGrowsWithWhatIsWritten) {
  std::unique_ptr<leveldb::Env> env(
      leveldb::NewMemEnv(leveldb::Env::Default()));
  auto store = ProtocolStore::Open("/p", env.get());
  ASSERT_TRUE(store.ok()) << store.status();
  const uint64_t empty = (*store)->MemoryBytes();
  EXPECT_GT(empty, 0u);  // The memtable's first arena block.
  std::vector<pbft::v1::Envelope> votes;
  for (uint64_t seq = 1; seq <= 200; ++seq) {
    votes.push_back(Vote(pbft::v1::MESSAGE_TYPE_PREPARE, seq));
    votes.back().set_signature(std::string(64, 's'));
  }
  ASSERT_TRUE((*store)->Append(std::nullopt, votes, std::nullopt).ok());
  EXPECT_GT((*store)->MemoryBytes(), empty + 8 * 1024);
}

// Crash recovery (docs/protocol.md): the NEW-VIEW of the view a replica entered
// is what tells a restarted replica it is active in that view; it survives
// stable checkpoints and only the latest is kept.
TEST(ProtocolStoreTest, KeepsTheLatestNewViewAcrossCheckpoints) {
  std::unique_ptr<leveldb::Env> env(
      leveldb::NewMemEnv(leveldb::Env::Default()));
  auto new_view = [](uint64_t view) {
    pbft::v1::NewView nv;
    nv.set_view(view);
    pbft::v1::Envelope e;
    e.set_type(pbft::v1::MESSAGE_TYPE_NEW_VIEW);
    e.set_payload(nv.SerializeAsString());
    return e;
  };
  {
    auto store = ProtocolStore::Open("/p", env.get());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Append(1, {new_view(1)}, std::nullopt).ok());
    ASSERT_TRUE(
        (*store)
            ->Append(2, {new_view(2), Vote(pbft::v1::MESSAGE_TYPE_PREPARE, 7)},
                     std::nullopt)
            .ok());
    pbft::v1::CheckpointProof proof;
    proof.set_seq(10);
    ASSERT_TRUE((*store)->Append(std::nullopt, {}, proof).ok());
  }
  auto store = ProtocolStore::Open("/p", env.get());
  ASSERT_TRUE(store.ok());
  absl::StatusOr<ProtocolState> st = (*store)->Load();
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->view, 2u);
  EXPECT_TRUE(st->entries.empty());
  ASSERT_TRUE(st->new_view.has_value());
  pbft::v1::NewView nv;
  ASSERT_TRUE(nv.ParseFromString(st->new_view->payload()));
  EXPECT_EQ(nv.view(), 2u);
}

TEST(ProtocolStoreTest, RefusesWhatItCannotFile) {
  std::unique_ptr<leveldb::Env> env(
      leveldb::NewMemEnv(leveldb::Env::Default()));
  auto store = ProtocolStore::Open("/p", env.get());
  ASSERT_TRUE(store.ok());
  pbft::v1::Envelope garbage;
  garbage.set_type(pbft::v1::MESSAGE_TYPE_PREPARE);
  garbage.set_payload("\xff\xff");
  EXPECT_FALSE((*store)->Append(std::nullopt, {garbage}, std::nullopt).ok());
  pbft::v1::Envelope reply;
  reply.set_type(pbft::v1::MESSAGE_TYPE_REPLY);
  EXPECT_FALSE((*store)->Append(std::nullopt, {reply}, std::nullopt).ok());
}

// A replica's ledger compacts on the process's LevelDB thread of lower
// priority, and on a busy machine one compaction can hold it for seconds.
// The protocol store's memtable writes must not wait behind it: when a full
// memtable finds the one before it still unwritten, LevelDB stops the
// writer, and the writer is the core thread that orders every request.
TEST(ProtocolStoreTest, AppendsWhileTheLedgersBackgroundThreadIsHeld) {
  test::HeldThread ledgers_thread(BackgroundEnv(5));
  ASSERT_TRUE(ledgers_thread.WaitRunning(absl::Seconds(10)));
  test::TempDir dir;
  auto store = ProtocolStore::Open(dir.file("protocol"), ProtocolStoreEnv());
  ASSERT_TRUE(store.ok()) << store.status();
  // Three of LevelDB's default 4 MB memtables: the second fills while the
  // first waits for a background thread.
  pbft::v1::Envelope big = Vote(pbft::v1::MESSAGE_TYPE_PREPARE, 1);
  big.set_signature(std::string(256 << 10, 's'));
  absl::Status status;
  absl::Notification written;
  std::thread writer([&] {
    for (int i = 0; i < 48 && status.ok(); ++i) {
      status = (*store)->Append(std::nullopt, {big}, std::nullopt);
    }
    written.Notify();
  });
  const bool done = written.WaitForNotificationWithTimeout(absl::Seconds(30));
  ledgers_thread.Release();  // A writer still waiting then finishes.
  writer.join();
  EXPECT_TRUE(done) << "the appends waited for the ledger's background thread";
  EXPECT_TRUE(status.ok()) << status;
}

// A power cut after the appends: every file keeps only what it held at its
// last sync. Each Append is synced before the Ready's messages leave, so
// the reopened store holds every entry and the view.
TEST(ProtocolStoreTest, PowerCutKeepsEveryAppend) {
  std::unique_ptr<leveldb::Env> mem(
      leveldb::NewMemEnv(leveldb::Env::Default()));
  test::PowerCutEnv env(mem.get());
  constexpr uint64_t kSeqs = 40;
  {
    auto store = ProtocolStore::Open("/p", &env);
    ASSERT_TRUE(store.ok()) << store.status();
    for (uint64_t seq = 1; seq <= kSeqs; ++seq) {
      ASSERT_TRUE(
          (*store)
              ->Append(seq == kSeqs ? std::optional<uint64_t>(4) : std::nullopt,
                       {Vote(pbft::v1::MESSAGE_TYPE_PREPARE, seq),
                        Vote(pbft::v1::MESSAGE_TYPE_COMMIT, seq)},
                       std::nullopt)
              .ok());
    }
  }
  env.PowerCut();
  auto store = ProtocolStore::Open("/p", &env);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<ProtocolState> st = (*store)->Load();
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->view, 4u);
  EXPECT_EQ(st->entries.size(), 2 * kSeqs);
}

}  // namespace
}  // namespace pbft::storage
