# Cross build for AArch64 Linux with Debian's cross toolchain (g++-aarch64-linux-gnu) and the
# arm64 libraries of a multiarch system (/usr/lib/aarch64-linux-gnu). Test binaries run under
# qemu-user: CMake uses the emulator for gtest discovery and ctest alike.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Libraries and packages of the target only; programs (pkg-config) of the host.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)

# `-cpu max` has every extension the kernels use (dotprod, i8mm); OMNI_KERNELS caps the level.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-cpu;max;-L;/usr/aarch64-linux-gnu)
