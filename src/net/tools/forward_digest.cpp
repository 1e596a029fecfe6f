// forward_digest: runs one fixed sequence of calls on a node's blocks in a direct session and
// prints, per call, the digest of the rows the node returned and whether its signed attestation
// holds (tests/verified_compute_test.sh: two honest nodes at different kernel levels print the same
// lines; a liar's differ while its signature still verifies, so the lie is attributable).
//
//   forward_digest NODE A:B FORMAT TOKEN...
//     NODE: ID@HOST:PORT; A:B: the session's blocks (A = 0: it takes the token ids); FORMAT: f32,
//     f16 or q8. The first call sends every token but the last four; each of those goes alone.
//
// Output, one line per call: "call N position P rows R output SHA256HEX signed-by PEER_ID". Exit 1
// (with the reason) when a reply's attestation is missing, does not verify, names another signer,
// position or digest than the call's.
#include <kj/async-io.h>

#include <cstdio>
#include <string>
#include <vector>

#include "base/parse.h"
#include "net/errors.h"
#include "net/forward_attestation.h"
#include "net/identity.h"
#include "net/node_connection.h"
#include "net/peer_address.h"
#include "net/tls.h"

namespace omni::net {
namespace {

int fail(const std::string& why) {
  std::fprintf(stderr, "forward_digest: %s\n", why.c_str());
  return 1;
}

int run(int argc, char** argv) {
  if (argc < 8) return fail("usage: forward_digest NODE A:B FORMAT TOKEN... (at least 5 tokens)");
  auto address = parse_peer_address(argv[1]);
  if (!address) return fail(address.error().message);
  auto range = parse_block_range(argv[2]);
  if (!range) return fail(range.error().message);
  auto format = parse_hidden_encoding(argv[3]);
  if (!format) return fail(format.error().message);
  std::vector<int32_t> tokens;
  for (int i = 4; i < argc; ++i) tokens.push_back(std::atoi(argv[i]));
  auto io = kj::setupAsyncIo();
  auto identity = Identity::generate();
  if (!identity) return fail(identity.error().message);
  auto tls = TlsContext::create(*identity);
  if (!tls) return fail(tls.error().message);
  auto connection = NodeConnection::connect(*io.provider, **tls, *address,
                                            {std::string("hidden-") + hidden_encoding_name(*format)}, 10 * kj::SECONDS)
                        .wait(io.waitScope);
  const auto& model = connection->info().model;
  auto open = connection->node().openSessionRequest();
  auto p = open.initParams();
  p.setBlockBegin(range->begin);
  p.setBlockEnd(range->end);
  p.setMaxLength(static_cast<uint32_t>(tokens.size()));
  p.setHiddenFormat(static_cast<proto::HiddenFormat>(*format));
  auto session = open.send().wait(io.waitScope).getSession();
  std::vector<std::vector<int32_t>> calls{{tokens.begin(), tokens.end() - 4}};
  for (size_t i = tokens.size() - 4; i < tokens.size(); ++i) calls.push_back({tokens[i]});
  uint64_t position = 0;
  for (size_t c = 0; c < calls.size(); ++c) {
    auto req = session.forwardRequest();
    auto in = req.initInput();
    auto list = in.initInput().initTokens(static_cast<unsigned>(calls[c].size()));
    for (unsigned i = 0; i < calls[c].size(); ++i) list.set(i, calls[c][i]);
    in.setOutputLast(1);
    auto response = req.send().wait(io.waitScope);
    auto data = response.getOutput().getHidden().getData();
    const auto digest = hidden_digest(*format, std::vector<uint8_t>(data.begin(), data.end()));
    auto a = read_attestation(response.getOutput().getAttestation(), model, range->begin, range->end);
    if (!a) return fail(a.error().message);
    if (auto v = verify_attestation(*a); !v) return fail(v.error().message);
    if (a->peer_id() != connection->peer_id()) return fail("the attestation is signed by " + a->peer_id());
    if (a->position != position || a->input_sha256 != tokens_digest(calls[c]) || a->output_sha256 != digest)
      return fail("call " + std::to_string(c) + ": the attestation does not describe this call");
    std::printf("call %zu position %llu rows %u output %s signed-by %s\n", c, static_cast<unsigned long long>(position),
                a->output_rows, hex_encode(digest).c_str(), a->peer_id().c_str());
    position += calls[c].size();
  }
  return 0;
}

}  // namespace
}  // namespace omni::net

int main(int argc, char** argv) {
  int rc = 1;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { rc = omni::net::run(argc, argv); })) {
    return omni::net::fail(omni::net::to_error(*e).message);
  }
  return rc;
}
