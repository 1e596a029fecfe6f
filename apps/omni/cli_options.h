// The parts of omni's command line that several subcommands share: option groups (one call adds a
// group's flags to a CLI11 subcommand and checks their values), validators, and the exit codes.
//
// Values are checked while the command line is parsed, so a bad flag stops omni with exit code 2
// and a message naming the flag before any work starts (main.cpp prints it). Errors that only the
// run can find (a missing file, an unreachable peer) exit 1 through fail().
#pragma once

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "model/model.h"

namespace omni::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntimeError = 1;  // the command ran and failed
inline constexpr int kExitUsage = 2;         // the command line is wrong; nothing was done

// Prints "omni COMMAND: <message>" to stderr; returns kExitRuntimeError.
int fail(std::string_view command, const Error& error);

// "omni 0.1.0 (git abc1234), CPU kernels avx2": the CMake project version, the git description of
// the source tree when omni was configured, and the SIMD kernel set this machine runs.
std::string version_text();

// -t,--threads N: 1..kMaxThreads. Left out (0): one thread per hardware thread, as threads_to_use()
// says.
inline constexpr int kMaxThreads = 1024;
CLI::Option* add_threads(CLI::App* cmd, int& threads);
int threads_to_use(int threads);

// --data-dir DIR: the directory of this process's identity key; data_dir_or_default() gives
// net::Identity::default_dir() (~/.omni) when it is left out.
CLI::Option* add_data_dir(CLI::App* cmd, std::string& dir, const std::string& help);
std::string data_dir_or_default(const std::string& dir);

// A list of nodes, ID@HOST:PORT or HOST:PORT (net/peer_address.h), comma-separated: --peers and
// flags like it. Checked with net::parse_peer_list.
CLI::Option* add_peer_list(CLI::App* cmd, const std::string& name, std::string& peers, const std::string& help);

// One HOST:PORT (base/parse.h), e.g. --listen; or a list of them, comma-separated or repeated.
CLI::Option* add_host_port(CLI::App* cmd, const std::string& name, std::string& address, const std::string& help);
CLI::Option* add_host_port_list(CLI::App* cmd, const std::string& name, std::vector<std::string>& addresses,
                                const std::string& help);

// A timeout in seconds: a decimal number > 0 and at most kMaxTimeoutSeconds (with zero_means_off,
// 0 is allowed too). whole_seconds() rounds up for the layers that count whole seconds, so a short
// timeout never becomes none.
inline constexpr double kMaxTimeoutSeconds = 1e6;
CLI::Option* add_timeout(CLI::App* cmd, const std::string& name, double& seconds, const std::string& help,
                         bool zero_means_off = false);
uint32_t whole_seconds(double seconds);

// Where a model comes from: -m,--model FILE, URL or hf:ORG/REPO/FILE.gguf[@REV] (with
// --model-sha256), or with --store DIR a model CID in that store (src/store). with_store = false
// adds no --store. A URL must be resolved (resolve_model) before load_model.
struct ModelSource {
  std::string model;
  std::string store_dir;
  std::string sha256;  // --model-sha256
};
void add_model_source(CLI::App* cmd, ModelSource& source, bool with_store);
Result<std::unique_ptr<model::Model>> load_model(const ModelSource& source);

// --model-sha256 HEX: the SHA-256 a model fetched from a URL must have (checked while parsing).
CLI::Option* add_model_sha256(CLI::App* cmd, std::string& hex);
// The store a command keeps fetched models in: --store, else <data dir>/store.
std::string store_dir_or_default(const std::string& store_dir, const std::string& data_dir);
// Resolves a model argument in place (store/model_source.h): a URL or hf: name is fetched into
// `store_dir` (see store_dir_or_default) with a progress bar on stderr, or found there from an
// earlier run without network, and becomes the path of its verified copy; a file or CID is left as
// it is. `command` names the command in log lines.
Result<void> resolve_model(std::string& model, const std::string& sha256, const std::string& store_dir,
                           const std::string& command);

// Validators for CLI11's Option::check. Each says what it wants in its message; CLI11 puts the
// flag's name in front. Counts must fit the option's type: a count_in range stays within it.
// A whole number in [min, max]; with max = kNoMax, anything up to UINT64_MAX (for 64-bit options).
inline constexpr long long kNoMax = INT64_MAX;
CLI::Validator count_in(long long min, long long max = kNoMax);
// base::parse_byte_amount ("200k", "4Mi"), rewritten to the whole number for the option to store;
// use with Option::transform.
CLI::Validator byte_amount();
CLI::Validator number_in(double min, double max = HUGE_VAL);    // a finite number in [min, max]
CLI::Validator number_above(double min);                        // a finite number > min
CLI::Validator block_range(bool allow_empty = false);            // base::parse_block_range: A:B
CLI::Validator route_name();                                    // net::parse_topology: ring, chain, direct
CLI::Validator hidden_format_name();                            // net::parse_hidden_encoding: f16, f32, q8
// model::mix_from_name (q8_0, q4_k_m, ...); a tensor type that is no mix: "cannot <verb> tensor type".
CLI::Validator mix_name(const std::string& verb);

}  // namespace omni::cli
