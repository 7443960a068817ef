#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs dependencies, builds,
# runs the native tests (plain and under ASan+UBSan), fuzzes the snapshot
# reader for a bounded time, runs the KVM tests inside the emulated arm64
# test host, and smoke-runs the benchmark.
#
#   FUZZ_SECONDS=45  how long the reader fuzzer runs
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${FUZZ_SECONDS:-45}

tools/setup.sh
passed=0
failed=0
run_suite() {  # name, build dir
  echo "== $1"
  if (cd "$2" && ctest --output-on-failure -j "$(nproc)" --timeout 300); then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
}

tools/build.sh release
run_suite "native tests" build

tools/build.sh asan
run_suite "native tests under ASan+UBSan" build-asan

echo "== fuzzing the snapshot reader for ${fuzz_seconds}s"
tools/build.sh fuzz
seeds=build-fuzz/seeds
mkdir -p "$seeds" build-fuzz/corpus
build/bin/snapvm-mksample "$seeds/small.snap" --mem 16K --cpus 1 --density 0.5 >/dev/null
build/bin/snapvm-mksample "$seeds/compact.snap" --mem 32K --cpus 2 --density 1 --writer compact >/dev/null
cp tests/data/sample-v1.0.snap "$seeds/"
if build-fuzz/bin/snapvm_fuzz_reader -max_total_time="$fuzz_seconds" -max_len=400000 -timeout=10 \
     -rss_limit_mb=2048 -print_final_stats=1 build-fuzz/corpus "$seeds" >build-fuzz/fuzz.log 2>&1; then
  grep -E "^Done|stat::number_of_executed_units" build-fuzz/fuzz.log || true
  passed=$((passed + 1))
else
  tail -40 build-fuzz/fuzz.log
  echo "fuzzer found a crash; the input is in $(pwd) (crash-*)"
  failed=$((failed + 1))
fi

echo "== KVM tests inside the emulated arm64 test host (real KVM, nested under QEMU)"
if tools/testhost/kvm-tests.sh; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

echo "== benchmark smoke run (small sizes; see docs/benchmarks.md for real figures)"
if build/bin/snapvm-bench-format --sizes 64M --densities 2,100 --dir build/bench-smoke; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
