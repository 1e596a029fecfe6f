// ForwardAttestation: a node's signed statement of one forward call it answered in direct mode
// (proto/node.capnp ForwardOutput.attestation): "for this model and block range, in my session
// `session_nonce`, the input hashing to `input_sha256` at positions [position, position + n_tokens)
// gave the output hashing to `output_sha256`". Signed with the node's Ed25519 identity key, so a
// wrong result is attributable: anyone holding the input (and the session's earlier inputs) and the
// model can re-run the call and show that the signed output is not what the blocks compute
// (docs/design.md, "Verified computation").
//
// The node signs, clients and fault-report checkers verify; read_attestation takes one off the wire.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/hidden_codec.h"
#include "net/identity.h"
#include "net/node_info.h"
#include "proto/node.capnp.h"

namespace omni::net {

using Sha256 = std::array<uint8_t, 32>;

struct ForwardAttestation {
  std::string model_cid_digest;  // the digest of ModelIdentity.cid, the manifest CID (32 bytes)
  uint64_t model_file_size = 0;  // ModelIdentity.fileSize
  uint32_t block_begin = 0, block_end = 0;  // the session's range
  std::array<uint8_t, 16> session_nonce{};  // drawn by the node when it opened the session
  uint64_t position = 0;            // of the call's first input row
  uint32_t n_tokens = 0;            // input rows
  uint32_t output_rows = 0;         // rows returned (the last ones)
  Sha256 input_sha256{};            // input_digest() of the call's input
  Sha256 output_sha256{};           // hidden_digest() of the returned rows
  bool per_token_sums = false;      // rows summed per token (ForwardInput.perTokenSums): a re-run must too
  std::array<uint8_t, 32> public_key{};  // the signer's key: its peer id is peer_id_from_public_key
  std::array<uint8_t, 64> signature{};

  // The exact bytes signed (a domain string, which per_token_sums selects, then every other field
  // above but the signature, fixed width).
  std::vector<uint8_t> signed_bytes() const;
  std::string peer_id() const;
};

// Digests of a call's input and output: token ids (as little-endian int32) or encoded hidden rows,
// each prefixed with a byte for its kind (0 tokens, 1 + HiddenEncoding for hidden states), so that
// the same bytes in two encodings never share a digest.
Sha256 tokens_digest(std::span<const int32_t> tokens);
Sha256 hidden_digest(HiddenEncoding encoding, std::span<const uint8_t> bytes);

// Fills public_key and signature. Errors: Internal when OpenSSL fails.
Result<void> sign_attestation(ForwardAttestation& attestation, const Identity& identity);

// Whether `signature` is the key's signature of signed_bytes(). Errors: PermissionDenied for a bad
// signature (or a key OpenSSL refuses), naming the signer's peer id.
Result<void> verify_attestation(const ForwardAttestation& attestation);

// The model fields of an attestation about `model`.
std::string attestation_model_digest(const ModelIdentity& model);

// The attestation of a reply from a session on `model` for [block_begin, block_end), signature not
// yet checked. Errors: InvalidArgument when it is unset or a field has the wrong size.
Result<ForwardAttestation> read_attestation(proto::ForwardAttestation::Reader reader, const ModelIdentity& model,
                                            uint32_t block_begin, uint32_t block_end);

}  // namespace omni::net
