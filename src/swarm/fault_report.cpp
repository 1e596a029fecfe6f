#include "swarm/fault_report.h"

#include <nlohmann/json.hpp>

#include "base/parse.h"
#include "net/node_info.h"

namespace omni::swarm {
namespace {

using nlohmann::json;

template <class Bytes>
std::string hex(const Bytes& bytes) {
  return hex_encode(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

store::Digest digest_of(const std::string& bytes) {
  store::Digest d{};
  std::copy_n(bytes.begin(), std::min(bytes.size(), d.size()), d.begin());
  return d;
}

json attestation_json(const net::ForwardAttestation& a) {
  return {{"model_cid", store::Cid::from_digest(digest_of(a.model_cid_digest)).to_string()},
          {"model_file_size", a.model_file_size},
          {"block_begin", a.block_begin},
          {"block_end", a.block_end},
          {"session_nonce", hex(a.session_nonce)},
          {"position", a.position},
          {"n_tokens", a.n_tokens},
          {"output_rows", a.output_rows},
          {"input_sha256", hex(a.input_sha256)},
          {"output_sha256", hex(a.output_sha256)},
          {"per_token_sums", a.per_token_sums},
          {"public_key", hex(a.public_key)},
          {"signature", hex(a.signature)}};
}

Error malformed(const std::string& what) { return Error{ErrorCode::InvalidArgument, "fault report: " + what}; }

template <size_t N>
Result<void> fixed(const json& j, const char* key, std::array<uint8_t, N>& out) {
  auto bytes = hex_decode(j.at(key).get<std::string>());
  if (!bytes || bytes->size() != N) return malformed(std::string(key) + " is not " + std::to_string(N) + " hex bytes");
  std::copy(bytes->begin(), bytes->end(), out.begin());
  return {};
}

Result<net::ForwardAttestation> attestation_from(const json& j) {
  net::ForwardAttestation a;
  auto model = store::Cid::parse(j.at("model_cid").get<std::string>());
  if (!model) return malformed("model_cid: " + model.error().message);
  a.model_cid_digest.assign(model->digest.begin(), model->digest.end());
  a.model_file_size = j.at("model_file_size").get<uint64_t>();
  a.block_begin = j.at("block_begin").get<uint32_t>();
  a.block_end = j.at("block_end").get<uint32_t>();
  a.position = j.at("position").get<uint64_t>();
  a.n_tokens = j.at("n_tokens").get<uint32_t>();
  a.output_rows = j.at("output_rows").get<uint32_t>();
  a.per_token_sums = j.value("per_token_sums", false);  // absent in reports older than the flag
  for (auto r : {fixed(j, "session_nonce", a.session_nonce), fixed(j, "input_sha256", a.input_sha256),
                 fixed(j, "output_sha256", a.output_sha256), fixed(j, "public_key", a.public_key),
                 fixed(j, "signature", a.signature)})
    if (!r) return r.error();
  return a;
}

bool same_call(const net::ForwardAttestation& a, const net::ForwardAttestation& b) {
  return a.model_cid_digest == b.model_cid_digest && a.model_file_size == b.model_file_size &&
         a.block_begin == b.block_begin && a.block_end == b.block_end && a.position == b.position &&
         a.n_tokens == b.n_tokens && a.output_rows == b.output_rows && a.input_sha256 == b.input_sha256 &&
         a.per_token_sums == b.per_token_sums;
}

}  // namespace

std::string to_json(const FaultReport& report) {
  json calls = json::array();
  for (const auto& c : report.calls) {
    json call{{"output_last", c.output_last}, {"accused", attestation_json(c.accused)}};
    if (!c.tokens.empty()) call["tokens"] = c.tokens;
    else call["hidden"] = hex(c.hidden);
    calls.push_back(std::move(call));
  }
  return json{{"kind", "omninode.fault-report"},
              {"version", 1},
              {"encoding", net::hidden_encoding_name(report.encoding)},
              {"calls", std::move(calls)},
              {"witness", attestation_json(report.witness)}}
      .dump();
}

Result<FaultReport> parse_fault_report(const std::string& text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return malformed("not a JSON object");
  try {
    if (j.at("kind") != "omninode.fault-report" || j.at("version") != 1) return malformed("not a version 1 report");
    FaultReport report;
    auto encoding = net::parse_hidden_encoding(j.at("encoding").get<std::string>());
    if (!encoding) return malformed(encoding.error().message);
    report.encoding = *encoding;
    const auto& calls = j.at("calls");
    if (!calls.is_array() || calls.empty() || calls.size() > kMaxFaultCalls)
      return malformed("calls must hold 1.." + std::to_string(kMaxFaultCalls) + " calls");
    size_t rows = 0;
    for (const auto& c : calls) {
      FaultCall call;
      call.output_last = c.at("output_last").get<uint32_t>();
      if (c.contains("tokens")) {
        call.tokens = c.at("tokens").get<std::vector<int32_t>>();
      } else {
        auto hidden = hex_decode(c.at("hidden").get<std::string>());
        if (!hidden) return malformed("a call's hidden rows are not hex");
        call.hidden = std::move(*hidden);
      }
      auto a = attestation_from(c.at("accused"));
      if (!a) return a.error();
      call.accused = *a;
      rows += call.accused.n_tokens;
      if (rows > kMaxFaultRows) return malformed("more than " + std::to_string(kMaxFaultRows) + " rows");
      report.calls.push_back(std::move(call));
    }
    auto witness = attestation_from(j.at("witness"));
    if (!witness) return witness.error();
    report.witness = *witness;
    return report;
  } catch (const json::exception& e) {
    return malformed(std::string("a field is missing or of the wrong type (") + e.what() + ")");
  }
}

Result<FaultVerdict> verify_fault_report(const FaultReport& report, const model::Model& model,
                                         const net::ModelIdentity& identity, kernels::ThreadPool& pool) {
  if (report.calls.empty() || report.calls.size() > kMaxFaultCalls) return malformed("no calls, or too many");
  const auto& first = report.calls.front().accused;
  if (first.model_cid_digest != net::attestation_model_digest(identity) || first.model_file_size != identity.file_size)
    return Error{ErrorCode::InvalidArgument, "fault report: it is about another model than " + identity.to_string()};
  const uint32_t n_embd = model.config().n_embd;
  uint64_t position = 0;
  for (size_t i = 0; i < report.calls.size(); ++i) {
    const auto& c = report.calls[i];
    const auto& a = c.accused;
    if (auto v = net::verify_attestation(a); !v) return v.error();
    if (a.session_nonce != first.session_nonce || a.block_begin != first.block_begin ||
        a.block_end != first.block_end || a.model_cid_digest != first.model_cid_digest ||
        a.model_file_size != first.model_file_size || a.public_key != first.public_key)
      return malformed("call " + std::to_string(i) + " is not of the same session as the first");
    if (a.position != position) return malformed("call " + std::to_string(i) + " is not at the next position");
    const auto digest = c.tokens.empty() ? net::hidden_digest(report.encoding, c.hidden) : net::tokens_digest(c.tokens);
    const uint32_t rows = c.tokens.empty() ? static_cast<uint32_t>(c.hidden.size() / std::max<uint64_t>(1, net::encoded_hidden_bytes(report.encoding, 1, n_embd)))
                                           : static_cast<uint32_t>(c.tokens.size());
    if (digest != a.input_sha256 || rows != a.n_tokens || c.output_last != a.output_rows || rows == 0 ||
        c.output_last == 0 || c.output_last > rows)
      return malformed("call " + std::to_string(i) + "'s input is not the one its attestation signs");
    position += rows;
  }
  const auto& last = report.calls.back().accused;
  if (auto v = net::verify_attestation(report.witness); !v) return v.error();
  if (!same_call(last, report.witness) || report.witness.output_sha256 == last.output_sha256 ||
      report.witness.public_key == last.public_key)
    return malformed("the witness does not answer the last call with another output from another node");

  if (first.block_end > model.config().n_layer || first.block_begin >= first.block_end)
    return malformed("its block range is not the model's");
  auto session = model::Session::create(model, first.block_begin, first.block_end, static_cast<uint32_t>(position));
  if (!session) return session.error();
  FaultVerdict verdict;
  verdict.accused = last.peer_id();
  for (size_t i = 0; i < report.calls.size(); ++i) {
    const auto& c = report.calls[i];
    std::vector<float> hidden;
    if (!c.tokens.empty() && first.block_begin != 0) return malformed("token ids for a range after block 0");
    if (c.tokens.empty()) {
      if (auto d = net::decode_hidden(c.hidden, c.accused.n_tokens, n_embd, report.encoding, hidden); !d)
        return malformed("call " + std::to_string(i) + ": " + d.error().message);
    }
    // As the node computes it (net/node_server.cpp): one row asked back is the last row alone, and
    // the rows are summed as the call asked (the flag is signed).
    const auto output = c.output_last == 1 ? model::Output::LastHidden : model::Output::Hidden;
    const auto sums = c.accused.per_token_sums ? model::BatchSums::kPerToken : model::BatchSums::kAsGgml;
    std::vector<float> out;
    if (auto f = (*session)->forward(c.tokens, hidden, output, out, pool, sums); !f) return f.error();
    std::vector<uint8_t> bytes;
    const size_t skip = out.size() - size_t{c.output_last} * n_embd;
    if (auto e = net::encode_hidden(std::span<const float>(out).subspan(skip), n_embd, report.encoding, bytes); !e)
      return e.error();
    if (net::hidden_digest(report.encoding, bytes) != c.accused.output_sha256) {
      verdict.faulty = true;
      verdict.call = i;
      verdict.summary = "node " + verdict.accused + " signed a wrong output for blocks [" +
                        std::to_string(first.block_begin) + ", " + std::to_string(first.block_end) + ") at position " +
                        std::to_string(c.accused.position) + " (call " + std::to_string(i) + " of " +
                        std::to_string(report.calls.size()) + ")";
      return verdict;
    }
  }
  verdict.summary = "every output node " + verdict.accused + " signed is what the model computes: the report does not hold";
  return verdict;
}

}  // namespace omni::swarm
