#include "net/credit_ledger.h"

#include <cstring>

#include "base/sqlite_util.h"

namespace omni::net {
namespace {

sqlite3* db_of(void* p) { return static_cast<sqlite3*>(p); }

Error sqlite_error(sqlite3* db, const std::string& what, const std::string& path) {
  return omni::sqlite_error(db, "credit ledger", what, path);
}

using Statement = SqliteStatement;

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS receipts ("
    " client BLOB NOT NULL, session BLOB NOT NULL, sequence INTEGER NOT NULL,"
    " node TEXT NOT NULL, tokens INTEGER NOT NULL, block_begin INTEGER NOT NULL, block_end INTEGER NOT NULL,"
    " model BLOB NOT NULL, issued_at INTEGER NOT NULL, signature BLOB NOT NULL, received_at INTEGER NOT NULL,"
    " work INTEGER NOT NULL, PRIMARY KEY (client, session, sequence))";

Result<void> exec(sqlite3* db, const char* sql, const std::string& path) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return sqlite_error(db, sql, path);
  return {};
}

Result<int64_t> single_integer(sqlite3* db, const char* sql, const std::string& path) {
  Statement s(db, sql);
  if (!s || sqlite3_step(s.get()) != SQLITE_ROW) return sqlite_error(db, sql, path);
  return sqlite3_column_int64(s.get(), 0);
}

template <size_t N>
void copy_blob(sqlite3_stmt* s, int column, std::array<uint8_t, N>& out) {
  const int n = sqlite3_column_bytes(s, column);
  if (n == static_cast<int>(N)) std::memcpy(out.data(), sqlite3_column_blob(s, column), N);
}

}  // namespace

Result<std::unique_ptr<CreditLedger>> CreditLedger::open(const std::string& dir, uint64_t max_receipts) {
  const std::string path = dir + "/" + kFileName;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    Error e = sqlite_error(db, "cannot open", path);
    sqlite3_close(db);
    return e;
  }
  std::unique_ptr<CreditLedger> ledger(new CreditLedger(db, path, max_receipts));
  // A writer waits a little for a reader's checkpoint instead of failing at once.
  sqlite3_busy_timeout(db, 5000);
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", kSchema})
    if (auto r = exec(db, sql, path); !r) return r.error();
  auto rows = single_integer(db, "SELECT COUNT(*) FROM receipts", path);
  if (!rows) return rows.error();
  ledger->rows_ = static_cast<uint64_t>(*rows);
  return ledger;
}

Result<std::unique_ptr<CreditLedger>> CreditLedger::open_read_only(const std::string& dir) {
  const std::string path = dir + "/" + kFileName;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return Error{ErrorCode::NotFound, "no credit ledger at " + path + " (a node started with this --data-dir makes one)"};
  }
  std::unique_ptr<CreditLedger> ledger(new CreditLedger(db, path, 0));
  sqlite3_busy_timeout(db, 5000);
  auto rows = single_integer(db, "SELECT COUNT(*) FROM receipts", path);
  if (!rows) return rows.error();
  ledger->rows_ = static_cast<uint64_t>(*rows);
  return ledger;
}

CreditLedger::~CreditLedger() { sqlite3_close(db_of(db_)); }

