// omni up: a whole swarm on this machine in one command. It starts `omni` subprocesses (this same
// binary): a bootstrap DHT node, three nodes serving the model's blocks by its CID (the first from
// the store the model is sharded into, the others fetching their shards from it), and a gateway serving the chat page and the swarm dashboard; prints their
// URLs; and on SIGINT/SIGTERM stops every child (SIGTERM, then SIGKILL after a grace period).
// Children also get SIGTERM from the kernel if `omni up` itself dies (PR_SET_PDEATHSIG), so none
// is left behind. If a child exits on its own, the others are stopped and `omni up` fails.
//
// The model: --model FILE (sharded into the store), --model CID (already in the store), or by
// default a small synthesized model (the gemma-tiny shape, seed 1: the same bytes, hence the same
// CID, on every machine), made once and kept in the data directory.
// --join HOST:PORT joins an existing swarm instead: one node (choosing its own blocks) and a
// gateway that serves what the swarm covers.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <deque>
#include <optional>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "base/parse.h"
#include "cli_options.h"
#include "commands.h"
#include "model/synth.h"
#include "store/blob_store.h"
#include "store/shard.h"

namespace omni::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct UpOptions {
  std::string model;  // file or CID; empty: the default model
  std::string join;   // HOST:PORT of a swarm's DHT node
  std::string listen = "127.0.0.1:8080";
  std::string data_dir;  // default <omni data dir>/up
  uint32_t nodes = 3;
  int threads = 1;  // per node and for the gateway
};

constexpr const char* kDefaultShape = "gemma-tiny";
constexpr const char* kDefaultName = "omni-default";

struct Child {
  std::string name;
  pid_t pid = -1;
  std::string log;
};

// The children, stopped together.
class Children {
 public:
  ~Children() { stop(); }

