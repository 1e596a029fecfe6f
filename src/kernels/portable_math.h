// Transcendental functions whose results are the same bits on every CPU and C library.
//
// libm's functions are accurate but not reproducible: glibc's tanhf gives different bits on
// x86-64 and AArch64 for some arguments (12 of 65,536 sampled), so a model that calls it (gemma2's
// soft-capping, the GELU table) would give different logits on an ARM node and an x86 node, and
// the swarm could not compare their results. These are computed with IEEE double arithmetic only
// (+, -, *, /, rounding to an integer, scaling by a power of two), compiled without contraction
// into fused multiply-adds, so every conforming CPU computes every step identically. Accuracy:
// within 1 ulp of the exact value in float (the double result rounded once).
#pragma once

namespace omni::kernels {

// tanh(x) for any float; NaN for NaN.
float tanh_portable(float x);

}  // namespace omni::kernels
