#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs dependencies, builds,
# runs the native tests (plain, ASan+UBSan, ThreadSanitizer), fuzzes every parser of
# untrusted input for a bounded time, runs the KVM suites for x86_64 and
# arm64 (natively where this machine's KVM boots the guest, otherwise in the
# emulated test host of that architecture), the VM
# benchmarks at CI sizes (restore, diff, sandbox, restore through the
# Firecracker API), and smoke-runs the format benchmark. Ends with the
# time each suite took.
#
#   FUZZ_SECONDS=30  how long each fuzzer runs
#   BENCH_DEADLINE=3600  benchmarks not yet started when the run is this
#                        many seconds old are skipped (and listed as such)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${FUZZ_SECONDS:-30}
started=$(date +%s)

passed=0
failed=0
timings=()
# Runs one suite (a name, then its command), counts it, records its time.
suite() {
  local name=$1 t0 rc
  shift
  echo "== $name"
  t0=$(date +%s)
  if "$@"; then rc=0; passed=$((passed + 1)); else rc=$?; failed=$((failed + 1)); fi
  timings+=("$(printf '%6d s  %-6s %s' $(($(date +%s) - t0)) "$([ $rc -eq 0 ] && echo ok || echo FAILED)" "$name")")
}
ctest_in() { (cd "$1" && ctest --output-on-failure -j "$(nproc)" --timeout 300); }

suite "setup (Debian packages)" tools/setup.sh
# What the native suites run; the KVM tests and VM benchmarks are built
# for the test host (tools/testhost/build.sh), or by kvm-tests.sh for a
# native KVM.
suite "build (release)" tools/build.sh release snapvm snapvm_unit_tests snapvm-test-fake-clone snapvm-mksample \
  snapvm-bench-format
suite "native tests" ctest_in build
suite "snapvm guest build from a clean cache (Debian's kernel through apt)" tests/guest/guest_build_test.sh build
suite "build (ASan+UBSan, clang, with the fuzz targets)" tools/build.sh asan
suite "native tests under ASan+UBSan" ctest_in build-asan
suite "build (ThreadSanitizer)" tools/build.sh tsan
suite "native tests under ThreadSanitizer" ctest_in build-tsan

fuzz_all() {  # the targets were built with the ASan+UBSan tree
  local seeds=build-asan/seeds rc=0
  mkdir -p "$seeds"
  build/bin/snapvm-mksample "$seeds/small.snap" --mem 16K --cpus 1 --density 0.5 >/dev/null
  build/bin/snapvm-mksample "$seeds/compact.snap" --mem 32K --cpus 2 --density 1 --writer compact >/dev/null
  build/bin/snapvm-mksample "$seeds/x86.snap" --mem 16K --cpus 2 --density 0.5 --arch x86_64 >/dev/null
  cp tests/data/sample-v1.0.snap "$seeds/"
  # An x86_64 ELF's headers to start from (libFuzzer's comparison tracing
  # finds a bzImage's "HdrS" by itself).
  mkdir -p "$seeds/kernels"
  head -c 20000 build/bin/snapvm > "$seeds/kernels/elf"
  fuzz() {  # target, max input length, extra corpus folders...
    local target=$1 max_len=$2 log=build-asan/fuzz-$1.log corpus=build-asan/corpus-$1
    shift 2
    mkdir -p "$corpus"
    if "build-asan/bin/snapvm_fuzz_$target" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
         -max_len="$max_len" -print_final_stats=1 -artifact_prefix="build-asan/fuzz-$target-" "$corpus" "$@" \
         >"$log" 2>&1; then
      echo "fuzz $target: $(grep -E '^Done' "$log" || true)"
    else
      echo "fuzz $target failed: its input is in $(pwd)/build-asan/ (fuzz-$target-*); $log ends:"
      tail -40 "$log"
      return 1
    fi
  }
  # One fuzzer per core at a time: each is single-threaded, so the run takes
  # 9 x FUZZ_SECONDS / cores and every target still gets its full time.
  local running=0
  start() {
    if [ "$running" -ge "$(nproc)" ]; then
      wait -n || rc=1
      running=$((running - 1))
    fi
    fuzz "$@" &
    running=$((running + 1))
  }
  start reader 400000 "$seeds"
  start virtqueue 70000
  start virtio_device 20000 tests/fuzz/regressions/virtio_device
  start control_request 70000
  start agent_frames 70000
  start firecracker_api 60000 tests/fuzz/regressions/firecracker_api
  start image 200000 tests/fuzz/regressions/image
  start kernel_image 300000 "$seeds/kernels"
  start panic_watch 4096
  while [ "$running" -gt 0 ]; do
    wait -n || rc=1
    running=$((running - 1))
  done
  return $rc
}
suite "fuzzing (9 targets, ${fuzz_seconds}s each)" fuzz_all

# Both architectures' KVM suites, each natively where this machine's KVM
# boots the guest (tools/testhost/native-kvm.sh), otherwise in the emulated
# test host of that architecture. Each architecture's host has the
# configuration its numbers support (tools/testhost/arch.sh): arm64 on
# QEMU 10 and Linux 6.12 from bookworm-backports, x86_64 on Debian 12's QEMU
# 7.2 and Linux 6.1 with shadow paging, the one whose restored clones hold
# (docs/benchmarks.md, "x86_64 in the gate").
suite "KVM tests, x86_64 (native KVM or the emulated x86_64 host)" tools/testhost/kvm-tests.sh x86_64
suite "KVM tests, arm64 (native KVM or the emulated arm64 host)" tools/testhost/kvm-tests.sh aarch64
# The Debian package installed on this machine, checked and purged (about
# half a minute once the release tree is built); it ships the static snapvm
# that `snapvm jail` runs when the static tree exists, as the emulated
# x86_64 host's build leaves it above (SNAPVM_PACKAGE_STATIC=auto).
suite "Debian package (build, dpkg -i, check, purge)" tests/package/package_test.sh
# CI sizes: the benchmarks fail only on an error, never on a missed target;
# full-size runs: tools/testhost/bench.sh (docs/benchmarks.md). Each takes 2
# to 4 minutes in the emulated host; on a machine slow enough that the run
# is past BENCH_DEADLINE seconds (CI stops a run at 90 minutes), the rest are
# skipped, and said so, rather than losing the whole run to the time limit.
bench_deadline=${BENCH_DEADLINE:-3600}
bench_suite() {
  local name=$1 elapsed=$(($(date +%s) - started))
  shift
  if [ "$elapsed" -ge "$bench_deadline" ]; then
    echo "== $name: skipped, the run is ${elapsed} s old (BENCH_DEADLINE=${bench_deadline})"
    timings+=("$(printf '%6d s  %-6s %s' 0 skipped "$name")")
    return
  fi
  suite "$name" "$@"
}
bench_suite "restore benchmark, arm64 test host (256 MiB vs 2 GiB)" tools/testhost/bench.sh restore --reps 3
bench_suite "diff benchmark in the test host (1 GiB, 1% dirty)" tools/testhost/bench.sh diff --mem 1G --percents 1
bench_suite "seccomp and jailer overhead in the test host (256 MiB, 3 restores each)" tools/testhost/bench.sh sandbox --reps 3
bench_suite "restore through the Firecracker API in the test host (File, Uffd, native; 3 each)" tools/testhost/bench.sh firecracker --reps 3
suite "format benchmark smoke run" build/bin/snapvm-bench-format --sizes 64M --densities 2,100 --dir build/bench-smoke

echo
echo "== time per suite"
printf '%s\n' "${timings[@]}"
echo "total: $(($(date +%s) - started)) s"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
