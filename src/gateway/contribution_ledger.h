// ContributionLedger: the work (tokens × blocks) this gateway's own sessions received from each
// node of the swarm, by peer id, kept in SQLite in its data directory (`<dir>/contributions.sqlite`,
// WAL). It is what fair use (fair_use.h) measures a node's contribution by: only work done for
// this gateway, on routes this gateway chose, counts; nothing a node or a client says about itself
// (docs/design.md, "Fair use").
//
// Bounds: at most max_nodes rows; a new node past that replaces the one with the least work (a
// flood of new ids each serving one token cannot push out real contributors). Thread-safe: every
// session's pipeline adds to it as it goes. A corrupt file is moved aside to
// `contributions.sqlite.corrupt` and a fresh ledger started (recovered() says so): the gateway
// keeps serving, contributors start again from the free tier.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "base/result.h"

namespace omni::gateway {

class ContributionLedger {
 public:
  static constexpr const char* kFileName = "contributions.sqlite";
  static constexpr size_t kDefaultMaxNodes = 4096;

  // dir empty: memory only. Errors: Unavailable when the file cannot be opened or created.
  static Result<std::shared_ptr<ContributionLedger>> open(const std::string& dir, size_t max_nodes = kDefaultMaxNodes);
  ~ContributionLedger();
  ContributionLedger(const ContributionLedger&) = delete;
  ContributionLedger& operator=(const ContributionLedger&) = delete;

  const std::string& recovered() const { return recovered_; }

  // Adds `work` to the node's total (in memory at once; the error, if any, is the file's).
  Result<void> add(const std::string& node_id, uint64_t work);
  uint64_t work_of(const std::string& node_id) const;
  size_t nodes() const;

 private:
  ContributionLedger(void* db, std::string path, size_t max_nodes) : db_(db), path_(std::move(path)), max_nodes_(max_nodes) {}
  void* db_;  // sqlite3*; null: memory only
  std::string path_;
  size_t max_nodes_;
  std::string recovered_;
  mutable std::mutex mutex_;
  std::map<std::string, uint64_t> work_;
};

}  // namespace omni::gateway