  Result<Child*> spawn(const std::string& name, std::vector<std::string> args, const std::string& log_path) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>("omni"));
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) return Error{ErrorCode::Internal, "cannot create " + log_path};
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log_fd);
      return Error{ErrorCode::Internal, "fork failed"};
    }
    if (pid == 0) {
      // The child: dies with its parent, gets the default signal handling back, logs to its file.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
      ::execv("/proc/self/exe", argv.data());
      ::_exit(127);
    }
    ::close(log_fd);
    children_.push_back({name, pid, log_path});
    return &children_.back();
  }

  // A child that exited (reaped), if any.
  std::optional<std::pair<std::string, int>> exited() {
    for (auto& c : children_) {
      if (c.pid <= 0) continue;
      int status = 0;
      if (::waitpid(c.pid, &status, WNOHANG) == c.pid) {
        c.pid = -1;
        return std::make_pair(c.name, status);
      }
    }
    return std::nullopt;
  }

  // SIGTERM to every child (the gateway first), SIGKILL to those alive after 10 s; reaps them all.
  void stop() {
    for (auto it = children_.rbegin(); it != children_.rend(); ++it)
      if (it->pid > 0) ::kill(it->pid, SIGTERM);
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    for (auto& c : children_) {
      while (c.pid > 0) {
        int status = 0;
        if (::waitpid(c.pid, &status, WNOHANG) == c.pid) {
          c.pid = -1;
        } else if (Clock::now() > deadline) {
          ::kill(c.pid, SIGKILL);
          ::waitpid(c.pid, &status, 0);
          c.pid = -1;
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    }
  }

 private:
  std::deque<Child> children_;  // stable addresses
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Waits for `pattern` in the child's log (its first group), while watching for SIGINT/SIGTERM
// (`stop_signals`, blocked) and for the child's exit. Errors: Cancelled on a signal, Unavailable
// when the child exits or `timeout_s` passes.
Result<std::string> wait_for_line(Children& children, const Child& child, const std::regex& pattern,
                                  const sigset_t& stop_signals, int timeout_s) {
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  const timespec tick{0, 50 * 1000 * 1000};
  while (Clock::now() < deadline) {
    std::smatch m;
    const std::string text = read_file(child.log);
    if (std::regex_search(text, m, pattern)) return m[1].str();
    if (::sigtimedwait(&stop_signals, nullptr, &tick) > 0) return Error{ErrorCode::Cancelled, "interrupted"};
    if (auto gone = children.exited())
      return Error{ErrorCode::Unavailable, gone->first + " exited while starting; its log " + child.log + ":\n" +
                                               read_file(child.log)};
  }
  return Error{ErrorCode::Unavailable,
               child.name + " did not start within " + std::to_string(timeout_s) + " s; its log " + child.log};
}

struct UpModel {
  std::string source;  // what nodes get as -m: a CID, or (joining) a file
  std::string cid;     // empty for a file that was not sharded
  uint32_t n_layer = 0;
};

// The default model, synthesized once into the data directory.
Result<std::string> default_model(const std::string& dir) {
  const std::string path = dir + "/" + kDefaultName + ".gguf";
  if (std::filesystem::exists(path)) return path;
  std::fprintf(stderr, "omni up: synthesizing the default model (%s shape, q8_0) into %s\n", kDefaultShape, path.c_str());
  model::SynthOptions o;
  o.shape = kDefaultShape;
  o.mix = model::Mix::Q8_0;
  o.seed = 1;
  o.out_path = path;
  auto made = model::synthesize(o);
  if (!made) return made.error().with_context("synthesizing the default model");
  return path;
}

// Shards a model file into the store (again only what is new), or finds a CID's manifest there.
Result<UpModel> prepare_model(const UpOptions& o, const std::string& dir, const std::string& store_dir) {
  std::string path = o.model;
  if (path.empty()) {
    auto made = default_model(dir);
    if (!made) return made.error();
    path = *made;
  }
  std::error_code ec;
  std::filesystem::create_directories(store_dir, ec);
  if (ec) return Error{ErrorCode::Internal, "cannot create " + store_dir + ": " + ec.message()};
  auto store = store::BlobStore::open(store_dir);
  if (!store) return store.error();
  UpModel out;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    auto sharded = store::shard_model(path, **store);
    if (!sharded) return sharded.error().with_context("sharding " + path);
    out.cid = sharded->model.to_string();
    out.n_layer = sharded->manifest.model.n_layer;
    out.source = o.join.empty() ? out.cid : path;
    return out;
  }
  auto cid = store::Cid::parse(path);
  if (!cid) return Error{ErrorCode::NotFound, "--model " + path + " is neither a file nor a model CID"};
  auto manifest = store::load_manifest(**store, *cid);
  if (!manifest)
    return Error{ErrorCode::NotFound, "the model " + path + " is not in " + store_dir +
                                          " (omni up serves a CID from its own store: give the model's file once)"};
  out.cid = path;
  out.source = path;
  out.n_layer = manifest->model.n_layer;
  return out;
}

int up(const UpOptions& o) {
  auto failed = [](const Error& e) { return cli::fail("up", e); };
  // SIGINT/SIGTERM are waited for (sigtimedwait), not handled: blocked here, unblocked in children.
  // A shell starts background jobs with SIGINT ignored, and an ignored signal is never delivered.
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &stop_signals, nullptr);

  const std::string dir = o.data_dir.empty() ? data_dir_or_default("") + "/up" : o.data_dir;
  const std::string logs = dir + "/logs", store_dir = dir + "/store";
  std::error_code ec;
  std::filesystem::create_directories(logs, ec);
  if (ec) return failed(Error{ErrorCode::Internal, "cannot create " + logs + ": " + ec.message()});
  auto model = prepare_model(o, dir, store_dir);
  if (!model) return failed(model.error());
  const std::string threads = std::to_string(o.threads);

  Children children;
  auto start = [&](const std::string& name, std::vector<std::string> args, const std::regex& ready,
                   int timeout_s) -> Result<std::string> {
    auto child = children.spawn(name, std::move(args), logs + "/" + name + ".log");
    if (!child) return child.error();
    return wait_for_line(children, **child, ready, stop_signals, timeout_s);
  };
  auto stopped = [&](const Error& e) {
    children.stop();
    if (e.code == ErrorCode::Cancelled) {
      std::fprintf(stderr, "omni up: stopped\n");
      return kExitOk;
    }
    return failed(e);
  };

  std::string bootstrap = o.join;
  if (bootstrap.empty()) {
    auto boot = start("bootstrap", {"node", "--bootstrap-only", "--listen", "127.0.0.1:0"},
                      std::regex("bootstrap DHT node listening on udp (\\S+)"), 30);
    if (!boot) return stopped(boot.error());
    bootstrap = *boot;
  }
  const std::regex node_ready("omni node: peer \\S+ listening on (\\S+),");
  const std::vector<std::string> swarm_flags = {"--bootstrap", bootstrap, "--listen", "127.0.0.1:0", "-t", threads,
                                                "--max-kv-mib", "256"};
  const uint32_t n_nodes = o.join.empty() ? std::max<uint32_t>(1, std::min(o.nodes, model->n_layer)) : 1;
  for (uint32_t i = 0; i < n_nodes; ++i) {
    const std::string name = "node" + std::to_string(i + 1);
    std::vector<std::string> args = {"node", "-m", model->source, "--data-dir", dir + "/" + name};
    if (o.join.empty()) {
      // Contiguous ranges covering every block. The first node serves from the store the model was
      // sharded into; the others (a store is one process's) fetch their shards from it through the
      // provider records, into stores of their own, once.
      const uint32_t begin = model->n_layer * i / n_nodes, end = model->n_layer * (i + 1) / n_nodes;
      if (i == 0) args.insert(args.end(), {"--store", store_dir});
      args.insert(args.end(), {"--blocks", std::to_string(begin) + ":" + std::to_string(end)});
    }
    args.insert(args.end(), swarm_flags.begin(), swarm_flags.end());
    auto node = start(name, args, node_ready, 120);
    if (!node) return stopped(node.error());
    std::fprintf(stderr, "omni up: %s serves %s at %s\n", name.c_str(), model->cid.c_str(), node->c_str());
  }

  std::vector<std::string> gateway = {"gateway", "--bootstrap", bootstrap, "--listen", o.listen,
                                      "--data-dir", dir + "/gateway", "-t", threads};
  if (o.join.empty() || !o.model.empty()) gateway.insert(gateway.end(), {"--model", model->cid});
  if (o.join.empty() && o.model.empty()) gateway.insert(gateway.end(), {"--model-name", kDefaultName});
  auto port = start("gateway", gateway, std::regex("listening on port (\\d+)"), 120);
  if (!port) return stopped(port.error());
  auto host = parse_host_port(o.listen);
  const std::string shown_host = host && host->host != "0.0.0.0" ? host->host : "127.0.0.1";
  const std::string url = "http://" + shown_host + ":" + *port + "/";
  std::printf("omni up: chat      %s\nomni up: dashboard %s#/swarm\nomni up: API       %sv1 (OpenAI-compatible)\n"
              "omni up: logs in %s; Ctrl-C stops everything\n",
              url.c_str(), url.c_str(), url.c_str(), logs.c_str());
  std::fflush(stdout);

  const timespec tick{0, 200 * 1000 * 1000};
  for (;;) {
    if (::sigtimedwait(&stop_signals, nullptr, &tick) > 0) return stopped(Error{ErrorCode::Cancelled, "interrupted"});
    if (auto gone = children.exited()) {
      return stopped(Error{ErrorCode::Unavailable, gone->first + " exited unexpectedly (status " +
                                                       std::to_string(gone->second) + "); see " + logs});
    }
  }
}

}  // namespace

void register_up(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<UpOptions>();
  auto* cmd = app.add_subcommand(
      "up", "Start a swarm on this machine (bootstrap, 3 nodes, gateway with chat and dashboard); Ctrl-C stops it");
  cmd->add_option("-m,--model", o->model,
                  "GGUF model file, or a model CID in the data directory's store (default: a small synthesized model)");
  add_host_port(cmd, "--join", o->join, "Join the swarm of this DHT node (HOST:PORT) with one node and a gateway");
  add_host_port(cmd, "--listen", o->listen, "The gateway's HOST:PORT")->capture_default_str();
  add_data_dir(cmd, o->data_dir, "Directory of the default model, the store, the processes' keys and logs (default ~/.omni/up)");
  cmd->add_option("--nodes", o->nodes, "Nodes to start (without --join)")->capture_default_str()->check(count_in(1, 64));
  add_threads(cmd, o->threads)->capture_default_str();
  cmd->callback([o, &exit_code] { exit_code = up(*o); });
}

}  // namespace omni::cli
