#!/usr/bin/env bash
# Builds static binaries for a test host (snapvm, the KVM tests, the guest
# init, and the benchmark programs named), packs the guest initramfs from that
# architecture's Debian kernel modules and builds the test image
# (pack-image.sh), into the payload the host sees at /payload.
#
#   tools/testhost/build.sh [aarch64|x86_64] [snapvm-bench-NAME...]     (default aarch64)
set -euo pipefail
cd "$(dirname "$0")/../.."
arch=${1:-aarch64}
[ $# -gt 0 ] && shift
source tools/testhost/arch.sh "$arch"
[ -e "$out/kernel-image" ] || tools/testhost/prepare.sh "$arch"
build=build-$arch-static
# -O2 rather than CMake's -O3: a VMM waits on the kernel, not on loops that
# -O3 would unroll, and every CI run pays for this build.
release=(-DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG")
if [ "$arch" = aarch64 ] && [ "$(uname -m)" != aarch64 ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE=tools/testhost/aarch64.cmake \
    -DSNAPVM_AARCH64_SYSROOT="$(realpath "$out/sysroot")" -DSNAPVM_STATIC=ON "${release[@]}" >/dev/null
else
  cmake -S . -B "$build" -G Ninja -DSNAPVM_STATIC=ON -DSNAPVM_TESTS=ON "${release[@]}" >/dev/null
fi
# Only the benchmarks asked for: each is a large static link.
bins=(snapvm snapvm_kvm_tests snapvm-test-page-server "$@")
ninja -C "$build" "${bins[@]}" snapvm-guest-init | { grep -v '^\[' || true; }

moddir=$(ls -d "$out"/kernel/lib/modules/*/ | head -n 1)
tools/testhost/pack-guest.sh "$build/bin/snapvm-guest-init" "$moddir" "$out/busybox/bin/busybox" "$out/guest-initrd.cpio"

payload="$out/payload"
rm -rf "$payload"
mkdir -p "$payload/guest"
for b in "${bins[@]}"; do cp "$build/bin/$b" "$payload/"; done
ln -f "$out/guest-initrd.cpio" "$payload/guest/initrd.cpio" 2>/dev/null || cp "$out/guest-initrd.cpio" "$payload/guest/initrd.cpio"
cp "$(realpath "$out/kernel-image")" "$payload/guest/kernel"
# The image the image tests run, imported on this machine by the native
# snapvm (the static test-host build cannot import: no libarchive).
build/bin/snapvm image --help >/dev/null 2>&1 || tools/build.sh release >/dev/null
tools/testhost/pack-image.sh "$deb_arch" "$out/busybox/bin/busybox" build/bin/snapvm "$payload/guest/images"
echo "testhost build: $arch payload ready in $payload ($(du -sh "$payload" | cut -f1))"
