#include "swarm/reputation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "base/sqlite_util.h"

namespace omni::swarm {
namespace {

sqlite3* db_of(void* p) { return static_cast<sqlite3*>(p); }

Error sqlite_error(sqlite3* db, const std::string& what, const std::string& path) {
  return omni::sqlite_error(db, "reputation store", what, path);
}

using Statement = SqliteStatement;

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS peers ("
    " peer TEXT PRIMARY KEY, good REAL NOT NULL, bad REAL NOT NULL,"
    " answered INTEGER NOT NULL, unreachable INTEGER NOT NULL, served INTEGER NOT NULL,"
    " timed_out INTEGER NOT NULL, verified INTEGER NOT NULL, speed REAL NOT NULL, speed_samples INTEGER NOT NULL,"
    " first_seen INTEGER NOT NULL, updated INTEGER NOT NULL, excluded_reason TEXT NOT NULL,"
    " excluded_since INTEGER NOT NULL)";

// Weights of events in the good and bad counts: a stall costs more than a refused probe (it held a
// session up for the watch's whole limit), a spot check passed says more than a probe answered.
struct Weight {
  double good = 0, bad = 0;
};
Weight weight_of(PeerEvent e) {
  switch (e) {
    case PeerEvent::Answered: return {1, 0};
    case PeerEvent::Unreachable: return {0, 1};
    case PeerEvent::Served: return {2, 0};
    case PeerEvent::TimedOut: return {0, 3};
    case PeerEvent::Verified: return {4, 0};
  }
  return {};
}

double decay(double value, int64_t from_s, int64_t to_s, double half_life_s) {
  if (to_s <= from_s || half_life_s <= 0) return value;
  return value * std::exp2(-static_cast<double>(to_s - from_s) / half_life_s);
}

// Opens the file and sets it up; the error's code says whether the file is not a store (Corruption).
Result<sqlite3*> open_file(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    Error e = sqlite_error(db, "cannot open", path);
    sqlite3_close(db);
    return e;
  }
  sqlite3_busy_timeout(db, 2000);
  // A lost last update costs a little history, not a credit: NORMAL is durable enough under WAL.
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", kSchema, "PRAGMA quick_check"}) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
      Error e = sqlite_error(db, sql, path);
      sqlite3_close(db);
      return e;
    }
  }
  return db;
}

Result<void> load(sqlite3* db, const std::string& path, std::map<std::string, PeerReputation>& out) {
  Statement s(db,
              "SELECT peer, good, bad, answered, unreachable, served, timed_out, verified, speed, speed_samples,"
              " first_seen, updated, excluded_reason, excluded_since FROM peers");
  if (!s) return sqlite_error(db, "reading peers", path);
  int rc;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    PeerReputation p;
    auto text = [&](int c) {
      const unsigned char* t = sqlite3_column_text(s.get(), c);
      return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
    };
    auto u64 = [&](int c) { return static_cast<uint64_t>(std::max<int64_t>(0, sqlite3_column_int64(s.get(), c))); };
    p.peer_id = text(0);
    p.good = std::max(0.0, sqlite3_column_double(s.get(), 1));
    p.bad = std::max(0.0, sqlite3_column_double(s.get(), 2));
    p.answered = u64(3);
    p.unreachable = u64(4);
    p.served = u64(5);
    p.timed_out = u64(6);
    p.verified = u64(7);
    p.speed = std::clamp(sqlite3_column_double(s.get(), 8), ReputationStore::kMinSpeed, 1.0);
    p.speed_samples = u64(9);
    p.first_seen_s = sqlite3_column_int64(s.get(), 10);
    p.updated_s = sqlite3_column_int64(s.get(), 11);
    p.excluded_reason = text(12).substr(0, ReputationStore::kMaxReasonBytes);
    p.excluded_since_s = sqlite3_column_int64(s.get(), 13);
    out[p.peer_id] = std::move(p);
  }
  if (rc != SQLITE_DONE) return sqlite_error(db, "reading peers", path);
  return {};
}

}  // namespace

const char* peer_event_name(PeerEvent event) {
  switch (event) {
    case PeerEvent::Answered: return "answered";
    case PeerEvent::Unreachable: return "unreachable";
    case PeerEvent::Served: return "served";
    case PeerEvent::TimedOut: return "timed out";
    case PeerEvent::Verified: return "verified";
  }
  return "?";
}

