#!/usr/bin/env bash
# On a host whose own KVM runs the guest: the guest kernel, initramfs and
# test image for native runs, from the native build, in build-testhost*/native-guest/.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/testhost/arch.sh "$(uname -m)"
mkdir -p "$out/native-guest"
moddir=$(ls -d "$out"/kernel/lib/modules/*/ | head -n 1)
guest/tools/pack-guest.sh build/bin/snapvm-guest-init "$moddir" "$out/busybox/bin/busybox" "$out/native-guest/initrd.cpio"
cp "$(realpath "$out/kernel-image")" "$out/native-guest/kernel"
if [ "$(uname -m)" = x86_64 ] && ! [ "$out/native-guest/vmlinux" -nt "$out/kernel-image" ]; then
  tools/testhost/extract-vmlinux.sh "$out/kernel-image" "$out/native-guest/vmlinux"
fi
rm -rf "$out/native-guest/images"
tools/testhost/pack-image.sh "$deb_arch" "$out/busybox/bin/busybox" build/bin/snapvm "$out/native-guest/images"
echo "native-guest: $out/native-guest"
