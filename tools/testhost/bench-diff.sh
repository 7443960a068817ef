#!/usr/bin/env bash
# Runs snapvm-bench-diff inside the emulated arm64 test host: diff against
# full snapshots of a running 2 GiB guest with 1% and 10% of its RAM dirty,
# pause times, and the cost of dirty tracking to the guest. Test-host times
# are not hardware times; the ratios are the figures that carry over.
#
#   tools/testhost/bench-diff.sh [--mem 2G] [--percents 1,10]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${TESTHOST_DIR:-build-testhost}
tools/testhost/prepare.sh
tools/testhost/build-aarch64.sh
exec tools/testhost/run.sh --timeout "${TESTHOST_TIMEOUT:-1200}" --payload "$out/payload" --log "$out/bench-diff.log" \
  -- /payload/snapvm-bench-diff --kernel /payload/guest/Image --initrd /payload/guest/initrd.cpio "$@"
