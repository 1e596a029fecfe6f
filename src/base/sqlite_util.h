// What the SQLite-backed stores (net/credit_ledger, swarm/reputation, gateway/contribution_ledger)
// share: SQLite's failures as Errors, and prepared statements that finalize themselves. Header
// only, so that base itself does not link SQLite; its users do.
#pragma once

#include <sqlite3.h>

#include <string>

#include "base/result.h"

namespace omni {

// The last failure on `db` (null: it could not be allocated), as `store` PATH: WHAT: SQLite's
// text. A full disk is ResourceExhausted, a file that is not a database or is damaged Corruption,
// anything else Unavailable.
inline Error sqlite_error(sqlite3* db, const std::string& store, const std::string& what, const std::string& path) {
  const int code = db ? sqlite3_errcode(db) : SQLITE_CANTOPEN;
  const std::string text = db ? sqlite3_errmsg(db) : "out of memory";
  ErrorCode ec = ErrorCode::Unavailable;
  if (code == SQLITE_FULL) ec = ErrorCode::ResourceExhausted;
  if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT) ec = ErrorCode::Corruption;
  return Error{ec, store + " " + path + ": " + what + ": " + text};
}

// One prepared statement, finalized when it goes; false when `sql` did not prepare.
class SqliteStatement {
 public:
  SqliteStatement(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~SqliteStatement() { sqlite3_finalize(stmt_); }
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;
  sqlite3_stmt* get() const { return stmt_; }
  explicit operator bool() const { return stmt_ != nullptr; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace omni
