// Identity keys: created 0600 on first use and reused, ids derived as documented (recomputed here
// with OpenSSL's SHA-256 and an independent base32), loose permissions refused.
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "net/identity.h"
#include "net/peer_address.h"
#include "net/peer_id.h"

namespace omni::net {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/omni-identity-XXXXXX";
  return ::mkdtemp(tmpl);
}

// Base32 the slow way: the bit string, five bits at a time.
std::string reference_base32(const std::vector<uint8_t>& bytes) {
  std::string bits;
  for (uint8_t b : bytes)
    for (int i = 7; i >= 0; --i) bits.push_back(((b >> i) & 1) ? '1' : '0');
  while (bits.size() % 5) bits.push_back('0');
  std::string out;
  for (size_t i = 0; i < bits.size(); i += 5) out.push_back("abcdefghijklmnopqrstuvwxyz234567"[std::stoi(bits.substr(i, 5), nullptr, 2)]);
  return out;
}

TEST(Identity, CreatedWith0600AndReused) {
  const std::string dir = temp_dir() + "/data";
  auto a = Identity::load_or_create(dir);
  ASSERT_TRUE(a.ok()) << a.error().message;
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/identity.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto b = Identity::load_or_create(dir);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(a->peer_id(), b->peer_id());
  EXPECT_EQ(a->public_key(), b->public_key());
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path());
}

TEST(Identity, IdIsBase32OfSha256Multihash) {
  auto id = Identity::generate();
  ASSERT_TRUE(id.ok());
  std::vector<uint8_t> mh{0x12, 0x20};
  mh.resize(34);
  SHA256(id->public_key().data(), 32, mh.data() + 2);
  EXPECT_EQ(id->peer_id(), reference_base32(mh));
  EXPECT_TRUE(is_peer_id(id->peer_id()));
  EXPECT_EQ(id->peer_id().size(), 55u);
  auto other = Identity::generate();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(id->peer_id(), other->peer_id());
}

TEST(Identity, LoosePermissionsRefused) {
  const std::string dir = temp_dir();
  ASSERT_TRUE(Identity::load_or_create(dir).ok());
  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    ASSERT_EQ(::chmod((dir + "/identity.pem").c_str(), mode), 0);
    auto r = Identity::load_or_create(dir);
    ASSERT_FALSE(r.ok()) << std::oct << mode;
    EXPECT_EQ(r.error().code, ErrorCode::PermissionDenied) << r.error().message;
    EXPECT_NE(r.error().message.find("refusing to use it"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("chmod 600"), std::string::npos) << r.error().message;
  }
  ASSERT_EQ(::chmod((dir + "/identity.pem").c_str(), 0400), 0);
  EXPECT_TRUE(Identity::load_or_create(dir).ok());
  std::filesystem::remove_all(dir);
}

TEST(Identity, MalformedKeyFileIsAnError) {
  const std::string dir = temp_dir();
  FILE* f = std::fopen((dir + "/identity.pem").c_str(), "w");
  std::fputs("not a key\n", f);
  std::fclose(f);
  ::chmod((dir + "/identity.pem").c_str(), 0600);
  auto r = Identity::load_or_create(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Corruption) << r.error().message;
  std::filesystem::remove_all(dir);
}

// Two data directories sharing one key (a symbolic or a hard link) would be two nodes with one
// peer id, each holding its own directory's lock: refused, the original still loads.
TEST(Identity, SharedKeyLinksRefused) {
  const std::string root = temp_dir();
  auto original = Identity::load_or_create(root + "/a");
  ASSERT_TRUE(original.ok()) << original.error().message;
  ASSERT_EQ(::mkdir((root + "/b").c_str(), 0700), 0);
  ASSERT_EQ(::symlink((root + "/a/identity.pem").c_str(), (root + "/b/identity.pem").c_str()), 0);
  auto linked = Identity::load_or_create(root + "/b");
  ASSERT_FALSE(linked.ok());
  EXPECT_EQ(linked.error().code, ErrorCode::PermissionDenied) << linked.error().message;
  EXPECT_NE(linked.error().message.find(root + "/b/identity.pem is a symbolic link to " + root + "/a/identity.pem"),
            std::string::npos)
      << linked.error().message;
  ASSERT_TRUE(Identity::load_or_create(root + "/a").ok());

  ASSERT_EQ(::mkdir((root + "/c").c_str(), 0700), 0);
  ASSERT_EQ(::link((root + "/a/identity.pem").c_str(), (root + "/c/identity.pem").c_str()), 0);
  for (const char* d : {"/a", "/c"}) {
    auto r = Identity::load_or_create(root + d);
    ASSERT_FALSE(r.ok()) << d;
    EXPECT_EQ(r.error().code, ErrorCode::PermissionDenied) << r.error().message;
    EXPECT_NE(r.error().message.find("has 2 hard links"), std::string::npos) << r.error().message;
  }
  ASSERT_EQ(::unlink((root + "/c/identity.pem").c_str()), 0);
  auto again = Identity::load_or_create(root + "/a");
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->peer_id(), original->peer_id());
  std::filesystem::remove_all(root);
}

