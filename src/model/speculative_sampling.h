// The rejection rule of speculative sampling (Leviathan et al. 2023; Chen et al. 2023): a token
// drafted from a cheap distribution q is kept with probability min(1, p(x) / q(x)) under the
// target's distribution p; when it is not, a token is drawn from the residual max(0, p - q),
// normalized. The token that comes out is distributed exactly as p, whatever q was, so a drafted
// run samples the target's distribution and only its speed depends on the draft.
//
// Distributions are (token, probability) lists over the tokens a Sampler keeps (sampler.h:
// Sampler::distribution); absent tokens have probability 0. A draft with no distribution of its
// own (prompt lookup) proposes its token with q = 1.
#pragma once

#include <span>
#include <vector>

#include "model/sampler.h"

namespace omni::model {

// The token whose cumulative probability first passes u * total (u in [0, 1)): a draw from `d`.
TokenId draw_from(std::span<const TokenProb> d, double u);

struct SpeculativeVerdict {
  bool accepted = false;  // the drafted token stands
  TokenId token = -1;     // the drafted token, or the one drawn from the residual in its place
};

// Decides drafted token `x` (drawn from `q`) against the target `p`: `u_accept` and `u_residual`
// are two independent uniforms in [0, 1).
SpeculativeVerdict speculative_verdict(std::span<const TokenProb> p, std::span<const TokenProb> q, TokenId x,
                                       double u_accept, double u_residual);

}  // namespace omni::model
