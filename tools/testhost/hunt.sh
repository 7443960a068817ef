#!/usr/bin/env bash
# The clone hunt: restored clones of a busy multi-vCPU guest at random
# moments, in a test host, counted as healthy, reset, silent or stalled
# (hunt-clones.sh). The QEMU and the host kernel are chosen as everywhere
# (TESTHOST_QEMU, TESTHOST_KERNEL: arch.sh); docs/benchmarks.md has results.
#
#   tools/testhost/hunt.sh [--arch x86_64|aarch64] [--clones 200] [--snapshots 20] [--cpus 4] [--mem 512M]
#   tools/testhost/hunt.sh ... --prefault       each clone's RAM made private before it runs (a diagnostic:
#                                                no copy-on-write under the running guest)
#   tools/testhost/hunt.sh --qemu-restores 30    QEMU as the VMM in the same host: one busy guest saved
#                                                (migrate) and restored (-incoming) 30 times (qemu-restores.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
arch=x86_64 clones=200 snapshots=20 cpus=4 mem=512M qemu_restores=0 prefault=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefault) prefault=(SNAPVM_DEBUG_PREFAULT_RAM=1); shift; continue ;;
    --arch) arch=$2 ;;
    --clones) clones=$2 ;;
    --snapshots) snapshots=$2 ;;
    --cpus) cpus=$2 ;;
    --mem) mem=$2 ;;
    --qemu-restores) qemu_restores=$2 ;;
    *) echo "hunt: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
source tools/testhost/arch.sh "$arch"
tools/testhost/prepare.sh "$arch"
[ -x "$out/payload/snapvm" ] || tools/testhost/build.sh "$arch"
cp tools/testhost/hunt-clones.sh tools/testhost/qemu-restores.sh "$out/payload/"
export TESTHOST_MEM_MB=${TESTHOST_MEM_MB:-4096}
if [ "$qemu_restores" -gt 0 ]; then
  tools/testhost/pack-qemu.sh "$out/payload/qemu" "$arch"
  exec tools/testhost/run.sh --arch "$arch" --timeout "${TESTHOST_TIMEOUT:-3600}" --payload "$out/payload" \
    --log "$out/qemu-restores-qemu$host_qemu-linux$host_kernel-npt${TESTHOST_NPT:-0}.log" -- sh /payload/qemu-restores.sh "$qemu_restores" "$cpus"
fi
log=$out/hunt-qemu$host_qemu-linux$host_kernel-npt${TESTHOST_NPT:-0}${prefault[*]:+-prefault}.log
exec tools/testhost/run.sh --arch "$arch" --timeout "${TESTHOST_TIMEOUT:-7200}" --payload "$out/payload" --log "$log" \
  -- env "${prefault[@]}" sh /payload/hunt-clones.sh "$clones" "$snapshots" "$cpus" "$mem"
