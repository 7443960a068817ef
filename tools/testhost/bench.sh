#!/usr/bin/env bash
# Runs a VM benchmark inside an emulated test host (arm64 unless --arch
# x86_64 comes first), with the test guest (kernel and initramfs with the
# agent). Test-host times are not hardware times; the ratios each benchmark
# prints are what carry over.
#
#   tools/testhost/bench.sh restore [--sizes 256M,2G] [--reps 5]   restore latency against RAM size
#   tools/testhost/bench.sh diff [--mem 2G] [--percents 1,10]      diff vs full snapshots, pauses, tracking cost
#   tools/testhost/bench.sh sandbox [--reps 5]                     seccomp and jailer against neither: restore, vsock RTT
#   tools/testhost/bench.sh firecracker [--reps 5]                 restore through Firecracker's API (File, Uffd) vs native
#   tools/testhost/bench.sh net [--reps 3] [--seconds 3]           virtio-net TCP throughput and RTT vs a veth pair
#   tools/testhost/bench.sh image [--reps 5]                       an image's first HTTP byte: boot, restore, pool take
#   tools/testhost/bench.sh [--arch x86_64] vs-qemu [--sizes 256M,2G] [--cpus 1,4] [--reps 3]
#                                                                  snapvm next to QEMU (migrate/-incoming)
set -euo pipefail
cd "$(dirname "$0")/../.."
arch=aarch64
if [ "${1:-}" = --arch ]; then arch=$2; shift 2; fi
case "${1:-}" in
  restore|diff|sandbox|vs-qemu|firecracker|net|image) which=$1; shift ;;
  *) echo "usage: tools/testhost/bench.sh [--arch x86_64] restore|diff|sandbox|vs-qemu|firecracker|net|image [options]" >&2; exit 2 ;;
esac
source tools/testhost/arch.sh "$arch"
tools/testhost/prepare.sh "$arch"
tools/testhost/build.sh "$arch" "snapvm-bench-$which"
if [ "$which" = vs-qemu ]; then
  tools/testhost/pack-qemu.sh "$out/payload/qemu" "$arch"
  # Two guests' filled RAM and two saved images of it at 2 GiB.
  export TESTHOST_MEM_MB=${TESTHOST_MEM_MB:-6144}
fi
exec tools/testhost/run.sh --arch "$arch" --timeout "${TESTHOST_TIMEOUT:-1200}" --payload "$out/payload" \
  --log "$out/bench-$which.log" \
  -- "/payload/snapvm-bench-$which" --kernel /payload/guest/kernel --initrd /payload/guest/initrd.cpio "$@"