// A directory every user may write to: refused whether the key exists yet or not (sticky or not).
TEST(Identity, WorldWritableDataDirRefused) {
  const std::string root = temp_dir();
  for (mode_t mode : {0777, 01777, 0703}) {
    const std::string dir = root + "/d" + std::to_string(mode);
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
    ASSERT_EQ(::chmod(dir.c_str(), mode), 0);
    auto fresh = Identity::load_or_create(dir);
    ASSERT_FALSE(fresh.ok()) << std::oct << mode;
    EXPECT_EQ(fresh.error().code, ErrorCode::PermissionDenied) << fresh.error().message;
    EXPECT_NE(fresh.error().message.find("chmod 700 " + dir), std::string::npos) << fresh.error().message;
    EXPECT_FALSE(std::filesystem::exists(dir + "/identity.pem")) << "a key was written into " << dir;
    ASSERT_EQ(::chmod(dir.c_str(), 0700), 0);
    ASSERT_TRUE(Identity::load_or_create(dir).ok());
    ASSERT_EQ(::chmod(dir.c_str(), mode), 0);
    auto existing = Identity::load_or_create(dir);
    ASSERT_FALSE(existing.ok()) << std::oct << mode;
    EXPECT_EQ(existing.error().code, ErrorCode::PermissionDenied) << existing.error().message;
  }
  std::filesystem::remove_all(root);
}

// A passphrase-protected key: a clear refusal, no prompt. The child has no terminal to prompt on
// and a closed stdin; the refusal must come from the key, not from a failed prompt.
TEST(Identity, PassphraseProtectedKeyRefusedWithoutPrompt) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/identity.pem";
  const std::string made = "openssl genpkey -algorithm ed25519 -aes256 -pass pass:secret -out " + path +
                           " 2>/dev/null && chmod 600 " + path;
  if (std::system(made.c_str()) != 0) GTEST_SKIP() << "the openssl command cannot make an encrypted key here";
  auto r = Identity::load_or_create(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << r.error().message;
  EXPECT_NE(r.error().message.find(path + " is protected by a passphrase"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("openssl pkey -in " + path), std::string::npos) << r.error().message;
  std::filesystem::remove_all(dir);
}

TEST(PeerAddress, Parses) {
  auto id = Identity::generate();
  ASSERT_TRUE(id.ok());
  auto a = parse_peer_address(id->peer_id() + "@10.0.0.1:7000");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->peer_id, id->peer_id());
  EXPECT_EQ(a->host, "10.0.0.1");
  EXPECT_EQ(a->port, 7000);
  auto v6 = parse_peer_address("[::1]:9");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->host_port(), "[::1]:9");
  EXPECT_FALSE(parse_peer_address("host").ok());
  EXPECT_FALSE(parse_peer_address("host:0").ok());
  EXPECT_FALSE(parse_peer_address("host:70000").ok());
  EXPECT_FALSE(parse_peer_address("nope@host:1").ok());
  auto list = parse_peer_list("a:1,b:2");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);
}

// One holder at a time, across processes (a forked child) and within one; released when the lock
// goes; another directory is independent.
TEST(IdentityLock, OneHolderPerDirectory) {
  const std::string dir = temp_dir() + "/node";  // created by the lock
  {
    auto first = IdentityLock::acquire(dir);
    ASSERT_TRUE(first.ok()) << first.error().message;
    auto second = IdentityLock::acquire(dir);
    ASSERT_FALSE(second.ok());
    EXPECT_TRUE(second.error().is(ErrorCode::AlreadyExists));
    EXPECT_NE(second.error().message.find(dir), std::string::npos) << second.error().message;
    EXPECT_NE(second.error().message.find("--data-dir"), std::string::npos) << second.error().message;
    EXPECT_NE(second.error().message.find("pid " + std::to_string(::getpid())), std::string::npos)
        << second.error().message;
    const pid_t child = ::fork();
    if (child == 0) {
      auto other = IdentityLock::acquire(dir);
      ::_exit(!other.ok() && other.error().is(ErrorCode::AlreadyExists) ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "another process got the lock";
    auto elsewhere = IdentityLock::acquire(dir + "-2");
    EXPECT_TRUE(elsewhere.ok()) << elsewhere.error().message;
    IdentityLock moved = std::move(*first);  // still held
    EXPECT_FALSE(IdentityLock::acquire(dir).ok());
  }
  auto again = IdentityLock::acquire(dir);
  EXPECT_TRUE(again.ok()) << again.error().message;
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path());
}

}  // namespace
}  // namespace omni::net
