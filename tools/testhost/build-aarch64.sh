#!/usr/bin/env bash
# Cross-builds static aarch64 binaries for the test host (snapvm, the KVM
# tests, the guest init) and packs the guest initramfs.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${TESTHOST_DIR:-build-testhost}
[ -e "$out/Image" ] || tools/testhost/prepare.sh
cmake -S . -B build-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=tools/testhost/aarch64.cmake \
  -DSNAPVM_AARCH64_SYSROOT="$(realpath "$out/sysroot")" -DSNAPVM_STATIC=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build-aarch64 snapvm snapvm_kvm_tests snapvm-bench-restore snapvm-bench-diff snapvm-bench-sandbox snapvm-guest-init | { grep -v '^\[' || true; }

moddir=$(ls -d "$out"/kernel/lib/modules/*/ | head -n 1)
tools/testhost/pack-guest.sh build-aarch64/bin/snapvm-guest-init "$moddir" "$out/busybox/bin/busybox" "$out/guest-initrd.cpio"

# The payload the test host sees at /payload.
payload="$out/payload"
rm -rf "$payload"
mkdir -p "$payload/guest"
cp build-aarch64/bin/snapvm build-aarch64/bin/snapvm_kvm_tests build-aarch64/bin/snapvm-bench-restore build-aarch64/bin/snapvm-bench-diff build-aarch64/bin/snapvm-bench-sandbox "$payload/"
ln -f "$out/guest-initrd.cpio" "$payload/guest/initrd.cpio" 2>/dev/null || cp "$out/guest-initrd.cpio" "$payload/guest/initrd.cpio"
cp "$(realpath "$out/Image")" "$payload/guest/Image"
echo "build-aarch64: payload ready in $payload ($(du -sh "$payload" | cut -f1))"
