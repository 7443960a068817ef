#!/usr/bin/env bash
# On an arm64 host with /dev/kvm: the guest kernel and initramfs for native
# runs, from the native build, in build-testhost/native-guest/.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${TESTHOST_DIR:-build-testhost}
mkdir -p "$out/native-guest"
moddir=$(ls -d "$out"/kernel/lib/modules/*/ | head -n 1)
tools/testhost/pack-guest.sh build/bin/snapvm-guest-init "$moddir" "$out/busybox/bin/busybox" "$out/native-guest/initrd.cpio"
cp "$(realpath "$out/Image")" "$out/native-guest/Image"
echo "native-guest: $out/native-guest"