int64_t unix_now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double PeerReputation::uptime() const {
  const uint64_t probes = answered + unreachable;
  return probes == 0 ? 1.0 : static_cast<double>(answered) / static_cast<double>(probes);
}

double PeerReputation::score(int64_t now_s, double half_life_s) const {
  if (excluded()) return 0;
  const double g = decay(good, updated_s, now_s, half_life_s), b = decay(bad, updated_s, now_s, half_life_s);
  const double reliability = (g + ReputationStore::kPriorGood) / (g + b + ReputationStore::kPriorGood);
  return reliability * std::clamp(speed, ReputationStore::kMinSpeed, 1.0);
}

Result<std::shared_ptr<ReputationStore>> ReputationStore::open(const std::string& dir, Options options) {
  if (options.max_peers == 0) options.max_peers = 1;
  if (dir.empty()) return std::shared_ptr<ReputationStore>(new ReputationStore(nullptr, "", options));
  const std::string path = dir + "/" + kFileName;
  auto db = open_file(path);
  std::map<std::string, PeerReputation> peers;
  std::string recovered;
  if (db) {
    if (auto r = load(*db, path, peers); !r) {
      // A database of another shape (a peers table without these columns) is not a store either.
      sqlite3_close(*db);
      db = Error{ErrorCode::Corruption, r.error().message};
    }
  }
  if (!db && db.error().code == ErrorCode::Corruption) {
    // Not a store: set it aside (for a person to look at) and start afresh.
    recovered = db.error().message;
    const std::string aside = path + ".corrupt";
    std::remove((path + "-wal").c_str());
    std::remove((path + "-shm").c_str());
    if (std::rename(path.c_str(), aside.c_str()) != 0)
      return Error{ErrorCode::Unavailable, "reputation store " + path + " is corrupt and cannot be moved aside"};
    peers.clear();
    db = open_file(path);
  }
  if (!db) return db.error();
  std::shared_ptr<ReputationStore> store(new ReputationStore(*db, path, options));
  store->recovered_ = std::move(recovered);
  store->peers_ = std::move(peers);
  while (store->peers_.size() > options.max_peers) store->evict_one();
  return store;
}

ReputationStore::~ReputationStore() {
  if (db_) sqlite3_close(db_of(db_));
}

PeerReputation& ReputationStore::entry(const std::string& peer_id, int64_t now_s) {
  auto it = peers_.find(peer_id);
  if (it == peers_.end()) {
    while (peers_.size() >= options_.max_peers) evict_one();
    PeerReputation p;
    p.peer_id = peer_id;
    p.first_seen_s = p.updated_s = now_s;
    it = peers_.emplace(peer_id, std::move(p)).first;
  }
  PeerReputation& p = it->second;
  // Bring the decayed counts to now before anything is added to them.
  p.good = decay(p.good, p.updated_s, now_s, options_.half_life_s);
  p.bad = decay(p.bad, p.updated_s, now_s, options_.half_life_s);
  p.updated_s = std::max(p.updated_s, now_s);
  return p;
}

void ReputationStore::evict_one() {
  // The least recently updated peer, excluded ones only when nothing else is left.
  auto victim = peers_.end();
  for (auto it = peers_.begin(); it != peers_.end(); ++it) {
    if (victim == peers_.end()) {
      victim = it;
      continue;
    }
    const auto key = [](const PeerReputation& p) { return std::make_pair(p.excluded() ? 1 : 0, p.updated_s); };
    if (key(it->second) < key(victim->second)) victim = it;
  }
  if (victim == peers_.end()) return;
  (void)forget(victim->first);  // a row that could not be deleted is dropped again at the next open
  peers_.erase(victim);
}

