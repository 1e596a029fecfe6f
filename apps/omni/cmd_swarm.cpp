// omni swarm status: what the swarm's directory says — nodes, the models they serve, each model's
// block coverage and throughput — and what this data directory's reputation store (the one
// `omni run` and `omni gateway` with the same --data-dir keep) says of each node: score, uptime,
// and whether it is excluded, why and since when. As a table, or as one JSON object with --json.
// omni swarm verify-fault: checks a fault report (swarm/fault_report.h) against a local model file.
// omni swarm exclude / pardon: an operator's verdict on a node in that store.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <thread>

#include "cli_options.h"
#include "commands.h"
#include "net/node_info.h"
#include "net/peer_id.h"
#include "swarm/assignment.h"
#include "swarm/dht_directory.h"
#include "swarm/fault_report.h"
#include "swarm/reputation.h"

namespace omni::cli {
namespace {

struct SwarmOptions {
  std::vector<std::string> bootstrap;
  bool lan = false;  // find DHT nodes by multicast (OpenDHT peer discovery) instead of / besides --bootstrap
  bool json = false;
  uint32_t wait_ms = 1500;  // let the fresh DHT node find its neighbours before reading
  std::string data_dir;     // whose reputation store to show
};

nlohmann::json reputation_json(const swarm::PeerReputation& p, int64_t now_s, double half_life_s) {
  nlohmann::json j = {{"score", p.score(now_s, half_life_s)}, {"uptime", p.uptime()},
                      {"answered", p.answered}, {"unreachable", p.unreachable}, {"served", p.served},
                      {"timed_out", p.timed_out}, {"verified", p.verified}, {"speed", p.speed},
                      {"excluded", p.excluded()}};
  if (p.excluded()) {
    j["excluded_reason"] = p.excluded_reason;
    j["excluded_since"] = p.excluded_since_s;
  }
  return j;
}

int swarm_status(const SwarmOptions& o) {
  swarm::DhtOptions dht;
  dht.bootstrap = o.bootstrap;
  dht.lan = o.lan;
  auto directory = swarm::DhtDirectory::start(dht);
  if (!directory) return fail("swarm status", directory.error());
  std::this_thread::sleep_for(std::chrono::milliseconds(o.wait_ms));
  auto found = swarm::lookup(**directory, "");
  if (!found) return fail("swarm status", found.error());
  std::map<std::string, std::vector<swarm::NodeRecord>> by_model;
  for (const auto& r : found->records) by_model[r.model_id].push_back(r);
  // A data directory that does not exist has seen no peer: nothing is created for a status read.
  std::shared_ptr<swarm::ReputationStore> reputation;
  const std::string data_dir = data_dir_or_default(o.data_dir);
  struct stat st {};
  if (::stat(data_dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    auto opened = swarm::ReputationStore::open(data_dir);
    if (!opened) return fail("swarm status", opened.error());
    reputation = std::move(*opened);
  }
  const int64_t now_s = swarm::unix_now_s();
  auto known = [&](const std::string& peer) -> std::optional<swarm::PeerReputation> {
    return reputation ? reputation->find(peer) : std::nullopt;
  };

  nlohmann::json out;
  out["nodes"] = nlohmann::json::array();
  out["models"] = nlohmann::json::array();
  out["rejected_records"] = found->rejected;
  out["rejected_reasons"] = found->reasons;
  for (const auto& r : found->records) {
    nlohmann::json links = nlohmann::json::object();
    for (const auto& l : r.links) links[l.peer_id] = l.rtt_ms;
    out["nodes"].push_back({{"peer_id", r.peer_id}, {"addresses", r.addresses}, {"model_id", r.model_id},
                            {"cid", swarm::model_cid_of_key(r.model_id)}, {"model", r.model_name}, {"blocks", {r.block_begin, r.block_end}},
                            {"block_tps", r.block_tps}, {"span_tps", r.span_tps()},
                            {"max_sessions", r.max_sessions}, {"protocol_version", r.protocol_version},
                            {"expires_in_s", (r.expires_ms - swarm::unix_now_ms()) / 1000.0},
                            {"links_ms", links}});
    if (auto p = known(r.peer_id)) out["nodes"].back()["reputation"] = reputation_json(*p, now_s, reputation->half_life_s());
  }
  // Every peer this data directory excluded, listed or not (a liar may stop announcing).
  out["excluded"] = nlohmann::json::array();
  if (reputation)
    for (const auto& p : reputation->peers(now_s))
      if (p.excluded())
        out["excluded"].push_back(
            {{"peer_id", p.peer_id}, {"reason", p.excluded_reason}, {"since", p.excluded_since_s}});
  for (const auto& [id, records] : by_model) {
    const uint32_t n = records.front().n_layer;
    auto c = swarm::coverage_of(records, n);
    const double min_tps = *std::min_element(c.throughput.begin(), c.throughput.end());
    const bool complete = std::all_of(c.replicas.begin(), c.replicas.end(), [](uint32_t k) { return k > 0; });
    out["models"].push_back({{"model_id", id}, {"cid", swarm::model_cid_of_key(id)},
                             {"name", records.front().model_name}, {"n_layer", n},
                             {"nodes", records.size()}, {"complete", complete}, {"min_block_tps", min_tps},
                             {"replicas", c.replicas}, {"throughput", c.throughput}});
  }
  if (o.json) {
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("%zu nodes, %zu models, %zu records rejected\n\n", found->records.size(), by_model.size(),
              found->rejected);
  std::printf("%-20s %-22s %-14s %-9s %10s %8s %6s %s\n", "PEER", "ADDRESS", "MODEL", "BLOCKS", "TOK/S/BLK",
              "SESSIONS", "SCORE", "UPTIME");
  for (const auto& r : found->records) {
    char blocks[32], score[32] = "-", uptime[32] = "-";
    std::snprintf(blocks, sizeof blocks, "%u:%u", r.block_begin, r.block_end);
    const auto p = known(r.peer_id);
    if (p) {
      std::snprintf(score, sizeof score, "%.2f", p->score(now_s, reputation->half_life_s()));
      std::snprintf(uptime, sizeof uptime, "%.0f%%", 100 * p->uptime());
    }
    std::printf("%-20.20s %-22.22s %-14.14s %-9s %10.0f %8u %6s %s%s\n", r.peer_id.c_str(),
                r.addresses.empty() ? "-" : r.addresses[0].c_str(), r.model_name.c_str(), blocks, r.block_tps,
                r.max_sessions, score, uptime, p && p->excluded() ? " EXCLUDED" : "");
  }
  for (const auto& e : out["excluded"])
    std::printf("excluded: %s since %s: %s\n", e["peer_id"].get<std::string>().c_str(),
                std::to_string(e["since"].get<int64_t>()).c_str(), e["reason"].get<std::string>().c_str());
  for (const auto& m : out["models"]) {
    std::printf("\nmodel %s (%s): %s, min throughput %.0f tok/s\n  replicas per block:",
                m["name"].get<std::string>().c_str(), m["cid"].get<std::string>().c_str(),
                m["complete"].get<bool>() ? "all blocks served" : "INCOMPLETE", m["min_block_tps"].get<double>());
    for (auto k : m["replicas"]) std::printf(" %u", k.get<uint32_t>());
    std::printf("\n");
  }
  return 0;
}

// Exit 0: the report holds (the accused signed an output the model does not compute); 1: it does
// not, or it is malformed, forged or about another model (the reason on stderr).
int verify_fault(const std::string& file, const std::string& model_path, int threads) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return fail("swarm verify-fault", Error{ErrorCode::NotFound, file + ": cannot open"});
  std::string text;
  // A report is bounded (kMaxFaultRows rows); a file far bigger is not one.
  constexpr size_t kMaxReportBytes = 256ull << 20;
  text.assign(std::istreambuf_iterator<char>(in), {});
  if (text.size() > kMaxReportBytes)
    return fail("swarm verify-fault", Error{ErrorCode::InvalidArgument, file + ": too big for a fault report"});
  auto report = swarm::parse_fault_report(text);
  if (!report) return fail("swarm verify-fault", report.error());
  auto model = model::Model::load(model_path);
  if (!model) return fail("swarm verify-fault", model.error());
  auto identity = net::identify_model(**model);
  if (!identity) return fail("swarm verify-fault", identity.error());
  kernels::ThreadPool pool(threads_to_use(threads));
  auto verdict = swarm::verify_fault_report(*report, **model, *identity, pool);
  if (!verdict) return fail("swarm verify-fault", verdict.error());
  std::printf("%s: %s\n", verdict->faulty ? "FAULT CONFIRMED" : "NOT CONFIRMED", verdict->summary.c_str());
  return verdict->faulty ? 0 : 1;
}

// omni swarm exclude / pardon: an operator's own verdict on a node, in the same store (the data
// directory of the omni run or omni gateway it should apply to; a process running on it reads the
// store when it starts, so the verdict applies from its next start).
int swarm_exclude(const std::string& data_dir, const std::string& peer, const std::string& reason, bool pardon) {
  const char* what = pardon ? "swarm pardon" : "swarm exclude";
  if (!net::is_peer_id(peer)) return fail(what, Error{ErrorCode::InvalidArgument, "'" + peer + "' is not a peer id"});
  const std::string dir = data_dir_or_default(data_dir);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  auto store = swarm::ReputationStore::open(dir);
  if (!store) return fail(what, store.error());
  auto done = pardon ? (*store)->pardon(peer) : (*store)->record_fault(peer, reason, swarm::unix_now_s());
  if (!done) return fail(what, done.error());
  std::printf("%s %s\n", pardon ? "pardoned" : "excluded", peer.c_str());
  return 0;
}

}  // namespace

void register_swarm(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<SwarmOptions>();
  auto* cmd = app.add_subcommand("swarm", "Inspect the swarm");
  cmd->require_subcommand(1);
  auto* status = cmd->add_subcommand("status", "Nodes, models, block coverage and throughput");
  add_host_port_list(status, "--bootstrap", o->bootstrap, "DHT nodes to join through, HOST:PORT");
  status->add_flag("--lan", o->lan, "Find DHT nodes on the LAN by multicast (OpenDHT peer discovery)");
  status->add_flag("--json", o->json, "One JSON object");
  add_data_dir(status, o->data_dir, "Whose reputation of the nodes to show (the data directory of omni run or omni gateway)");
  status->add_option("--wait-ms", o->wait_ms, "Milliseconds to let the DHT settle before reading")
      ->capture_default_str()
      ->check(count_in(0, UINT32_MAX));
  status->callback([o, &exit_code] {
    if (o->bootstrap.empty() && !o->lan) throw CLI::ValidationError("give --bootstrap HOST:PORT or --lan");
    exit_code = swarm_status(*o);
  });
  struct VerifyOptions {
    std::string file, model;
    int threads = 0;
  };
  auto v = std::make_shared<VerifyOptions>();
  auto* verify = cmd->add_subcommand("verify-fault", "Check a fault report by re-running its calls on a local model file");
  verify->add_option("FILE", v->file, "The fault report (JSON)")->required();
  verify->add_option("-m,--model", v->model, "The GGUF model file the report is about")->required();
  verify->add_option("-t,--threads", v->threads, "Threads (0: all cores)")->check(count_in(0, 1024));
  verify->callback([v, &exit_code] { exit_code = verify_fault(v->file, v->model, v->threads); });
  struct Verdict {
    std::string peer, reason = "excluded by the operator", data_dir;
  };
  auto verdict = std::make_shared<Verdict>();
  auto* exclude = cmd->add_subcommand("exclude", "Never route to a node again (this data directory's reputation store)");
  exclude->add_option("peer", verdict->peer, "The node's peer id")->required();
  exclude->add_option("--reason", verdict->reason, "Why (shown in swarm status and on the dashboard)")->capture_default_str();
  add_data_dir(exclude, verdict->data_dir, "Whose reputation store (the data directory of omni run or omni gateway)");
  exclude->callback([verdict, &exit_code] { exit_code = swarm_exclude(verdict->data_dir, verdict->peer, verdict->reason, false); });
  auto* pardon = cmd->add_subcommand("pardon", "Lift a node's exclusion and forget its history");
  pardon->add_option("peer", verdict->peer, "The node's peer id")->required();
  add_data_dir(pardon, verdict->data_dir, "Whose reputation store (the data directory of omni run or omni gateway)");
  pardon->callback([verdict, &exit_code] { exit_code = swarm_exclude(verdict->data_dir, verdict->peer, "", true); });
}

}  // namespace omni::cli
