// WorkReceipt: a client's signed statement that a node computed work for it, the unit of credits.
//
// Work is tokens × blocks: `tokens` positions pushed through the node's blocks
// [block_begin, block_end) in one session. The client (the signer, `client_key`) signs the
// receipt with its Ed25519 identity key (identity.h) and sends it to the node it pays (`node_id`),
// which verifies it and keeps it in its CreditLedger (credit_ledger.h).
//
// Uniqueness: (client_key, session, sequence) names one receipt. `session` is 16 random bytes the
// client draws per pipeline session and `sequence` counts that session's receipts from 1, so two
// receipts never share the key and a replayed one is a duplicate the ledger refuses. `issued_at`
// (Unix seconds) lets a node refuse receipts too old or from the future (a window, see
// check_receipt), so it need not keep keys forever to refuse replays.
//
// Signed bytes (docs/protocol.md, "Work receipts"): "omni-work-receipt-v1" and a 0 byte, then
// client_key (32), the node id's length (1) and bytes, session (16), sequence (u64), tokens (u32),
// block_begin (u32), block_end (u32), the model id's length (1) and bytes, issued_at (u64); integers
// little-endian. A receipt says nothing the signer could not lie about: it proves who paid, not
// that the work was done (docs/design.md, "Credits").
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/identity.h"
#include "net/node_info.h"
#include "proto/node.capnp.h"

namespace omni::net {

struct WorkReceipt {
  std::array<uint8_t, 32> client_key{};  // the signer's Ed25519 public key
  std::string node_id;                    // the peer id of the node paid
  std::array<uint8_t, 16> session{};      // the client's random session id
  uint64_t sequence = 0;                  // 1, 2, ... within the session
  uint32_t tokens = 0;                    // positions computed since the session's previous receipt
  uint32_t block_begin = 0, block_end = 0;
  std::string model_id;                   // the model's identity bytes: its manifest CID's digest
  uint64_t issued_at = 0;                 // Unix seconds
  std::array<uint8_t, 64> signature{};

  // tokens × blocks: the credits this receipt is worth.
  uint64_t work() const { return uint64_t{tokens} * (block_end - block_begin); }
  std::string client_id() const;  // the signer's peer id
};

// Bounds on a receipt's fields that any receiver applies before anything else.
inline constexpr size_t kMaxReceiptModelIdBytes = 64;
inline constexpr uint32_t kMaxReceiptTokens = 1u << 20;
inline constexpr size_t kMaxReceiptsPerCall = 64;

// The model id receipts carry for a node serving `model`: the bytes that name the model in
// NodeInfo (today the header sha256), so that client and node derive it alike.
std::string receipt_model_id(const ModelIdentity& model);

// The bytes the signature covers.
std::vector<uint8_t> receipt_signed_bytes(const WorkReceipt& receipt);

// Fills in client_key and signature with `signer`'s key. Errors: Internal (OpenSSL failed).
Result<void> sign_receipt(WorkReceipt& receipt, const Identity& signer);

// What a node accepts: the signature verifies under client_key (else PermissionDenied); the
// receipt is for `node_id`, `model_id` and within the blocks [node_begin, node_end) (else
// InvalidArgument); tokens in 1..kMaxReceiptTokens, sequence >= 1 and issued_at within
// [now - max_age_s, now + max_skew_s] (else InvalidArgument).
struct ReceiptExpectations {
  std::string node_id;
  std::string model_id;
  uint32_t node_begin = 0, node_end = 0;
  uint64_t now = 0;
  uint64_t max_age_s = 24 * 3600;
  uint64_t max_skew_s = 300;
};
Result<void> check_receipt(const WorkReceipt& receipt, const ReceiptExpectations& expect);

// Wire form (proto/node.capnp WorkReceipt). read_receipt refuses wrong field sizes (InvalidArgument).
void write_receipt(const WorkReceipt& receipt, proto::WorkReceipt::Builder out);
Result<WorkReceipt> read_receipt(proto::WorkReceipt::Reader in);

}  // namespace omni::net
