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
# Only the benchmarks asked for: each is a large static link.
bins=(snapvm snapvm_kvm_tests snapvm-test-page-server "$@")
build=build-$arch-static
if [ "$arch" = aarch64 ] && [ "$(uname -m)" != aarch64 ]; then
  # -O2 rather than CMake's -O3, as in tools/build.sh static.
  cmake -S . -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE=tools/testhost/aarch64.cmake \
    -DSNAPVM_AARCH64_SYSROOT="$(realpath "$out/sysroot")" -DSNAPVM_STATIC=ON -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" >/dev/null
  ninja -C "$build" "${bins[@]}" snapvm-guest-init | { grep -v '^\[' || true; }
elif [ "$arch" = "$(uname -m)" ]; then
  # This machine's own architecture: the tree of tools/build.sh static, so
  # its flags are written down once.
  tools/build.sh static "${bins[@]}" snapvm-guest-init
else
  echo "testhost build: no cross build for $arch on $(uname -m)" >&2
  exit 2
fi

moddir=$(ls -d "$out"/kernel/lib/modules/*/ | head -n 1)
guest/tools/pack-guest.sh "$build/bin/snapvm-guest-init" "$moddir" "$out/busybox/bin/busybox" "$out/guest-initrd.cpio"

payload="$out/payload"
rm -rf "$payload"
mkdir -p "$payload/guest"
for b in "${bins[@]}"; do cp "$build/bin/$b" "$payload/"; done
ln -f "$out/guest-initrd.cpio" "$payload/guest/initrd.cpio" 2>/dev/null || cp "$out/guest-initrd.cpio" "$payload/guest/initrd.cpio"
cp "$(realpath "$out/kernel-image")" "$payload/guest/kernel"
if [ "$arch" = x86_64 ]; then  # the same kernel as an ELF vmlinux, for Boot.ElfVmlinuxReachesInitWithAllCpus
  [ "$out/vmlinux" -nt "$out/kernel-image" ] || tools/testhost/extract-vmlinux.sh "$out/kernel-image" "$out/vmlinux"
  ln -f "$out/vmlinux" "$payload/guest/vmlinux" 2>/dev/null || cp "$out/vmlinux" "$payload/guest/vmlinux"
fi
# The image the image tests run, imported on this machine by the native
# release snapvm (the static builds cannot import: no libarchive).
[[ "$(build/bin/snapvm image import --help 2>/dev/null)" == *"image import"* ]] || tools/build.sh release snapvm >/dev/null
tools/testhost/pack-image.sh "$deb_arch" "$out/busybox/bin/busybox" build/bin/snapvm "$payload/guest/images"
echo "testhost build: $arch payload ready in $payload ($(du -sh "$payload" | cut -f1))"
