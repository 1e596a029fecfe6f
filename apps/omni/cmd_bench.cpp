// omni bench: prompt-processing and token-generation throughput of the local engine, measured the
// way llama-bench measures pp<P> and tg<N> so the two can be compared side by side:
//   pp<P>: a fresh session processes P tokens in one batch (logits of the last token only);
//   tg<N>: a fresh session generates N tokens one at a time (each a single-token forward).
// Token ids are random (the speed does not depend on them). Each test runs once as a warm-up, then
// --reps times; the table shows the median and the spread. Peak RSS is the process's high-water mark
// (getrusage), i.e. weights touched + KV cache + scratch. The report names the CPU and the kernel set
// used (the SIMD level, and OMNI_KERNELS where that capped it).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "cli_options.h"
#include "commands.h"
#include "kernels/cpu_name.h"
#include "kernels/matmul.h"
#include "model/model.h"

namespace omni::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchOptions {
  ModelSource model;
  int n_prompt = 512;
  int n_gen = 128;
  int threads = 0;
  int reps = 5;
  bool json = false;
};

int fail(const Error& e) { return cli::fail("bench", e); }

struct TestResult {
  std::string name;
  int n_tokens = 0;
  std::vector<double> tokens_per_s;
  double median = 0, min = 0, max = 0;
};

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// One timed run of a test; returns seconds, or an error.
Result<double> run_once(const model::Model& m, const std::vector<int32_t>& tokens, bool batch,
                        kernels::ThreadPool& pool) {
  const auto& cfg = m.config();
  auto session = model::Session::create(m, 0, cfg.n_layer, static_cast<uint32_t>(tokens.size()));
  if (!session) return session.error();
  std::vector<float> logits;
  const auto t0 = Clock::now();
  if (batch) {
    if (auto r = (*session)->forward(tokens, {}, model::Output::LastLogits, logits, pool); !r) return r.error();
  } else {
    for (int32_t t : tokens) {
      const int32_t one[1] = {t};
      if (auto r = (*session)->forward(one, {}, model::Output::LastLogits, logits, pool); !r) return r.error();
    }
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int run(BenchOptions o) {
  if (auto r = resolve_model(o.model.model, o.model.sha256, o.model.store_dir, "bench"); !r) return fail(r.error());
  auto model = model::Model::load(o.model.model);
  if (!model) return fail(model.error());
  const model::ModelConfig& cfg = (*model)->config();
  const int threads = threads_to_use(o.threads);
  kernels::ThreadPool pool(threads);

  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(cfg.n_vocab) - 1);
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& id : t) id = pick(rng);
    return t;
  };

  std::vector<TestResult> results;
  auto bench = [&](const std::string& name, int n, bool batch) -> Result<void> {
    TestResult r{name, n, {}, 0, 0, 0};
    const auto tokens = random_tokens(n);
    if (auto warm = run_once(**model, batch ? tokens : std::vector<int32_t>(tokens.begin(), tokens.begin() + 1),
                             batch, pool);
        !warm)
      return warm.error();
    for (int i = 0; i < o.reps; ++i) {
      auto s = run_once(**model, tokens, batch, pool);
      if (!s) return s.error();
      r.tokens_per_s.push_back(n / std::max(*s, 1e-12));
    }
    r.median = median_of(r.tokens_per_s);
    r.min = *std::min_element(r.tokens_per_s.begin(), r.tokens_per_s.end());
    r.max = *std::max_element(r.tokens_per_s.begin(), r.tokens_per_s.end());
    results.push_back(std::move(r));
    return {};
  };
  if (o.n_prompt > 0)
    if (auto r = bench("pp" + std::to_string(o.n_prompt), o.n_prompt, true); !r) return fail(r.error());
  if (o.n_gen > 0)
    if (auto r = bench("tg" + std::to_string(o.n_gen), o.n_gen, false); !r) return fail(r.error());

  std::error_code ec;
  const auto file_bytes = std::filesystem::file_size(o.model.model, ec);
  const double size_mib = ec ? 0.0 : static_cast<double>(file_bytes) / 1048576.0;
  const double rss = peak_rss_mib();
  if (o.json) {
    nlohmann::json j;
    j["model"] = o.model.model;
    j["architecture"] = cfg.arch_name;
    j["size_mib"] = size_mib;
    j["threads"] = threads;
    j["reps"] = o.reps;
    j["simd"] = kernels::simd_level();
    j["cpu"] = kernels::cpu_name();
    if (const char* cap = std::getenv("OMNI_KERNELS")) j["omni_kernels"] = cap;
    j["peak_rss_mib"] = rss;
    for (const auto& r : results)
      j["tests"].push_back({{"test", r.name},
                            {"n_tokens", r.n_tokens},
                            {"tokens_per_s_median", r.median},
                            {"tokens_per_s_min", r.min},
                            {"tokens_per_s_max", r.max},
                            {"tokens_per_s", r.tokens_per_s}});
    std::printf("%s\n", j.dump(1).c_str());
  } else {
    const char* cap = std::getenv("OMNI_KERNELS");
    std::printf("CPU: %s; kernels: %s%s%s\n\n", kernels::cpu_name().c_str(), kernels::simd_level(),
                cap ? " (OMNI_KERNELS=" : "", cap ? (std::string(cap) + ")").c_str() : "");
    std::printf("| model | size MiB | threads | simd | test | t/s (median) | min .. max | peak RSS MiB |\n");
    std::printf("|---|---:|---:|---|---|---:|---|---:|\n");
    const std::string name = std::filesystem::path(o.model.model).filename().string();
    for (const auto& r : results)
      std::printf("| %s | %.2f | %d | %s | %s | %.2f | %.2f .. %.2f | %.0f |\n", name.c_str(), size_mib, threads,
                  kernels::simd_level(), r.name.c_str(), r.median, r.min, r.max, rss);
  }
  return 0;
}

}  // namespace

void register_bench(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "Measure prompt (pp) and generation (tg) throughput, like llama-bench");
  add_model_source(cmd, o->model, /*with_store=*/false);
  cmd->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens for the pp test (0 = skip)")
      ->capture_default_str()
      ->check(count_in(0, INT32_MAX));
  cmd->add_option("-n,--n-gen", o->n_gen, "Generated tokens for the tg test (0 = skip)")
      ->capture_default_str()
      ->check(count_in(0, INT32_MAX));
  add_threads(cmd, o->threads);
  cmd->add_option("-r,--reps", o->reps, "Timed repetitions after one warm-up")->capture_default_str()->check(count_in(1, INT32_MAX));
  cmd->add_flag("--json", o->json, "Print the results as JSON");
  cmd->callback([o, &exit_code] { exit_code = run(*o); });
}

}  // namespace omni::cli
