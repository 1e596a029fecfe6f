#include "swarm/machine_check.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "base/system_error.h"
#include "kernels/cpu_name.h"
#include "kernels/matmul.h"
#include "model/synth.h"
#include "swarm/assignment.h"
#include "swarm/node_profile.h"

namespace omni::swarm {
namespace {

// Free bytes for an unprivileged user on the file system of `dir`, or of its nearest existing
// parent (a node creates its data directory on first start), and that directory.
Result<std::pair<std::string, uint64_t>> free_disk(std::string dir) {
  if (dir.empty()) dir = ".";
  for (;;) {
    struct statvfs s{};
    if (::statvfs(dir.c_str(), &s) == 0)
      return std::make_pair(dir, static_cast<uint64_t>(s.f_bavail) * static_cast<uint64_t>(s.f_frsize));
    const int err = errno;
    if (err != ENOENT && err != ENOTDIR) return errno_error(err, "free disk of " + dir);
    const auto slash = dir.find_last_of('/');
    if (slash == std::string::npos) {
      dir = ".";
    } else if (dir == "/") {
      return errno_error(err, "free disk of /");
    } else {
      dir = slash == 0 ? "/" : dir.substr(0, slash);
    }
  }
}

// Removes a directory tree on scope exit.
struct TempDir {
  std::filesystem::path path;
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
};

Result<ModelFit> fit_of(const model::Model& model, const MachineCheckOptions& o, uint64_t available) {
  ModelFit fit;
  const ModelFootprint footprint = footprint_of(model);
  fit.blocks = static_cast<uint32_t>(footprint.block_bytes.size());
  for (uint64_t b : footprint.block_bytes) fit.largest_block_bytes = std::max(fit.largest_block_bytes, b);
  fit.embedding_bytes = footprint.embedding_bytes;
  fit.memory_cap_bytes = o.max_memory_bytes > 0 ? o.max_memory_bytes : available;
  fit.kv_bytes = o.kv_bytes;
  auto n = blocks_that_fit(footprint, o.kv_bytes, fit.memory_cap_bytes);
  if (n) fit.blocks_that_fit = *n;
  else fit.why_none = n.error().message;
  auto tps = measure_block_tps(model, std::max(o.threads, 1), o.measure_ms);
  if (!tps) return tps.error();
  fit.block_tokens_per_s = *tps;
  // Decoding one token through k blocks is k single-block forwards, one after another.
  fit.tokens_per_s = fit.blocks_that_fit > 0 ? *tps / fit.blocks_that_fit : 0.0;
  return fit;
}

}  // namespace

uint64_t total_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  uint64_t kib = 0;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemTotal:") return kib << 10;
  }
  return 0;
}

Result<MachineReport> check_machine(const MachineCheckOptions& o, const model::Model* model, const std::string& name) {
  MachineReport r;
  r.cpu = kernels::cpu_name();
  r.cpu_features = kernels::cpu_features();
  r.kernels = kernels::simd_level();
  r.cores = std::max(1u, std::thread::hardware_concurrency());
  r.memory_total_bytes = total_memory_bytes();
  r.memory_available_bytes = available_memory_bytes();
  r.data_dir = o.data_dir;
  auto disk = free_disk(o.data_dir);
  if (!disk) return disk.error();
  r.disk_dir = disk->first;
  r.disk_free_bytes = disk->second;

  if (model != nullptr) {
    auto fit = fit_of(*model, o, r.memory_available_bytes);
    if (!fit) return fit.error();
    r.model = std::move(*fit);
    r.model.name = name;
    return r;
  }
  // The stand-in: a sparse file costs a few MB of disk whatever the shape.
  std::error_code ec;
  std::filesystem::path base(o.temp_dir);
  if (base.empty()) base = std::filesystem::temp_directory_path(ec);
  if (ec) return Error{ErrorCode::NotFound, "no temporary directory for the synthetic model: " + ec.message()};
  TempDir dir{base / ("omni-doctor-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}()))};
  std::filesystem::create_directories(dir.path, ec);
  if (ec) return Error{error_code_from_errno(ec.value()), "creating " + dir.path.string() + ": " + ec.message()};
  const auto mix = model::mix_from_name(o.synthetic_mix);
  if (!mix) return Error{ErrorCode::InvalidArgument, "unknown mix \"" + o.synthetic_mix + "\""};
  model::SynthOptions synth;
  synth.shape = o.synthetic_shape;
  synth.mix = *mix;
  synth.sparse = true;
  synth.threads = static_cast<unsigned>(std::max(o.threads, 1));
  synth.out_path = (dir.path / "standin.gguf").string();
  auto written = model::synthesize(synth);
  if (!written) return written.error().with_context("the synthetic stand-in model");
  auto loaded = model::Model::load(synth.out_path);
  if (!loaded) return loaded.error().with_context("the synthetic stand-in model");
  auto fit = fit_of(**loaded, o, r.memory_available_bytes);
  if (!fit) return fit.error();
  r.model = std::move(*fit);
  r.model.name = o.synthetic_shape + " " + o.synthetic_mix + " (synthetic)";
  r.model.synthetic = true;
  return r;
}

}  // namespace omni::swarm