Result<void> ReputationStore::save(const PeerReputation& p) {
  if (!db_) return {};
  sqlite3* db = db_of(db_);
  Statement s(db,
              "INSERT OR REPLACE INTO peers (peer, good, bad, answered, unreachable, served, timed_out, verified,"
              " speed, speed_samples, first_seen, updated, excluded_reason, excluded_since)"
              " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  if (!s) return sqlite_error(db, "preparing a write", path_);
  sqlite3_stmt* st = s.get();
  sqlite3_bind_text(st, 1, p.peer_id.data(), static_cast<int>(p.peer_id.size()), SQLITE_STATIC);
  sqlite3_bind_double(st, 2, p.good);
  sqlite3_bind_double(st, 3, p.bad);
  int c = 4;
  for (uint64_t v : {p.answered, p.unreachable, p.served, p.timed_out, p.verified})
    sqlite3_bind_int64(st, c++, static_cast<int64_t>(v));
  sqlite3_bind_double(st, 9, p.speed);
  sqlite3_bind_int64(st, 10, static_cast<int64_t>(p.speed_samples));
  sqlite3_bind_int64(st, 11, p.first_seen_s);
  sqlite3_bind_int64(st, 12, p.updated_s);
  sqlite3_bind_text(st, 13, p.excluded_reason.data(), static_cast<int>(p.excluded_reason.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st, 14, p.excluded_since_s);
  if (sqlite3_step(st) != SQLITE_DONE) return sqlite_error(db, "writing peer " + p.peer_id, path_);
  return {};
}

Result<void> ReputationStore::forget(const std::string& peer_id) {
  if (!db_) return {};
  sqlite3* db = db_of(db_);
  Statement s(db, "DELETE FROM peers WHERE peer = ?");
  if (!s) return sqlite_error(db, "preparing a delete", path_);
  sqlite3_bind_text(s.get(), 1, peer_id.data(), static_cast<int>(peer_id.size()), SQLITE_STATIC);
  if (sqlite3_step(s.get()) != SQLITE_DONE) return sqlite_error(db, "forgetting peer " + peer_id, path_);
  return {};
}

Result<void> ReputationStore::record(const std::string& peer_id, PeerEvent event, int64_t now_s) {
  std::lock_guard lock(mutex_);
  PeerReputation& p = entry(peer_id, now_s);
  const Weight w = weight_of(event);
  p.good += w.good;
  p.bad += w.bad;
  switch (event) {
    case PeerEvent::Answered: p.answered++; break;
    case PeerEvent::Unreachable: p.unreachable++; break;
    case PeerEvent::Served: p.served++; break;
    case PeerEvent::TimedOut: p.timed_out++; break;
    case PeerEvent::Verified: p.verified++; break;
  }
  return save(p);
}

Result<void> ReputationStore::record_speed(const std::string& peer_id, double measured_tps, double claimed_tps,
                                           int64_t now_s) {
  if (!(measured_tps > 0) || !(claimed_tps > 0)) return {};
  std::lock_guard lock(mutex_);
  PeerReputation& p = entry(peer_id, now_s);
  const double ratio = std::clamp(measured_tps / claimed_tps, kMinSpeed, 1.0);
  // A running mean that forgets: the last ~8 measurements count.
  const double alpha = p.speed_samples == 0 ? 1.0 : std::max(1.0 / static_cast<double>(p.speed_samples + 1), 0.125);
  p.speed = std::clamp((1 - alpha) * p.speed + alpha * ratio, kMinSpeed, 1.0);
  p.speed_samples++;
  return save(p);
}

Result<void> ReputationStore::record_fault(const std::string& peer_id, const std::string& reason, int64_t now_s) {
  std::lock_guard lock(mutex_);
  PeerReputation& p = entry(peer_id, now_s);
  if (!p.excluded()) {
    p.excluded_reason = reason.empty() ? "found faulty" : reason.substr(0, kMaxReasonBytes);
    p.excluded_since_s = now_s;
  }
  return save(p);
}

Result<void> ReputationStore::pardon(const std::string& peer_id) {
  std::lock_guard lock(mutex_);
  if (peers_.erase(peer_id) == 0) return Error{ErrorCode::NotFound, "no reputation kept for peer " + peer_id};
  return forget(peer_id);
}

double ReputationStore::score(const std::string& peer_id, int64_t now_s) const {
  std::lock_guard lock(mutex_);
  auto it = peers_.find(peer_id);
  return it == peers_.end() ? 1.0 : it->second.score(now_s, options_.half_life_s);
}

std::optional<PeerReputation> ReputationStore::find(const std::string& peer_id) const {
  std::lock_guard lock(mutex_);
  auto it = peers_.find(peer_id);
  if (it == peers_.end()) return std::nullopt;
  return it->second;
}

std::vector<PeerReputation> ReputationStore::peers(int64_t now_s) const {
  std::vector<PeerReputation> out;
  {
    std::lock_guard lock(mutex_);
    for (const auto& entry : peers_) out.push_back(entry.second);
  }
  const double h = options_.half_life_s;
  std::stable_sort(out.begin(), out.end(), [&](const PeerReputation& a, const PeerReputation& b) {
    return a.score(now_s, h) > b.score(now_s, h);
  });
  return out;
}

}  // namespace omni::swarm
