#!/usr/bin/env bash
# Runs the KVM test suite inside the emulated arm64 test host: prepares it,
# cross-builds, boots it, runs snapvm_kvm_tests on its real /dev/kvm, and
# reports the result. On an arm64 machine with /dev/kvm, runs them natively.
#
#   KVM_TEST_FILTER=Boot.*    a gtest filter
#   TESTHOST_TIMEOUT=2400     seconds before a hung test host is killed
set -euo pipefail
cd "$(dirname "$0")/../.."
filter=${KVM_TEST_FILTER:-*}
out=${TESTHOST_DIR:-build-testhost}
tools/testhost/prepare.sh
if [ "$(uname -m)" = aarch64 ] && [ -c /dev/kvm ]; then
  tools/build.sh release
  tools/testhost/native-guest.sh
  SNAPVM_GUEST_DIR="$out/native-guest" SNAPVM_BIN=build/bin/snapvm \
    exec build/bin/snapvm_kvm_tests --gtest_color=no --gtest_filter="$filter"
fi
tools/testhost/build-aarch64.sh
exec tools/testhost/run.sh --timeout "${TESTHOST_TIMEOUT:-2400}" --payload "$out/payload" --log "$out/kvm-tests.log" \
  -- /payload/snapvm_kvm_tests --gtest_color=no --gtest_filter="$filter"
