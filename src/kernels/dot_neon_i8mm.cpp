// NEON kernels with the int8 matrix-multiply extension (ARMv8.6-A +dotprod+i8mm: vdotq_s32, and
// vmmlaq_s32 for the Q4_0 chain's whole-block sums). Compiled with that -march; only reached
// through neon_i8mm_kernels() after matmul.cpp's CPU check. The kernels themselves are in
// dot_lanes_neon.h.
#include "kernels/dot_lanes_neon.h"

namespace omni::kernels {

const KernelTable& neon_i8mm_kernels() { return neon::table(); }

}  // namespace omni::kernels
