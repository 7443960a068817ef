#!/usr/bin/env bash
# Exit 0 when this machine's own /dev/kvm can run the test guest of its
# architecture, so KVM tests may run natively; 1 otherwise (then they run in
# the emulated test host). A /dev/kvm alone proves nothing: some machines
# have one backed by PVM (kvm_pvm), which cannot boot stock kernels. So the
# backend is checked, then the real guest must boot and power off in time.
#
#   tools/testhost/native-kvm.sh [--probe-boot]
set -uo pipefail
cd "$(dirname "$0")/../.."
why() { echo "native KVM: not usable ($*); using the emulated test host" >&2; exit 1; }
[ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || why "no accessible /dev/kvm"
case "$(uname -m)" in
  x86_64)
    [ -d /sys/module/kvm_pvm ] && why "/dev/kvm is the PVM backend"
    grep -qwE 'vmx|svm' /proc/cpuinfo || why "the CPU shows neither vmx nor svm"
    [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ] || why "neither kvm_intel nor kvm_amd is loaded" ;;
  aarch64) ;;
  *) why "no snapvm machine for $(uname -m)" ;;
esac
if [ "${1:-}" = --probe-boot ]; then
  source tools/testhost/arch.sh "$(uname -m)"
  guest=$out/native-guest
  timeout 120 build/bin/snapvm run --kernel "$guest/kernel" --initrd "$guest/initrd.cpio" --mem 256M \
    --cmdline "console=$console quiet panic=-1 snapvm.poweroff" >/dev/null 2>&1 ||
    why "the test guest did not boot and power off within 120 s"
fi
exit 0
