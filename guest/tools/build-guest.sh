#!/usr/bin/env bash
# Builds the guest side `snapvm run` boots by default: Debian's kernel for
# this architecture (the linux-image-ARCH package apt would install today),
# and an initramfs holding snapvm's static init and agent, busybox and the
# kernel's virtio, vsock, network and image-root modules, packed as the KVM
# tests pack theirs (pack-guest.sh). apt-get download checks every package
# against the signed archive index; the result is recorded with SHA-256 sums
# that snapvm checks before it boots the files. A folder that already holds
# the same kernel and init, with sums that match, is left as it is.
# `snapvm guest build` runs this; it is not meant to be run by hand.
#
#   build-guest.sh DEB_ARCH INIT_BINARY PACK_SCRIPT OUT_DIR [KERNEL_PACKAGE]
set -euo pipefail
deb_arch=$1 init=$2 pack=$3 out=$4 kernel_pkg=${5:-}
say() { echo "snapvm guest: $*" >&2; }
fail() { say "$*"; exit 1; }

for tool in apt-get apt-cache dpkg-deb cpio xz sha256sum; do
  command -v "$tool" >/dev/null ||
    fail "needs $tool (Debian packages: apt, dpkg, cpio, xz-utils, coreutils)"
done
[ -x "$init" ] || fail "the guest init $init is missing (build the snapvm-guest-init target)"
parent=$(dirname "$out")
mkdir -p "$parent" 2>/dev/null && [ -w "$parent" ] ||
  fail "cannot write in $parent: run as root, or choose a folder of yours with --dir (or SNAPVM_GUEST_DIR)"

# The kernel package the linux-image-ARCH meta package depends on.
if [ -z "$kernel_pkg" ]; then
  meta=linux-image-$deb_arch
  kernel_pkg=$(apt-cache depends "$meta:$deb_arch" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  kernel_pkg=${kernel_pkg%:"$deb_arch"}
  [ -n "$kernel_pkg" ] || fail "apt knows no $meta for $deb_arch (run apt-get update, or name a kernel package with --kernel-package)"
fi
kernel_version=$(apt-cache policy "$kernel_pkg:$deb_arch" 2>/dev/null | awk '/Candidate:/ {print $2}')
[ -n "$kernel_version" ] && [ "$kernel_version" != "(none)" ] || fail "apt cannot fetch $kernel_pkg for $deb_arch"
busybox_version=$(apt-cache policy "busybox-static:$deb_arch" 2>/dev/null | awk '/Candidate:/ {print $2}')
[ -n "$busybox_version" ] && [ "$busybox_version" != "(none)" ] || fail "apt cannot fetch busybox-static for $deb_arch"
init_sum=$(sha256sum "$init" | cut -d' ' -f1)
want="kernel_package=$kernel_pkg
kernel_version=$kernel_version
busybox_version=$busybox_version
init_sha256=$init_sum"

if [ -f "$out/manifest" ] && [ "$(grep -v '^built=' "$out/manifest")" = "$want" ] &&
   (cd "$out" && sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1); then
  say "$out is up to date ($kernel_pkg $kernel_version)"
  exit 0
fi

work=$(mktemp -d "$parent/.guest-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/debs" "$work/kernel" "$work/busybox" "$work/out"
# apt downloads as its unprivileged _apt user where that user can write.
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
  chmod 0711 "$work"
  chown _apt "$work/debs"
fi
say "fetching $kernel_pkg $kernel_version and busybox-static $busybox_version through apt"
(cd "$work/debs" && apt-get download -q "$kernel_pkg:$deb_arch=$kernel_version" \
  "busybox-static:$deb_arch=$busybox_version" >/dev/null 2>"$work/apt.log") ||
  fail "apt-get download failed: $(tail -n 1 "$work/apt.log")"
say "unpacking ($(du -sh "$work/debs" | cut -f1) of packages)"
dpkg-deb -x "$work/debs/${kernel_pkg}"_*.deb "$work/kernel"
dpkg-deb -x "$work/debs/busybox-static"_*.deb "$work/busybox"
vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-* 2>/dev/null | head -n 1)
moddir=$(ls -d "$work"/kernel/lib/modules/*/ 2>/dev/null | head -n 1)
[ -n "$vmlinuz" ] && [ -n "$moddir" ] || fail "$kernel_pkg holds no boot/vmlinuz-* and lib/modules/*/"
say "packing the initramfs (snapvm's init and agent, busybox, the kernel's virtio modules)"
cp "$vmlinuz" "$work/out/kernel"
"$pack" "$init" "$moddir" "$work/busybox/bin/busybox" "$work/out/initrd.cpio"
(cd "$work/out" && sha256sum kernel initrd.cpio > SHA256SUMS)
{ echo "$want"; echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; } > "$work/out/manifest"
chmod 0755 "$work/out"
chmod 0644 "$work/out"/*

# Put the new folder in place of the old one. Between the two renames
# there is no folder (a run then says to build the guest); the old one is
# removed only once the new one is in place.
old=""
if [ -e "$out" ]; then
  old=$(mktemp -u "$parent/.guest-old.XXXXXX")
  mv "$out" "$old"
fi
if ! mv "$work/out" "$out"; then
  [ -n "$old" ] && mv "$old" "$out"
  fail "cannot move the new guest into $out"
fi
[ -n "$old" ] && rm -rf "$old"
say "ready: $out/kernel ($(du -h "$out/kernel" | cut -f1)) and $out/initrd.cpio ($(du -h "$out/initrd.cpio" | cut -f1))"
