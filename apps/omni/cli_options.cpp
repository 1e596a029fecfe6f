#include "cli_options.h"

#include <sys/stat.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <thread>

#include "base/parse.h"
#include "gguf/types.h"
#include "kernels/matmul.h"
#include "model/shapes.h"
#include "net/hidden_codec.h"
#include "net/identity.h"
#include "net/peer_address.h"
#include "net/pipeline.h"
#include "progress_bar.h"
#include "store/model_source.h"
#include "store/sharded_model.h"

namespace omni::cli {
namespace {

bool parse_whole(const std::string& text, long long& value) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  return !text.empty() && ec == std::errc() && ptr == end;
}

// Past INT64_MAX but within UINT64_MAX (a 64-bit seed or byte count).
bool is_large_unsigned(const std::string& text) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  return !text.empty() && ec == std::errc() && ptr == end && value > static_cast<uint64_t>(INT64_MAX);
}

bool parse_number(const std::string& text, double& value) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  return !text.empty() && ec == std::errc() && ptr == end && std::isfinite(value);
}

std::string shown(double v) {
  char text[32];
  std::snprintf(text, sizeof text, v == std::floor(v) && std::fabs(v) < 1e15 ? "%.0f" : "%g", v);
  return text;
}

// A validator from a parser that returns Result<T>: its error message is the validator's.
template <class Parse>
CLI::Validator from_parser(Parse parse, const std::string& description) {
  return CLI::Validator(
      [parse](std::string& text) -> std::string {
        auto r = parse(text);
        return r ? std::string() : r.error().message;
      },
      description);
}

}  // namespace

int fail(std::string_view command, const Error& error) {
  std::fprintf(stderr, "omni %.*s: %s\n", static_cast<int>(command.size()), command.data(), error.message.c_str());
  return kExitRuntimeError;
}

std::string version_text() {
  std::string text = "omni " OMNI_VERSION;
  if (std::string_view(OMNI_GIT_DESCRIBE).size()) text += " (git " OMNI_GIT_DESCRIBE ")";
  text += ", CPU kernels ";
  text += kernels::simd_level();
  return text;
}

CLI::Option* add_threads(CLI::App* cmd, int& threads) {
  return cmd->add_option("-t,--threads", threads, "Threads, 1.." + std::to_string(kMaxThreads) + " (default: all cores)")
      ->check(count_in(1, kMaxThreads));
}