Result<CreditLedger::Added> CreditLedger::add(std::span<const WorkReceipt> receipts, uint64_t received_at) {
  sqlite3* db = db_of(db_);
  if (receipts.size() > kMaxReceiptsPerCall)
    return Error{ErrorCode::InvalidArgument, std::to_string(receipts.size()) + " receipts at once; at most " +
                                                 std::to_string(kMaxReceiptsPerCall)};
  if (rows_ + receipts.size() > max_receipts_)
    return Error{ErrorCode::ResourceExhausted, "the credit ledger " + path_ + " is full (" + std::to_string(rows_) +
                                                   " receipts, at most " + std::to_string(max_receipts_) + ")"};
  if (auto r = exec(db, "BEGIN IMMEDIATE", path_); !r) return r.error();
  Added added;
  Statement insert(db,
                   "INSERT OR IGNORE INTO receipts (client, session, sequence, node, tokens, block_begin, block_end,"
                   " model, issued_at, signature, received_at, work) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)");
  auto fail = [&](const char* what) {
    Error e = sqlite_error(db, what, path_);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return e;
  };
  if (!insert) return fail("preparing the insert");
  for (const WorkReceipt& r : receipts) {
    sqlite3_stmt* s = insert.get();
    sqlite3_reset(s);
    sqlite3_bind_blob(s, 1, r.client_key.data(), static_cast<int>(r.client_key.size()), SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, r.session.data(), static_cast<int>(r.session.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, static_cast<int64_t>(r.sequence));
    sqlite3_bind_text(s, 4, r.node_id.data(), static_cast<int>(r.node_id.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, r.tokens);
    sqlite3_bind_int64(s, 6, r.block_begin);
    sqlite3_bind_int64(s, 7, r.block_end);
    sqlite3_bind_blob(s, 8, r.model_id.data(), static_cast<int>(r.model_id.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 9, static_cast<int64_t>(r.issued_at));
    sqlite3_bind_blob(s, 10, r.signature.data(), static_cast<int>(r.signature.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 11, static_cast<int64_t>(received_at));
    sqlite3_bind_int64(s, 12, static_cast<int64_t>(r.work()));
    if (sqlite3_step(s) != SQLITE_DONE) return fail("storing a receipt");
    if (sqlite3_changes(db) == 1)
      added.accepted++;
    else
      added.duplicates++;
  }
  if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) return fail("committing");
  rows_ += added.accepted;
  return added;
}

Result<LedgerBalance> CreditLedger::balance() const {
  sqlite3* db = db_of(db_);
  Statement s(db,
              "SELECT COALESCE(SUM(work),0), COALESCE(SUM(tokens),0), COUNT(*), COUNT(DISTINCT client) FROM receipts");
  if (!s || sqlite3_step(s.get()) != SQLITE_ROW) return sqlite_error(db, "reading the balance", path_);
  LedgerBalance b;
  b.work = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 0));
  b.tokens = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 1));
  b.receipts = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 2));
  b.clients = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 3));
  return b;
}

Result<std::vector<StoredReceipt>> CreditLedger::recent(uint32_t limit) const {
  sqlite3* db = db_of(db_);
  Statement s(db,
              "SELECT client, session, sequence, node, tokens, block_begin, block_end, model, issued_at, signature,"
              " received_at FROM receipts ORDER BY rowid DESC LIMIT ?");
  if (!s) return sqlite_error(db, "reading receipts", path_);
  sqlite3_bind_int64(s.get(), 1, limit);
  std::vector<StoredReceipt> out;
  int rc;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    StoredReceipt sr;
    WorkReceipt& r = sr.receipt;
    copy_blob(s.get(), 0, r.client_key);
    copy_blob(s.get(), 1, r.session);
    r.sequence = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 2));
    r.node_id = reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 3));
    r.tokens = static_cast<uint32_t>(sqlite3_column_int64(s.get(), 4));
    r.block_begin = static_cast<uint32_t>(sqlite3_column_int64(s.get(), 5));
    r.block_end = static_cast<uint32_t>(sqlite3_column_int64(s.get(), 6));
    const int n = sqlite3_column_bytes(s.get(), 7);
    if (n > 0) r.model_id.assign(static_cast<const char*>(sqlite3_column_blob(s.get(), 7)), static_cast<size_t>(n));
    r.issued_at = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 8));
    copy_blob(s.get(), 9, r.signature);
    sr.received_at = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 10));
    out.push_back(std::move(sr));
  }
  if (rc != SQLITE_DONE) return sqlite_error(db, "reading receipts", path_);
  return out;
}

}  // namespace omni::net
