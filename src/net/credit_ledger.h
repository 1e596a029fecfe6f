// CreditLedger: the work receipts a node was paid with (work_receipt.h), kept in SQLite in its data
// directory (`<dir>/credits.sqlite`), and the balance they add up to.
//
// Durability: WAL journal with synchronous=FULL, so a receipt is on disk when add() returns and a
// node killed at any moment afterwards (kill -9, power loss) still has it; the node acknowledges
// receipts only after add(). A receipt's key (client key, session, sequence) is the table's
// primary key: a duplicate (a retry, or a replay) is counted and not stored again.
//
// Bounds: add() takes at most kMaxReceiptsPerCall receipts and refuses (ResourceExhausted) once
// the ledger holds max_receipts rows, so a client can make a node store only fixed-size rows, a
// bounded number of them (the per-client rate is the node server's, node_server.h).
//
// Not thread-safe: one thread uses a ledger (the node's event loop). A reader (`omni credits`)
// may open the same file while the node writes it (WAL readers do not block the writer).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/work_receipt.h"

namespace omni::net {

struct LedgerBalance {
  uint64_t work = 0;      // sum of tokens × blocks: the node's credits
  uint64_t tokens = 0;    // sum of tokens
  uint64_t receipts = 0;  // rows
  uint64_t clients = 0;   // distinct signers
};

struct StoredReceipt {
  WorkReceipt receipt;
  uint64_t received_at = 0;  // Unix seconds, when the node stored it
};

class CreditLedger {
 public:
  static constexpr const char* kFileName = "credits.sqlite";
  static constexpr uint64_t kDefaultMaxReceipts = 10'000'000;  // about 2.5 GB of rows

  // Opens or creates `<dir>/credits.sqlite` for writing (dir must exist). Errors: Unavailable when
  // SQLite cannot open or set up the file (the message names it), Corruption for a file that is
  // not a ledger.
  static Result<std::unique_ptr<CreditLedger>> open(const std::string& dir, uint64_t max_receipts = kDefaultMaxReceipts);
  // Opens an existing ledger read-only (`omni credits`). NotFound when there is none.
  static Result<std::unique_ptr<CreditLedger>> open_read_only(const std::string& dir);
  ~CreditLedger();
  CreditLedger(const CreditLedger&) = delete;
  CreditLedger& operator=(const CreditLedger&) = delete;

  struct Added {
    uint32_t accepted = 0, duplicates = 0;
  };
  // Stores the receipts (already checked: check_receipt) in one durable transaction: all or none.
  // Errors: InvalidArgument over kMaxReceiptsPerCall, ResourceExhausted when the ledger is full or
  // the disk is, Unavailable on another SQLite failure (nothing stored).
  Result<Added> add(std::span<const WorkReceipt> receipts, uint64_t received_at);

  Result<LedgerBalance> balance() const;
  // The `limit` most recently stored receipts, newest first.
  Result<std::vector<StoredReceipt>> recent(uint32_t limit) const;

  const std::string& path() const { return path_; }

 private:
  CreditLedger(void* db, std::string path, uint64_t max_receipts)
      : db_(db), path_(std::move(path)), max_receipts_(max_receipts) {}
  void* db_;  // sqlite3*
  std::string path_;
  uint64_t max_receipts_;
  uint64_t rows_ = 0;  // kept with add(), read at open
};

}  // namespace omni::net
