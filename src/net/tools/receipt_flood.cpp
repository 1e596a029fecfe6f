// receipt_flood: a hostile payer of a node, for tests/security/node_receipts_test.py. From one
// address it opens IDENTITIES connections, each with a fresh anonymous identity, and on each sends
// full batches of work receipts (kMaxReceiptsPerCall) back to back for SECONDS (identity i starting
// with kind i mod 3, all first batches sent at once): in turn valid ones
// signed by that identity (a Sybil paying the node with receipts nobody can tell from real ones),
// forged ones (the count raised after signing) and stale ones (issued two days ago).
//
//   receipt_flood ID@HOST:PORT SECONDS [IDENTITIES]
//
// Prints one JSON line: {"calls", "accepted", "duplicates", "refused": {code: count}, "refusals":
// {code: first message}}.
#include <kj/async-io.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "net/errors.h"
#include "net/identity.h"
#include "net/node_connection.h"
#include "net/peer_address.h"
#include "net/tls.h"
#include "net/work_receipt.h"

namespace omni::net {
namespace {

struct Payer {
  std::unique_ptr<Identity> identity;
  std::shared_ptr<TlsContext> tls;
  kj::Own<NodeConnection> connection;
  uint64_t sequence = 0;
  int index = 0;  // the payers start at different kinds of batch
  int round = 0;
};

struct Flood {
  explicit Flood(kj::AsyncIoContext& context) : io(context) {}
  kj::AsyncIoContext& io;
  uint64_t calls = 0, accepted = 0, duplicates = 0;
  std::map<std::string, int> refused;
  std::map<std::string, std::string> refusals;

  std::vector<WorkReceipt> batch(Payer& p) {
    const auto& info = p.connection->info();
    const uint64_t now = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
    const int kind = (p.index + p.round++) % 3;
    std::vector<WorkReceipt> out;
    for (size_t i = 0; i < kMaxReceiptsPerCall; ++i) {
      WorkReceipt r;
      r.node_id = info.peer_id;
      r.session.fill(0x33);
      r.sequence = ++p.sequence;
      r.tokens = 1000;
      r.block_begin = info.block_begin;
      r.block_end = info.block_end;
      r.model_id = receipt_model_id(info.model);
      r.issued_at = kind == 2 ? now - 2 * 86400 : now;
      (void)sign_receipt(r, *p.identity);
      if (kind == 1) r.tokens = 1000000;
      out.push_back(std::move(r));
    }
    return out;
  }

  kj::Promise<void> pay(Payer& p, kj::TimePoint until) {
    if (io.provider->getTimer().now() >= until) return kj::READY_NOW;
    auto receipts = batch(p);
    auto req = p.connection->node().payReceiptsRequest();
    auto list = req.initReceipts(static_cast<unsigned>(receipts.size()));
    for (unsigned i = 0; i < receipts.size(); ++i) write_receipt(receipts[i], list[i]);
    ++calls;
    return req.send().then(
        [this, &p, until](auto response) {
          accepted += response.getAccepted();
          duplicates += response.getDuplicates();
          return pay(p, until);
        },
        [this, &p, until](kj::Exception&& e) {
          const Error err = to_error(e);
          refused[to_string(err.code)]++;
          refusals.emplace(to_string(err.code), err.message);
          if (err.code == ErrorCode::Unavailable) return kj::Promise<void>(kj::READY_NOW);
          return pay(p, until);
        });
  }
};

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return out + "\"";
}

int run(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: receipt_flood ID@HOST:PORT SECONDS [IDENTITIES]\n");
    return 2;
  }
  auto node = parse_peer_address(argv[1]);
  if (!node || node->relayed) {
    std::fprintf(stderr, "receipt_flood: '%s' is not ID@HOST:PORT\n", argv[1]);
    return 2;
  }
  const double seconds = std::atof(argv[2]);
  const int identities = argc > 3 ? std::atoi(argv[3]) : 20;
  auto io = kj::setupAsyncIo();
  Flood f(io);
  std::vector<std::unique_ptr<Payer>> payers;
  for (int i = 0; i < identities; ++i) {
    auto p = std::make_unique<Payer>();
    p->index = i;
    p->identity = std::make_unique<Identity>(*Identity::generate());  // free to make
    p->tls = *TlsContext::create(*p->identity);
    p->connection = NodeConnection::connect(*io.provider, *p->tls, *node, {}, 10 * kj::SECONDS).wait(io.waitScope);
    payers.push_back(std::move(p));
  }
  const auto until = io.provider->getTimer().now() + static_cast<int64_t>(seconds * 1000) * kj::MILLISECONDS;
  kj::Vector<kj::Promise<void>> work;
  for (auto& p : payers) work.add(f.pay(*p, until));
  kj::joinPromises(work.releaseAsArray()).wait(io.waitScope);
  std::string refused, refusals;
  for (const auto& [code, n] : f.refused) refused += (refused.empty() ? "" : ", ") + quoted(code) + ": " + std::to_string(n);
  for (const auto& [code, m] : f.refusals) refusals += (refusals.empty() ? "" : ", ") + quoted(code) + ": " + quoted(m);
  std::printf("{\"calls\": %llu, \"accepted\": %llu, \"duplicates\": %llu, \"refused\": {%s}, \"refusals\": {%s}}\n",
              static_cast<unsigned long long>(f.calls), static_cast<unsigned long long>(f.accepted),
              static_cast<unsigned long long>(f.duplicates), refused.c_str(), refusals.c_str());
  return 0;
}

}  // namespace
}  // namespace omni::net

int main(int argc, char** argv) { return omni::net::run(argc, argv); }
