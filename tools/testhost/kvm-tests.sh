#!/usr/bin/env bash
# Runs the KVM test suite for one architecture on a real KVM: natively when
# this machine's /dev/kvm boots the test guest (tools/testhost/native-kvm.sh),
# otherwise inside the emulated test host of that architecture.
#
#   tools/testhost/kvm-tests.sh [aarch64|x86_64]     (default aarch64)
#   KVM_TEST_FILTER=Boot.*    a gtest filter (the whole suite runs as two shards at once in a test host)
#   KVM_TEST_SHARDS=1         the whole suite in one process
#   SNAPVM_TEST_*=...         the suite's own settings (SNAPVM_TEST_MOMENTS=30), passed into the test host too
#   TESTHOST_TIMEOUT=2400     seconds before a hung test host is killed
set -euo pipefail
cd "$(dirname "$0")/../.."
arch=${1:-aarch64}
filter=${KVM_TEST_FILTER:-*}
source tools/testhost/arch.sh "$arch"
# The suites of the first shard; the second runs all others. Balanced from
# the suites' times in a sharded arm64 run (docs/benchmarks.md: about 670 s
# each); the moments test and Boot share a shard because on x86_64 the
# moments test traces shutdown exits host-wide, which Boot's deliberate
# triple fault would stop.
first_shard="Boot.*:SnapshotUnderLoad.*:Clones.*:Agent.*:AgentDisk.*:Control.*:Image.*"
tools/testhost/prepare.sh "$arch"
if [ "$(uname -m)" = "$arch" ] && tools/testhost/native-kvm.sh; then
  tools/build.sh release
  tools/testhost/native-guest.sh
  if tools/testhost/native-kvm.sh --probe-boot; then
    echo "kvm-tests: running natively on this machine's KVM ($arch)"
    SNAPVM_GUEST_DIR="$out/native-guest" SNAPVM_BIN=build/bin/snapvm \
      exec build/bin/snapvm_kvm_tests --gtest_color=no --gtest_filter="$filter"
  fi
fi
echo "kvm-tests: running in the emulated $arch test host"
tools/testhost/build.sh "$arch"
# The test host starts the suite with an environment of its own.
mapfile -t suite_env < <(env | grep '^SNAPVM_TEST_[A-Z_]*=' || true)
suite=(env "${suite_env[@]}" /payload/snapvm_kvm_tests --gtest_color=no)
command=("${suite[@]}" --gtest_filter="$filter")
if [ "$filter" = "*" ] && [ "${KVM_TEST_SHARDS:-2}" = 2 ]; then
  # The whole suite as two shards at once (shards.sh), split by suite into
  # halves of about equal time; two shards' guests and snapshots need more
  # host RAM than one.
  cp tools/testhost/shards.sh "$out/payload/"
  export TESTHOST_MEM_MB=${TESTHOST_MEM_MB:-5120}
  command=(sh /payload/shards.sh "$first_shard" "${suite[@]}")
fi
# A host whose own kernel locked up (run.sh exit 126: the emulated x86_64
# host, about once in 190 restored clones; docs/benchmarks.md) says nothing
# about snapvm: the suite runs once more, in a fresh host, and says so. A
# test that fails, and a second lockup, fail the run.
for attempt in 1 2; do
  rc=0
  tools/testhost/run.sh --arch "$arch" --timeout "${TESTHOST_TIMEOUT:-2400}" --payload "$out/payload" \
    --log "$out/kvm-tests.log" -- "${command[@]}" || rc=$?
  [ "$rc" -eq 126 ] && [ "$attempt" -eq 1 ] && ! grep -aq '\[  FAILED  \]' "$out/kvm-tests.log" || exit "$rc"
  cp "$out/kvm-tests.log" "$out/kvm-tests-locked-up.log"
  echo "kvm-tests: the emulated $arch host's own kernel locked up (log kept in $out/kvm-tests-locked-up.log);" \
       "running the whole suite once more in a fresh host" >&2
done
