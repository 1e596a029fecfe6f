#include "net/peer_fetch.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <vector>

#include "net/blob_peer.h"
#include "net/identity.h"
#include "net/peer_address.h"
#include "net/tls.h"

namespace omni::net {

Result<store::Manifest> fetch_from_peers(store::BlobStore& store, const store::Cid& model,
                                         const store::ShardRange& range, const PeerFetchOptions& o) {
  auto log = [&](const std::string& line) {
    if (o.log) o.log(line);
  };
  auto addresses = parse_peer_list(o.peers);
  if (!addresses) return Error{ErrorCode::InvalidArgument, addresses.error().message};
  auto identity = o.data_dir.empty() ? Identity::generate() : Identity::load_or_create(o.data_dir);
  if (!identity) return identity.error();
  auto tls = TlsContext::create(*identity);
  if (!tls) return tls.error();
  std::vector<std::shared_ptr<store::ChunkSource>> peers;
  for (const auto& address : *addresses) {
    std::string seen;
    auto p = connect_blob_peer(address, *tls, o.timeout_s, &seen, o.bandwidth);
    if (!p) {
      log("skipping peer " + p.error().message);
      continue;
    }
    if (address.peer_id.empty())
      log("peer " + address.host_port() + " presented id " + seen + " (pin it with " + seen + "@" +
          address.host_port() + ")");
    peers.push_back(std::move(*p));
  }
  if (peers.empty()) return Error{ErrorCode::Unavailable, "no reachable peer in --peers '" + o.peers + "'"};
  store::FetchProgress last;
  store::Fetcher fetcher(store, peers,
                         {.window = o.window,
                          .request_timeout_ms = o.timeout_s * 1000,
                          .progress = [&](const store::FetchProgress& p) {
                            last = p;
                            if (o.progress) o.progress(p, false);
                          }});
  const auto t0 = std::chrono::steady_clock::now();
  auto manifest = fetcher.fetch_model(model, range);
  if (o.progress) o.progress(last, true);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const store::FetchStats& s = fetcher.stats();
  for (const auto& d : s.dropped) log("dropped peer " + d);
  char summary[320];
  std::snprintf(summary, sizeof summary,
                "fetched %" PRIu64 " chunks (%.1f MiB) in %.2f s, %.1f MiB/s; %" PRIu64 " chunks resumed, %" PRIu64
                " requests, %" PRIu64 " bad chunks",
                s.chunks_fetched, static_cast<double>(s.bytes_fetched) / (1 << 20), secs,
                secs > 0 ? static_cast<double>(s.bytes_fetched) / secs / (1 << 20) : 0.0, s.chunks_resumed, s.requests,
                s.bad_chunks);
  log(summary);
  return manifest;
}

ModelIdentity identify_sharded_model(const model::Model& model, const store::Manifest& manifest) {
  ModelIdentity id = describe_model(model, manifest.cid());
  if (manifest.model.source_size != 0) id.file_size = manifest.model.source_size;
  if (manifest.model.n_vocab != 0) id.n_vocab = manifest.model.n_vocab;
  return id;
}

}  // namespace omni::net