int threads_to_use(int threads) {
  return threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

CLI::Option* add_data_dir(CLI::App* cmd, std::string& dir, const std::string& help) {
  return cmd->add_option("--data-dir", dir, help + " (default ~/.omni)");
}

std::string data_dir_or_default(const std::string& dir) { return dir.empty() ? net::Identity::default_dir() : dir; }

CLI::Option* add_peer_list(CLI::App* cmd, const std::string& name, std::string& peers, const std::string& help) {
  return cmd->add_option(name, peers, help)
      ->check(from_parser([](const std::string& text) { return net::parse_peer_list(text); }, "ID@HOST:PORT,..."));
}

CLI::Option* add_host_port(CLI::App* cmd, const std::string& name, std::string& address, const std::string& help) {
  return cmd->add_option(name, address, help)
      ->check(from_parser([](const std::string& text) { return parse_host_port(text); }, "HOST:PORT"));
}

CLI::Option* add_host_port_list(CLI::App* cmd, const std::string& name, std::vector<std::string>& addresses,
                                const std::string& help) {
  // The delimiter splits "a:1,b:2" before the check, which then sees one address at a time.
  return cmd->add_option(name, addresses, help)
      ->delimiter(',')
      ->check(from_parser([](const std::string& text) { return parse_host_port(text); }, "HOST:PORT"));
}

CLI::Option* add_timeout(CLI::App* cmd, const std::string& name, double& seconds, const std::string& help,
                         bool zero_means_off) {
  return cmd->add_option(name, seconds, help)
      ->check(CLI::Validator(
          [zero_means_off](std::string& text) -> std::string {
            double v = 0;
            const bool ok = parse_number(text, v) && v <= kMaxTimeoutSeconds && (v > 0 || (zero_means_off && v == 0));
            if (ok) return "";
            return std::string("wants seconds, ") + (zero_means_off ? "0" : "more than 0") + " to " +
                   shown(kMaxTimeoutSeconds) + ", not '" + text + "'";
          },
          "SECONDS"));
}

uint32_t whole_seconds(double seconds) { return static_cast<uint32_t>(std::ceil(seconds)); }

void add_model_source(CLI::App* cmd, ModelSource& source, bool with_store) {
  cmd->add_option("-m,--model", source.model,
                  std::string("GGUF model file, http(s):// URL or hf:ORG/REPO/FILE.gguf[@REV]") +
                      (with_store ? " (a model CID with --store)" : ""))
      ->required();
  add_model_sha256(cmd, source.sha256);
  if (with_store)
    cmd->add_option("--store", source.store_dir,
                    "Load the model CID from the shards in this store; a URL's model is kept here (default ~/.omni/store)");
}

Result<std::unique_ptr<model::Model>> load_model(const ModelSource& source) {
  struct stat file_info;
  if (source.store_dir.empty() || ::stat(source.model.c_str(), &file_info) == 0) return model::Model::load(source.model);
  auto cid = store::Cid::parse(source.model);
  if (!cid) return cid.error().with_context("--model");
  auto st = store::BlobStore::open(source.store_dir);
  if (!st) return st.error();
  return store::load_model(**st, *cid);
}

CLI::Option* add_model_sha256(CLI::App* cmd, std::string& hex) {
  return cmd->add_option("--model-sha256", hex, "With a model URL: the SHA-256 its file must have (64 hex digits)")
      ->check(from_parser([](const std::string& text) { return store::parse_sha256_hex(text); }, "HEX"));
}

std::string store_dir_or_default(const std::string& store_dir, const std::string& data_dir) {
  return store_dir.empty() ? data_dir_or_default(data_dir) + "/store" : store_dir;
}

Result<void> resolve_model(std::string& model, const std::string& sha256, const std::string& store_dir,
                           const std::string& command) {
  store::ModelFetchOptions fetch;
  fetch.store_dir = store_dir.empty() ? store_dir_or_default("", "") : store_dir;
  if (!sha256.empty()) {
    auto pinned = store::parse_sha256_hex(sha256);
    if (!pinned) return pinned.error().with_context("--model-sha256");
    fetch.sha256 = *pinned;
  }
  fetch.log = [command](const std::string& line) { std::fprintf(stderr, "omni %s: %s\n", command.c_str(), line.c_str()); };
  auto bar = std::make_shared<ProgressBar>();
  fetch.progress = [bar](const store::FetchProgress& p, bool done) { bar->update(p, done); };
  auto resolved = store::resolve_model_source(model, fetch);
  if (!resolved) return resolved.error().with_context(model);
  model = resolved->model;
  return {};
}

CLI::Validator count_in(long long min, long long max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        long long n = 0;
        if (parse_whole(text, n) && n >= min && n <= max) return "";
        if (max == kNoMax && is_large_unsigned(text)) return "";
        const std::string range = max == kNoMax ? ">= " + std::to_string(min)
                                                : "from " + std::to_string(min) + " to " + std::to_string(max);
        return "wants a whole number " + range + ", not '" + text + "'";
      },
      "");
}

CLI::Validator byte_amount() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto n = parse_byte_amount(text);
        if (!n) return n.error().message;
        text = std::to_string(*n);
        return "";
      },
      "BYTES");
}

CLI::Validator number_in(double min, double max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        double v = 0;
        if (parse_number(text, v) && v >= min && v <= max) return "";
        const std::string range = std::isinf(max) ? ">= " + shown(min) : "from " + shown(min) + " to " + shown(max);
        return "wants a number " + range + ", not '" + text + "'";
      },
      "");
}

CLI::Validator number_above(double min) {
  return CLI::Validator(
      [min](std::string& text) -> std::string {
        double v = 0;
        if (parse_number(text, v) && v > min) return "";
        return "wants a number > " + shown(min) + ", not '" + text + "'";
      },
      "");
}

CLI::Validator block_range(bool allow_empty) {
  return from_parser([allow_empty](const std::string& text) { return parse_block_range(text, allow_empty); }, "A:B");
}

CLI::Validator route_name() {
  return from_parser([](const std::string& text) { return net::parse_topology(text); }, "ring|chain|direct");
}

CLI::Validator hidden_format_name() {
  return from_parser([](const std::string& text) { return net::parse_hidden_encoding(text); }, "f16|f32|q8");
}

CLI::Validator mix_name(const std::string& verb) {
  return CLI::Validator(
      [verb](std::string& text) -> std::string {
        if (model::mix_from_name(text)) return "";
        if (gguf::tensor_type_from_name(text))
          return "cannot " + verb + " tensor type " + text + " (supported: " + model::mix_names_text() + ")";
        return "unknown tensor type '" + text + "' (known: " + model::mix_names_text() + ")";
      },
      "");
}

}  // namespace omni::cli
