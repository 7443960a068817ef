#!/usr/bin/env bash
# Prepares the emulated arm64 KVM test host: cross toolchain, QEMU, and
# Debian's arm64 kernel, busybox and libfdt, fetched through apt.
# Idempotent; everything lands in build-testhost/ (or $TESTHOST_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${TESTHOST_DIR:-build-testhost}
mkdir -p "$out/debs"

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
if [ "$(uname -m)" = aarch64 ]; then
  # Native arm64: no emulator and no cross toolchain needed.
  packages=(cpio libfdt-dev libseccomp-dev)
else
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${sudo_cmd[@]}" dpkg --add-architecture arm64
    "${sudo_cmd[@]}" apt-get update -qq
  fi
  packages=(qemu-system-arm gcc-aarch64-linux-gnu g++-aarch64-linux-gnu cpio xz-utils
            libfmt-dev:arm64 libxxhash-dev:arm64 libgtest-dev:arm64 libseccomp-dev:arm64 libfdt-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "testhost: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The arm64 kernel (host and default guest kernel), busybox for the host's
# userland, and libfdt for arm64 (its -dev package conflicts with the
# native one, so it is unpacked into a sysroot folder instead).
kernel_pkg=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
kernel_pkg=${kernel_pkg%:arm64}
fetch() {  # package name (arm64), destination folder
  local pkg=$1 dest=$2
  [ -e "$dest/.done-$pkg" ] && return 0
  (cd "$out/debs" && rm -f "${pkg}"_*.deb && apt-get download "$pkg:arm64" >/dev/null 2>&1)
  mkdir -p "$dest"
  dpkg-deb -x "$out/debs/${pkg}"_*_arm64.deb "$dest"
  touch "$dest/.done-$pkg"
}
fetch "$kernel_pkg" "$out/kernel"
fetch busybox-static "$out/busybox"
fetch libfdt-dev "$out/sysroot"

vmlinuz=$(ls "$out"/kernel/boot/vmlinuz-* | head -n 1)
ln -sf "$(realpath "$vmlinuz")" "$out/Image"
echo "testhost: ready (kernel ${kernel_pkg#linux-image-}, $out/)"
