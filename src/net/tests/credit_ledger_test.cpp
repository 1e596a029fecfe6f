// The credit ledger: balances are the sums of what was stored, duplicates are refused by key, the
// limits hold, and a receipt acknowledged by a process that is then killed with SIGKILL is there
// when the ledger is opened again.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "net/credit_ledger.h"

namespace omni::net {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/omni-ledger-XXXXXX";
  return ::mkdtemp(tmpl);
}

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir();
    auto c = Identity::generate();
    ASSERT_TRUE(c.ok());
    client_ = std::make_unique<Identity>(*c);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  WorkReceipt receipt(uint64_t sequence, uint32_t tokens, uint32_t blocks, uint8_t session = 1) {
    WorkReceipt r;
    r.node_id = "node";
    r.session.fill(session);
    r.sequence = sequence;
    r.tokens = tokens;
    r.block_begin = 0;
    r.block_end = blocks;
    r.model_id = "model";
    r.issued_at = 1'800'000'000;
    EXPECT_TRUE(sign_receipt(r, *client_).ok());
    return r;
  }

  std::string dir_;
  std::unique_ptr<Identity> client_;
};

TEST_F(LedgerTest, BalanceIsTheSumAndDuplicatesAreRefused) {
  auto ledger = CreditLedger::open(dir_);
  ASSERT_TRUE(ledger.ok()) << ledger.error().message;
  std::vector<WorkReceipt> batch{receipt(1, 64, 2), receipt(2, 17, 2), receipt(1, 5, 3, /*session=*/2)};
  auto added = (*ledger)->add(batch, 100);
  ASSERT_TRUE(added.ok()) << added.error().message;
  EXPECT_EQ(added->accepted, 3u);
  EXPECT_EQ(added->duplicates, 0u);
  // A replay of the second (even with another count: the key decides) and one new receipt.
  std::vector<WorkReceipt> again{receipt(2, 1000, 2), receipt(3, 1, 2)};
  added = (*ledger)->add(again, 101);
  ASSERT_TRUE(added.ok());
  EXPECT_EQ(added->accepted, 1u);
  EXPECT_EQ(added->duplicates, 1u);
  auto b = (*ledger)->balance();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->work, 64u * 2 + 17u * 2 + 5u * 3 + 1u * 2);
  EXPECT_EQ(b->tokens, 64u + 17 + 5 + 1);
  EXPECT_EQ(b->receipts, 4u);
  EXPECT_EQ(b->clients, 1u);
  auto recent = (*ledger)->recent(2);
  ASSERT_TRUE(recent.ok());
  ASSERT_EQ(recent->size(), 2u);
  EXPECT_EQ((*recent)[0].receipt.sequence, 3u);
  EXPECT_EQ((*recent)[0].received_at, 101u);
  EXPECT_EQ((*recent)[0].receipt.signature, again[1].signature);
  EXPECT_EQ((*recent)[1].receipt.tokens, 5u);
}

TEST_F(LedgerTest, SurvivesReopeningAndReadsWhileOpen) {
  {
    auto ledger = CreditLedger::open(dir_);
    ASSERT_TRUE(ledger.ok());
    std::vector<WorkReceipt> batch{receipt(1, 10, 4)};
    ASSERT_TRUE((*ledger)->add(batch, 1).ok());
    auto reader = CreditLedger::open_read_only(dir_);
    ASSERT_TRUE(reader.ok()) << reader.error().message;
    EXPECT_EQ((*reader)->balance()->work, 40u);
  }
  auto ledger = CreditLedger::open(dir_);
  ASSERT_TRUE(ledger.ok());
  EXPECT_EQ((*ledger)->balance()->work, 40u);
  std::vector<WorkReceipt> batch{receipt(1, 10, 4)};
  EXPECT_EQ((*ledger)->add(batch, 2)->duplicates, 1u);
}

TEST_F(LedgerTest, Limits) {
  auto ledger = CreditLedger::open(dir_, /*max_receipts=*/3);
  ASSERT_TRUE(ledger.ok());
  std::vector<WorkReceipt> too_many;
  for (uint64_t i = 1; i <= kMaxReceiptsPerCall + 1; ++i) too_many.push_back(receipt(i, 1, 1));
  auto r = (*ledger)->add(too_many, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  std::vector<WorkReceipt> three{receipt(1, 1, 1), receipt(2, 1, 1), receipt(3, 1, 1)};
  ASSERT_TRUE((*ledger)->add(three, 1).ok());
  std::vector<WorkReceipt> fourth{receipt(4, 1, 1)};
  r = (*ledger)->add(fourth, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::ResourceExhausted);
  // Full counts rows across restarts too.
  ledger->reset();
  auto again = CreditLedger::open(dir_, 3);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->add(fourth, 1).error().code, ErrorCode::ResourceExhausted);
  EXPECT_EQ((*again)->balance()->receipts, 3u);
}

TEST_F(LedgerTest, NoLedgerToRead) {
  auto reader = CreditLedger::open_read_only(dir_);
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.error().code, ErrorCode::NotFound);
}

TEST_F(LedgerTest, NotALedgerIsCorruption) {
  FILE* f = std::fopen((dir_ + "/" + CreditLedger::kFileName).c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("this is not an SQLite database, just some bytes long enough to have a header........", f);
  std::fclose(f);
  auto ledger = CreditLedger::open(dir_);
  ASSERT_FALSE(ledger.ok());
  EXPECT_EQ(ledger.error().code, ErrorCode::Corruption) << ledger.error().message;
}

// A child stores receipts one call at a time and reports each acknowledged sequence on a pipe; the
// parent kills it with SIGKILL mid-stream. Every sequence reported must be in the ledger.
TEST_F(LedgerTest, AcknowledgedReceiptsSurviveSigkill) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    auto ledger = CreditLedger::open(dir_);
    if (!ledger.ok()) ::_exit(2);
    for (uint64_t i = 1; i <= 1'000'000; ++i) {
      const WorkReceipt r = receipt(i, 3, 2);
      if (!(*ledger)->add(std::span<const WorkReceipt>(&r, 1), 1).ok()) ::_exit(3);
      uint64_t seq = r.sequence;
      if (::write(fds[1], &seq, sizeof seq) != sizeof seq) ::_exit(4);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  uint64_t acknowledged = 0, seq = 0;
  while (acknowledged < 50 && ::read(fds[0], &seq, sizeof seq) == sizeof seq) acknowledged = seq;
  ::kill(child, SIGKILL);
  // What was written before the kill landed is acknowledged too.
  while (::read(fds[0], &seq, sizeof seq) == sizeof seq) acknowledged = seq;
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(fds[0]);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child finished before the kill; status " << status;
  ASSERT_GE(acknowledged, 50u);
  auto ledger = CreditLedger::open(dir_);
  ASSERT_TRUE(ledger.ok()) << ledger.error().message;
  auto b = (*ledger)->balance();
  ASSERT_TRUE(b.ok());
  EXPECT_GE(b->receipts, acknowledged);  // the one in flight at the kill may be there too
  EXPECT_LE(b->receipts, acknowledged + 1);
  EXPECT_EQ(b->work, b->receipts * 3 * 2);
}

}  // namespace
}  // namespace omni::net
