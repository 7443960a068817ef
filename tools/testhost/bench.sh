#!/usr/bin/env bash
# Runs a VM benchmark inside the emulated arm64 test host, with the test
# guest (kernel and initramfs with the agent). Test-host times are not
# hardware times; the ratios each benchmark prints are what carry over.
#
#   tools/testhost/bench.sh restore [--sizes 256M,2G] [--reps 5]   restore latency against RAM size
#   tools/testhost/bench.sh diff [--mem 2G] [--percents 1,10]      diff vs full snapshots, pauses, tracking cost
#   tools/testhost/bench.sh sandbox [--reps 5]                     seccomp and jailer against neither: restore, vsock RTT
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${1:-}" in
  restore|diff|sandbox) which=$1; shift ;;
  *) echo "usage: tools/testhost/bench.sh restore|diff|sandbox [options]" >&2; exit 2 ;;
esac
out=${TESTHOST_DIR:-build-testhost}
tools/testhost/prepare.sh
tools/testhost/build-aarch64.sh
exec tools/testhost/run.sh --timeout "${TESTHOST_TIMEOUT:-1200}" --payload "$out/payload" --log "$out/bench-$which.log" \
  -- "/payload/snapvm-bench-$which" --kernel /payload/guest/Image --initrd /payload/guest/initrd.cpio "$@"
