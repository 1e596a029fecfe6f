// What a machine can give a swarm, measured before it joins (`omni doctor`): the CPU, its features
// and the kernel set the engine chose, cores, memory, free disk where the node keeps its data, and
// for one model how many of its blocks fit in the memory a node may use (the memory planner a
// joining node runs, assignment.h) and how many tokens/s they would decode (a short measurement of
// real forwards through one of its blocks, node_profile.h). Without a model, a synthetic one of a
// common shape stands in: written sparse (its weights read as zeros, which costs the kernels the
// same time as real ones) into a temporary directory and removed after.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/model.h"

namespace omni::swarm {

struct MachineCheckOptions {
  std::string data_dir;            // free disk is read here (or at its nearest existing parent)
  uint64_t max_memory_bytes = 0;   // memory for weights + KV; 0: MemAvailable
  uint64_t kv_bytes = 2048ull << 20;
  int threads = 1;
  uint32_t measure_ms = 1000;      // time spent measuring tokens/s (after one warm-up forward)
  // Without a model: the shape and mix of the synthetic stand-in (model/shapes.h), and where it is
  // written (empty: the system's temporary directory).
  std::string synthetic_shape = "mistral-7b";
  std::string synthetic_mix = "q4_k_m";
  std::string temp_dir;
};

struct ModelFit {
  std::string name;                // the model's path or CID, or "<shape> <mix> (synthetic)"
  bool synthetic = false;
  uint32_t blocks = 0;             // the model's n_layer
  uint64_t largest_block_bytes = 0;
  uint64_t embedding_bytes = 0;
  uint64_t memory_cap_bytes = 0;
  uint64_t kv_bytes = 0;
  uint32_t blocks_that_fit = 0;
  std::string why_none;            // when none fits: the planner's reason
  double block_tokens_per_s = 0;   // single-token forwards through one block
  double tokens_per_s = 0;         // through blocks_that_fit blocks (block_tokens_per_s / blocks_that_fit)
};

struct MachineReport {
  std::string cpu;                        // kernels::cpu_name()
  std::vector<std::string> cpu_features;  // kernels::cpu_features()
  std::string kernels;                    // the set matmul runs: kernels::simd_level()
  unsigned cores = 0;                     // hardware threads
  uint64_t memory_total_bytes = 0;        // MemTotal
  uint64_t memory_available_bytes = 0;    // MemAvailable
  std::string data_dir;
  std::string disk_dir;                   // where free disk was read (data_dir or its nearest existing parent)
  uint64_t disk_free_bytes = 0;           // for an unprivileged user
  ModelFit model;
};

// MemTotal from /proc/meminfo in bytes, 0 when unknown.
uint64_t total_memory_bytes();

// Checks the machine and the fit of `model` (`name` names it in the report), or of the synthetic
// stand-in when `model` is null. Errors: the data directory's file system cannot be read, the
// synthetic model cannot be written (disk, shape), the measurement fails. A model of which no block
// fits is not an error: blocks_that_fit is 0 and why_none says why.
Result<MachineReport> check_machine(const MachineCheckOptions& options, const model::Model* model,
                                    const std::string& name = {});

}  // namespace omni::swarm
