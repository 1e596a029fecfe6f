// FaultReport: the evidence that a node returned a wrong result (docs/design.md, "Verified
// computation"). It holds one session of the accused node on one block range: every call of it in
// order (the input, how many rows it asked back, and the accused's signed attestation), and, for
// the last call, the signed attestation of the replica that outvoted it (another output for the
// same input at the same position). Anyone with the model can check it by re-running those calls
// (verify_fault_report): the report stands when the accused signed an output that the blocks do not
// compute.
//
// Bounded: at most kMaxFaultCalls calls and kMaxFaultRows rows in all, so that checking a report
// costs at most one short session's compute; bigger reports are refused unread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "kernels/thread_pool.h"
#include "model/model.h"
#include "net/forward_attestation.h"
#include "net/hidden_codec.h"

namespace omni::swarm {

inline constexpr size_t kMaxFaultCalls = 1024;
inline constexpr size_t kMaxFaultRows = 4096;

struct FaultCall {
  std::vector<int32_t> tokens;  // the input: token ids (block 0) ...
  std::vector<uint8_t> hidden;  // ... or hidden rows in `encoding`
  uint32_t output_last = 1;     // rows asked back (ForwardInput.outputLast, resolved)
  net::ForwardAttestation accused;
};

struct FaultReport {
  net::HiddenEncoding encoding = net::HiddenEncoding::F16;  // of the session's outputs and hidden inputs
  std::vector<FaultCall> calls;  // the accused session's calls, from position 0
  net::ForwardAttestation witness;  // the replica's attestation of the last call
  std::string accused_peer() const { return calls.empty() ? "" : calls.back().accused.peer_id(); }
};

// JSON (one object; binary fields in hex). parse refuses a report over the bounds, or malformed
// (InvalidArgument).
std::string to_json(const FaultReport& report);
Result<FaultReport> parse_fault_report(const std::string& json);

// What checking a report found.
struct FaultVerdict {
  bool faulty = false;   // the accused signed an output the model does not compute
  size_t call = 0;       // the first such call
  std::string accused;   // its peer id
  std::string summary;   // one line for people
};

// Checks that the report is about `identity` (the model's, net::identify_model), its form (every signature valid, one session nonce, consecutive positions, each
// input hashing to its attestation, the witness's input equal to the last call's at the same
// position and model/range, and its output different), then re-runs the calls on `model` (which
// must hold the range) and compares every signed output with the computed one. Errors (the report
// proves nothing and its publisher should be noted): InvalidArgument for a malformed or
// inconsistent report, PermissionDenied for a bad signature; a verdict with faulty = false when
// every call the accused signed is what the model computes.
Result<FaultVerdict> verify_fault_report(const FaultReport& report, const model::Model& model,
                                         const net::ModelIdentity& identity, kernels::ThreadPool& pool);

}  // namespace omni::swarm
