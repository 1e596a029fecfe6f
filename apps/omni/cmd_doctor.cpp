// omni doctor [--json] [--model FILE|CID] [--bootstrap HOST:PORT]: what this machine can give a
// swarm, before it joins (swarm/machine_check.h), and whether the Internet reaches its node port or
// it needs a relay (net/reachability.h). Text for people, or one JSON object with --json.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "base/parse.h"
#include "cli_options.h"
#include "commands.h"
#include "net/reachability.h"
#include "swarm/machine_check.h"

namespace omni::cli {
namespace {

struct DoctorOptions {
  ModelSource model;
  std::string data_dir;
  uint64_t max_memory_mib = 0;  // 0: MemAvailable
  uint64_t max_kv_mib = 2048;
  int threads = 0;
  double measure_s = 1.0;
  std::string bootstrap;
  uint16_t port = 7000;  // omni node's default --listen port
  bool json = false;
};

nlohmann::json model_json(const swarm::ModelFit& m, int threads) {
  nlohmann::json j;
  j["name"] = m.name;
  j["synthetic"] = m.synthetic;
  j["blocks"] = m.blocks;
  j["largest_block_bytes"] = m.largest_block_bytes;
  j["embedding_bytes"] = m.embedding_bytes;
  j["memory_cap_bytes"] = m.memory_cap_bytes;
  j["kv_bytes"] = m.kv_bytes;
  j["blocks_that_fit"] = m.blocks_that_fit;
  if (m.blocks_that_fit == 0) j["why_none"] = m.why_none;
  j["threads"] = threads;
  j["block_tokens_per_s"] = m.block_tokens_per_s;
  j["tokens_per_s"] = m.tokens_per_s;
  return j;
}

// What the check found, as a sentence.
std::string reach_sentence(const net::ReachabilityResult& r, uint16_t port, const std::string& bootstrap) {
  const std::string at = r.seen_address + " port " + std::to_string(port);
  const std::string remedy = ": a node here needs --upnp (a router that maps ports), a port forward, or --relay";
  if (r.reachable()) return "reachable from outside: " + bootstrap + " connected back to " + at;
  switch (r.verdict) {
    case net::ReachVerdict::Open:
      return "not reachable: " + at + " answered, but not on this machine (another one behind the same address holds "
             "that port)" + remedy;
    case net::ReachVerdict::Refused:
      return "not reachable: " + at + " refused " + bootstrap + "'s connection" + remedy;
    case net::ReachVerdict::TimedOut:
      return "not reachable: " + at + " did not answer " + bootstrap + " in time (a firewall or a NAT drops it)" + remedy;
    case net::ReachVerdict::Unreachable:
      return "not reachable: " + bootstrap + " has no route to " + at + remedy;
  }
  return {};
}

int run_doctor(DoctorOptions o) {
  const std::string data_dir = data_dir_or_default(o.data_dir);
  swarm::MachineCheckOptions check;
  check.data_dir = data_dir;
  check.max_memory_bytes = o.max_memory_mib << 20;
  check.kv_bytes = o.max_kv_mib << 20;
  check.threads = threads_to_use(o.threads);
  check.measure_ms = static_cast<uint32_t>(o.measure_s * 1000);
  std::unique_ptr<model::Model> model;
  if (!o.model.model.empty()) {
    o.model.store_dir = store_dir_or_default(o.model.store_dir, o.data_dir);
    if (auto r = resolve_model(o.model.model, o.model.sha256, o.model.store_dir, "doctor"); !r)
      return fail("doctor", r.error());
    auto loaded = load_model(o.model);
    if (!loaded) return fail("doctor", loaded.error());
    model = std::move(*loaded);
  }
  auto report = swarm::check_machine(check, model.get(), o.model.model);
  if (!report) return fail("doctor", report.error());

  nlohmann::json out;
  out["cpu"] = report->cpu;
  out["cpu_features"] = report->cpu_features;
  out["kernels"] = report->kernels;
  out["cores"] = report->cores;
  out["memory_total_bytes"] = report->memory_total_bytes;
  out["memory_available_bytes"] = report->memory_available_bytes;
  out["data_dir"] = report->data_dir;
  out["disk_dir"] = report->disk_dir;
  out["disk_free_bytes"] = report->disk_free_bytes;
  out["model"] = model_json(report->model, check.threads);

  nlohmann::json reach;
  std::string reach_text;
  reach["port"] = o.port;
  if (o.bootstrap.empty()) {
    reach["checked"] = false;
    reach["error"] = "no --bootstrap to ask";
    reach_text = "reachability: not checked (give --bootstrap HOST:PORT to ask a bootstrap node to connect back)";
  } else {
    reach["bootstrap"] = o.bootstrap;
    auto hp = parse_host_port(o.bootstrap);
    auto r = hp ? net::check_reachability(*hp, o.port) : Result<net::ReachabilityResult>(hp.error());
    reach["checked"] = static_cast<bool>(r);
    if (r) {
      reach["verdict"] = net::reach_verdict_name(r->verdict);
      reach["seen_address"] = r->seen_address;
      reach["listened"] = r->listened;
      reach["probe_received"] = r->probe_received;
      reach["reachable"] = r->reachable();
      reach["needs_relay"] = !r->reachable();
      reach_text = reach_sentence(*r, o.port, o.bootstrap);
    } else {
      reach["error"] = r.error().message;
      reach_text = "reachability: not checked: " + r.error().message;
    }
  }
  out["reachability"] = reach;

  if (o.json) {
    std::printf("%s\n", out.dump(2).c_str());
    return kExitOk;
  }
  auto gib = [](uint64_t b) { return static_cast<double>(b) / (1ull << 30); };
  std::string features;
  for (const auto& f : report->cpu_features) features += (features.empty() ? "" : " ") + f;
  std::printf("CPU: %s (%s), kernels %s, %u hardware threads\n", report->cpu.c_str(),
              features.empty() ? "no SIMD features omni uses" : features.c_str(), report->kernels.c_str(),
              report->cores);
  std::printf("memory: %.1f GiB total, %.1f GiB available\n", gib(report->memory_total_bytes),
              gib(report->memory_available_bytes));
  std::printf("disk: %.1f GiB free in %s\n", gib(report->disk_free_bytes), report->disk_dir.c_str());
  const auto& m = report->model;
  if (m.blocks_that_fit > 0)
    std::printf("model %s: %u of its %u blocks fit in %.1f GiB (next to %.1f GiB of KV cache); about %.2f tokens/s "
                "through them on %d threads (%.1f through one block)\n",
                m.name.c_str(), m.blocks_that_fit, m.blocks, gib(m.memory_cap_bytes), gib(m.kv_bytes), m.tokens_per_s,
                check.threads, m.block_tokens_per_s);
  else
    std::printf("model %s: no block fits: %s\n", m.name.c_str(), m.why_none.c_str());
  std::printf("%s\n", reach_text.c_str());
  return kExitOk;
}

}  // namespace

void register_doctor(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<DoctorOptions>();
  auto* cmd = app.add_subcommand("doctor",
                                 "What this machine can give a swarm: CPU, kernels, cores, memory, disk, the blocks of "
                                 "a model that fit and their speed, and whether its node port is reachable");
  // As add_model_source's, but optional: without a model a synthetic stand-in is measured.
  cmd->add_option("-m,--model", o->model.model,
                  "GGUF model file, http(s):// URL, hf:ORG/REPO/FILE.gguf[@REV] or a model CID in --store "
                  "(default: a synthetic mistral-7b q4_k_m)");
  add_model_sha256(cmd, o->model.sha256);
  cmd->add_option("--store", o->model.store_dir, "Store of the model CID's shards (default ~/.omni/store)");
  add_data_dir(cmd, o->data_dir, "Directory the node keeps its data in, for the free disk (default ~/.omni)");
  cmd->add_option("--max-memory-mib", o->max_memory_mib, "Memory for weights + KV (default: MemAvailable)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));
  cmd->add_option("--max-kv-mib", o->max_kv_mib, "KV cache budget the blocks must leave room for, MiB")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30))
      ->capture_default_str();
  add_threads(cmd, o->threads);
  cmd->add_option("--measure-seconds", o->measure_s, "Time spent measuring tokens/s")
      ->check(CLI::Range(0.05, 60.0))
      ->capture_default_str();
  add_host_port(cmd, "--bootstrap", o->bootstrap,
                "A bootstrap node (omni node --bootstrap-only) to ask whether it can connect back to --port here");
  cmd->add_option("--port", o->port, "The TCP port a node here would listen on")
      ->check(CLI::Range(1024, 65535))
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "One JSON object instead of text");
  cmd->callback([o, &exit_code] { exit_code = run_doctor(*o); });
}

}  // namespace omni::cli
