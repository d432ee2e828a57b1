#include "common/keyfile.h"

#include <sys/stat.h>

#include <fstream>

#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace pbft {
namespace {

mode_t Mode(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

TEST(KeyFileTest, WrittenWithMode0600AndReadsBack) {
  test::TempDir dir;
  const std::string path = dir.file("a.key");
  ::umask(0);  // Even with a permissive umask the file is 0600.
  crypto::SecretKey key = crypto::SecretKey::Generate();
  ASSERT_TRUE(WriteKeyFile(path, key).ok());
  ::umask(022);
  EXPECT_EQ(Mode(path), 0600u);
  absl::StatusOr<crypto::SecretKey> back = ReadKeyFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->public_key(), key.public_key());
  EXPECT_EQ(back->Seed(), key.Seed());
}

TEST(KeyFileTest, RefusesToOverwrite) {
  test::TempDir dir;
  const std::string path = dir.file("a.key");
  ASSERT_TRUE(WriteKeyFile(path, crypto::SecretKey::Generate()).ok());
  absl::Status s = WriteKeyFile(path, crypto::SecretKey::Generate());
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(
      WriteKeyFile(path, crypto::SecretKey::Generate(), /*overwrite=*/true)
          .ok());
}

TEST(KeyFileTest, WorldReadableKeyRefused) {
  test::TempDir dir;
  const std::string path = dir.file("a.key");
  ASSERT_TRUE(WriteKeyFile(path, crypto::SecretKey::Generate()).ok());
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  absl::StatusOr<crypto::SecretKey> k = ReadKeyFile(path);
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(k.status().message().find("0644"), std::string::npos) << k.status();
  EXPECT_NE(k.status().message().find("chmod 600"), std::string::npos)
      << k.status();
  EXPECT_NE(k.status().message().find(path), std::string::npos) << k.status();

  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);  // Group-readable: refused too.
  EXPECT_FALSE(ReadKeyFile(path).ok());
}

TEST(KeyFileTest, MissingAndCorruptFilesGiveNamedErrors) {
  test::TempDir dir;
  EXPECT_EQ(ReadKeyFile(dir.file("none.key")).status().code(),
            absl::StatusCode::kNotFound);

  auto write = [&](const std::string& name, const std::string& body) {
    std::string p = dir.file(name);
    std::ofstream(p) << body;
    ::chmod(p.c_str(), 0600);
    return p;
  };
  absl::StatusOr<crypto::SecretKey> k =
      ReadKeyFile(write("short.key", "algorithm: ed25519\nseed: abcd\n"));
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("seed"), std::string::npos) << k.status();

  k = ReadKeyFile(write(
      "algo.key", "algorithm: rsa\nseed: " + std::string(64, 'a') + "\n"));
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("algorithm"), std::string::npos)
      << k.status();

  crypto::SecretKey other = crypto::SecretKey::Generate();
  k = ReadKeyFile(write("mismatch.key",
                        "algorithm: ed25519\nseed: " + std::string(64, 'a') +
                            "\npublic_key: " + other.public_key().ToBase64() +
                            "\n"));
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("public_key"), std::string::npos)
      << k.status();

  k = ReadKeyFile(write("field.key", "algorithm: ed25519\ncolour: blue\n"));
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("colour"), std::string::npos)
      << k.status();
}

}  // namespace
}  // namespace pbft
