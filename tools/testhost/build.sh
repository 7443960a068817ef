#!/usr/bin/env bash
# Builds static binaries for a test host (snapvm, the KVM tests, the
# benchmarks, the guest init), packs the guest initramfs from that
# architecture's Debian kernel modules and builds the test image
# (pack-image.sh), into the payload the host sees at /payload.
#
#   tools/testhost/build.sh [aarch64|x86_64]     (default aarch64)
set -euo pipefail
cd "$(dirname "$0")/../.."
arch=${1:-aarch64}
source tools/testhost/arch.sh "$arch"
[ -e "$out/kernel-image" ] || tools/testhost/prepare.sh "$arch"
build=build-$arch-static
if [ "$arch" = aarch64 ] && [ "$(uname -m)" != aarch64 ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE=tools/testhost/aarch64.cmake \
    -DSNAPVM_AARCH64_SYSROOT="$(realpath "$out/sysroot")" -DSNAPVM_STATIC=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
else
  cmake -S . -B "$build" -G Ninja -DSNAPVM_STATIC=ON -DSNAPVM_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
bins=(snapvm snapvm_kvm_tests snapvm-test-page-server snapvm-bench-restore snapvm-bench-diff snapvm-bench-sandbox
      snapvm-bench-vs-qemu snapvm-bench-firecracker snapvm-bench-net snapvm-bench-image)
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
