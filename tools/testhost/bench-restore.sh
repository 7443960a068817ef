#!/usr/bin/env bash
# Runs snapvm-bench-restore inside the emulated arm64 test host: restore
# latency at each guest RAM size, the time to the first exec reply, and the
# bytes read before the guest runs. Test-host times are not hardware times;
# the ratio between sizes is the figure that carries over.
#
#   tools/testhost/bench-restore.sh [--sizes 256M,2G] [--reps 5] [--cpus 2]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${TESTHOST_DIR:-build-testhost}
tools/testhost/prepare.sh
tools/testhost/build-aarch64.sh
exec tools/testhost/run.sh --timeout "${TESTHOST_TIMEOUT:-1200}" --payload "$out/payload" --log "$out/bench-restore.log" \
  -- /payload/snapvm-bench-restore --kernel /payload/guest/Image --initrd /payload/guest/initrd.cpio "$@"
