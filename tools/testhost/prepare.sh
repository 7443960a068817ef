#!/usr/bin/env bash
# Prepares an emulated KVM test host for one architecture: QEMU, the
# toolchain that builds static binaries for it, and Debian's kernel (the
# host's and the default guest's) and busybox, fetched through apt.
# Idempotent; everything lands in build-testhost/ (aarch64) or
# build-testhost-x86_64/ (or $TESTHOST_DIR).
#
#   tools/testhost/prepare.sh [aarch64|x86_64]     (default aarch64)
set -euo pipefail
cd "$(dirname "$0")/../.."
arch=${1:-aarch64}
source tools/testhost/arch.sh "$arch"
mkdir -p "$out/debs"

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
host=$(uname -m)
if [ "$arch" = "$host" ]; then
  # The build machine's own architecture: no cross toolchain. The emulator
  # is needed unless this machine runs KVM natively.
  packages=(cpio xz-utils libseccomp-dev libboost-dev "$qemu_pkg")
  [ "$arch" = aarch64 ] && packages+=(libfdt-dev)
else
  if ! dpkg --print-foreign-architectures | grep -qx "$deb_arch"; then
    "${sudo_cmd[@]}" dpkg --add-architecture "$deb_arch"
    "${sudo_cmd[@]}" apt-get update -qq
  fi
  packages=("$qemu_pkg" cpio xz-utils libboost-dev)  # Boost: header-only, any arch
  if [ "$arch" = aarch64 ]; then
    packages+=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libfmt-dev:arm64 libxxhash-dev:arm64
               libgtest-dev:arm64 libseccomp-dev:arm64 libfdt-dev)
  fi
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

# The kernel, busybox for the host's userland, and (arm64 cross builds)
# libfdt, whose -dev package conflicts with the native one, so it is
# unpacked into a sysroot folder instead.
kernel_pkg=$(apt-cache depends "linux-image-$kernel_flavour:$deb_arch" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
kernel_pkg=${kernel_pkg%:"$deb_arch"}
fetch() {  # package name, destination folder
  local pkg=$1 dest=$2
  [ -e "$dest/.done-$pkg" ] && return 0
  (cd "$out/debs" && rm -f "${pkg}"_*.deb && apt-get download "$pkg:$deb_arch" >/dev/null 2>&1)
  mkdir -p "$dest"
  dpkg-deb -x "$out/debs/${pkg}"_*_"$deb_arch".deb "$dest"
  touch "$dest/.done-$pkg"
}
fetch "$kernel_pkg" "$out/kernel"
fetch busybox-static "$out/busybox"
[ "$arch" = aarch64 ] && [ "$host" != aarch64 ] && fetch libfdt-dev "$out/sysroot"

vmlinuz=$(ls "$out"/kernel/boot/vmlinuz-* | head -n 1)
ln -sf "$(realpath "$vmlinuz")" "$out/kernel-image"
echo "testhost: $arch ready (kernel ${kernel_pkg#linux-image-}, $out/)"
