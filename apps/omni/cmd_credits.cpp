// omni credits: a node's credit balance and its most recent work receipts, read from the ledger in
// its data directory (net::CreditLedger), as text or as one JSON object with --json. Reads only: a
// running node keeps writing meanwhile.
#include <cstdio>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli_options.h"
#include "commands.h"
#include "net/credit_ledger.h"

namespace omni::cli {
namespace {

struct CreditsOptions {
  std::string data_dir;
  bool json = false;
  uint32_t recent = 10;
};

std::string hex(const uint8_t* data, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(digits[data[i] >> 4]);
    out.push_back(digits[data[i] & 15]);
  }
  return out;
}

std::string utc(uint64_t unix_s) {
  const std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S", &tm);
  return b;
}

int credits(const CreditsOptions& o) {
  auto ledger = net::CreditLedger::open_read_only(data_dir_or_default(o.data_dir));
  if (!ledger) return fail("credits", ledger.error());
  auto balance = (*ledger)->balance();
  if (!balance) return fail("credits", balance.error());
  auto recent = (*ledger)->recent(o.recent);
  if (!recent) return fail("credits", recent.error());
  if (o.json) {
    nlohmann::json out;
    out["ledger"] = (*ledger)->path();
    out["balance"] = {{"work", balance->work},
                      {"tokens", balance->tokens},
                      {"receipts", balance->receipts},
                      {"clients", balance->clients}};
    out["recent"] = nlohmann::json::array();
    for (const auto& s : *recent) {
      const auto& r = s.receipt;
      out["recent"].push_back({{"client", r.client_id()},
                               {"node", r.node_id},
                               {"session", hex(r.session.data(), r.session.size())},
                               {"sequence", r.sequence},
                               {"tokens", r.tokens},
                               {"blocks", {r.block_begin, r.block_end}},
                               {"work", r.work()},
                               {"issued_at", r.issued_at},
                               {"received_at", s.received_at}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return kExitOk;
  }
  std::printf("ledger   %s\n", (*ledger)->path().c_str());
  std::printf("balance  %llu credits (tokens x blocks computed) from %llu receipts: %llu tokens, %llu clients\n",
              static_cast<unsigned long long>(balance->work), static_cast<unsigned long long>(balance->receipts),
              static_cast<unsigned long long>(balance->tokens), static_cast<unsigned long long>(balance->clients));
  if (recent->empty()) return kExitOk;
  std::printf("\n%-19s  %-55s  %7s  %-9s  %9s\n", "received (UTC)", "client", "tokens", "blocks", "credits");
  for (const auto& s : *recent) {
    const auto& r = s.receipt;
    const std::string blocks = std::to_string(r.block_begin) + ":" + std::to_string(r.block_end);
    std::printf("%-19s  %-55s  %7u  %-9s  %9llu\n", utc(s.received_at).c_str(), r.client_id().c_str(), r.tokens,
                blocks.c_str(), static_cast<unsigned long long>(r.work()));
  }
  return kExitOk;
}

}  // namespace

void register_credits(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<CreditsOptions>();
  auto* cmd = app.add_subcommand("credits", "Show a node's credit balance and recent work receipts");
  add_data_dir(cmd, o->data_dir, "The node's data directory, where its credit ledger is (default ~/.omni)");
  cmd->add_flag("--json", o->json, "One JSON object: the balance and the recent receipts");
  cmd->add_option("--recent", o->recent, "How many of the most recent receipts to list")
      ->check(count_in(0, 100000))
      ->capture_default_str();
  cmd->callback([o, &exit_code] { exit_code = credits(*o); });
}

}  // namespace omni::cli
