#include "gateway/contribution_ledger.h"

#include <algorithm>
#include <cstdio>

#include "base/sqlite_util.h"

namespace omni::gateway {
namespace {

sqlite3* db_of(void* p) { return static_cast<sqlite3*>(p); }

Error sqlite_error(sqlite3* db, const std::string& what, const std::string& path) {
  return omni::sqlite_error(db, "contribution ledger", what, path);
}

// Opens the file, sets it up and reads it; any failure but opening is the file's fault (Corruption).
Result<sqlite3*> open_file(const std::string& path, std::map<std::string, uint64_t>& work) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    Error e = sqlite_error(db, "cannot open", path);
    sqlite3_close(db);
    return e;
  }
  sqlite3_busy_timeout(db, 2000);
  auto fail = [&](const std::string& what) {
    Error e = sqlite_error(db, what, path);
    sqlite3_close(db);
    return Error{ErrorCode::Corruption, e.message};
  };
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                          "CREATE TABLE IF NOT EXISTS contributions (node TEXT PRIMARY KEY, work INTEGER NOT NULL)"})
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return fail(sql);
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT node, work FROM contributions", -1, &s, nullptr) != SQLITE_OK)
    return fail("reading contributions");
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    const unsigned char* node = sqlite3_column_text(s, 0);
    if (node) work[reinterpret_cast<const char*>(node)] = static_cast<uint64_t>(std::max<int64_t>(0, sqlite3_column_int64(s, 1)));
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) return fail("reading contributions");
  return db;
}

}  // namespace

Result<std::shared_ptr<ContributionLedger>> ContributionLedger::open(const std::string& dir, size_t max_nodes) {
  max_nodes = std::max<size_t>(1, max_nodes);
  if (dir.empty()) return std::shared_ptr<ContributionLedger>(new ContributionLedger(nullptr, "", max_nodes));
  const std::string path = dir + "/" + kFileName;
  std::map<std::string, uint64_t> work;
  auto db = open_file(path, work);
  std::string recovered;
  if (!db && db.error().code == ErrorCode::Corruption) {
    recovered = db.error().message;
    std::remove((path + "-wal").c_str());
    std::remove((path + "-shm").c_str());
    if (std::rename(path.c_str(), (path + ".corrupt").c_str()) != 0)
      return Error{ErrorCode::Unavailable, "contribution ledger " + path + " is corrupt and cannot be moved aside"};
    work.clear();
    db = open_file(path, work);
  }
  if (!db) return db.error();
  std::shared_ptr<ContributionLedger> ledger(new ContributionLedger(*db, path, max_nodes));
  ledger->recovered_ = std::move(recovered);
  ledger->work_ = std::move(work);
  return ledger;
}

ContributionLedger::~ContributionLedger() {
  if (db_) sqlite3_close(db_of(db_));
}

Result<void> ContributionLedger::add(const std::string& node_id, uint64_t work) {
  if (work == 0) return {};
  std::lock_guard lock(mutex_);
  sqlite3* db = db_of(db_);
  auto it = work_.find(node_id);
  if (it == work_.end()) {
    if (work_.size() >= max_nodes_) {
      auto least = std::min_element(work_.begin(), work_.end(),
                                    [](const auto& a, const auto& b) { return a.second < b.second; });
      if (least->second >= work) return {};  // smaller than everyone kept: not worth a row
      if (db) {
        sqlite3_stmt* s = nullptr;
        sqlite3_prepare_v2(db, "DELETE FROM contributions WHERE node = ?", -1, &s, nullptr);
        sqlite3_bind_text(s, 1, least->first.data(), static_cast<int>(least->first.size()), SQLITE_TRANSIENT);
        sqlite3_step(s);
        sqlite3_finalize(s);
      }
      work_.erase(least);
    }
    it = work_.emplace(node_id, 0).first;
  }
  it->second += work;
  if (!db) return {};
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO contributions (node, work) VALUES (?, ?)", -1, &s, nullptr) !=
      SQLITE_OK)
    return sqlite_error(db, "preparing a write", path_);
  sqlite3_bind_text(s, 1, node_id.data(), static_cast<int>(node_id.size()), SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, static_cast<int64_t>(it->second));
  const int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) return sqlite_error(db, "writing node " + node_id, path_);
  return {};
}

uint64_t ContributionLedger::work_of(const std::string& node_id) const {
  std::lock_guard lock(mutex_);
  auto it = work_.find(node_id);
  return it == work_.end() ? 0 : it->second;
}

size_t ContributionLedger::nodes() const {
  std::lock_guard lock(mutex_);
  return work_.size();
}

}  // namespace omni::gateway
