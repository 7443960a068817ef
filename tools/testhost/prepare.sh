#!/usr/bin/env bash
# Prepares an emulated KVM test host for one architecture: QEMU, the
# toolchain that builds static binaries for it, the host's kernel, the
# guest's kernel (Debian 12's) and busybox, fetched through apt. The host's
# QEMU and kernel come from bookworm-backports unless TESTHOST_QEMU and
# TESTHOST_KERNEL (arch.sh) say otherwise. Idempotent; everything but the
# installed packages lands in build-testhost/ (aarch64) or
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
if [ "$host_qemu" = 10 ] || [ "$host_kernel" = 6.12 ]; then
  tools/testhost/backports.sh
fi
# QEMU 10 is installed from backports over Debian 12's (same libraries).
# Debian 12's runs unpacked, binary and loadable modules (TCG is one) of
# its own version, whatever version is installed: the two architectures'
# QEMUs share qemu-system-common, so one installed version serves both.
installed_qemu=$(dpkg-query -W -f='${Version}' "$qemu_pkg")
if [ "$host_qemu" = 10 ] && [[ "$installed_qemu" != *bpo12* ]]; then
  echo "testhost: installing QEMU 10 ($qemu_pkg) from bookworm-backports"
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends -t bookworm-backports "$qemu_pkg" >/dev/null
fi
if [ "$host_qemu" = 7.2 ] && ! [ -e "$out/qemu-7.2/.unpacked" ]; then
  stock=$(apt-cache madison "$qemu_pkg" | awk -F' [|] ' '$3 ~ / bookworm\/main/ { print $2; exit }')
  [ -n "$stock" ] || { echo "testhost: apt knows no $qemu_pkg from bookworm itself (apt-cache madison $qemu_pkg)" >&2; exit 1; }
  rm -rf "$out/qemu-7.2" && mkdir -p "$out/qemu-7.2"
  (cd "$out/debs" && rm -f "${qemu_pkg}"_*.deb qemu-system-common_*.deb &&
   apt-get download "$qemu_pkg=$stock" "qemu-system-common=$stock" >/dev/null 2>&1)
  for deb in "$out/debs/${qemu_pkg}"_*.deb "$out/debs"/qemu-system-common_*.deb; do dpkg-deb -x "$deb" "$out/qemu-7.2"; done
  touch "$out/qemu-7.2/.unpacked"
fi

# The kernel, busybox for the host's userland, and (arm64 cross builds)
# libfdt, whose -dev package conflicts with the native one, so it is
# unpacked into a sysroot folder instead.
# The kernel package a version of the linux-image-FLAVOUR meta package names.
kernel_of() {  # meta package version
  local pkg
  pkg=$(apt-cache depends "linux-image-$kernel_flavour:$deb_arch=$1" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  echo "${pkg%:"$deb_arch"}"
}
# The guest's: Debian 12's own (the candidate: backports' priority is low).
kernel_pkg=$(kernel_of "$(apt-cache policy "linux-image-$kernel_flavour:$deb_arch" | awk '/Candidate:/ { print $2 }')")
fetch() {  # package name, destination folder
  local pkg=$1 dest=$2
  [ -e "$dest/.done-$pkg" ] && return 0
  (cd "$out/debs" && rm -f "${pkg}"_*.deb && apt-get download "$pkg:$deb_arch" >/dev/null 2>&1)
  mkdir -p "$dest"
  dpkg-deb -x "$out/debs/${pkg}"_*_"$deb_arch".deb "$dest"
  touch "$dest/.done-$pkg"
}
fetch "$kernel_pkg" "$out/kernel"
if [ "$host_kernel" = 6.12 ]; then
  bpo=$(apt-cache madison "linux-image-$kernel_flavour:$deb_arch" | awk -F' [|] ' '$3 ~ /bookworm-backports/ { print $2; exit }')
  [ -n "$bpo" ] || { echo "testhost: no linux-image-$kernel_flavour in bookworm-backports" >&2; exit 1; }
  fetch "$(kernel_of "$bpo")" "$host_kernel_dir"
fi
fetch busybox-static "$out/busybox"
[ "$arch" = aarch64 ] && [ "$host" != aarch64 ] && fetch libfdt-dev "$out/sysroot"

vmlinuz=$(ls "$out"/kernel/boot/vmlinuz-* | head -n 1)
ln -sf "$(realpath "$vmlinuz")" "$out/kernel-image"
echo "testhost: $arch ready (QEMU $host_qemu, host kernel $(basename "$(ls -d "$host_kernel_dir"/lib/modules/*/)"), guest kernel ${kernel_pkg#linux-image-}, $out/)"
