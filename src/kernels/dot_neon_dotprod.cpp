// NEON kernels with the dot-product extension (ARMv8.2-A +dotprod: vdotq_s32). Compiled with that
// -march; only reached through neon_dotprod_kernels() after matmul.cpp's CPU check. The kernels
// themselves are in dot_lanes_neon.h.
#include "kernels/dot_lanes_neon.h"

namespace omni::kernels {

const KernelTable& neon_dotprod_kernels() { return neon::table(); }

}  // namespace omni::kernels
