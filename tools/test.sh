#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs dependencies, builds,
# runs the native tests (plain and under ASan+UBSan), fuzzes the snapshot
# reader for a bounded time, runs the KVM tests inside the emulated arm64
# test host, and smoke-runs the benchmark.
#
#   FUZZ_SECONDS=40  how long each fuzzer runs
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${FUZZ_SECONDS:-40}

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

echo "== fuzzing the snapshot reader and the virtqueue, ${fuzz_seconds}s each"
tools/build.sh fuzz
seeds=build-fuzz/seeds
mkdir -p "$seeds" build-fuzz/corpus
build/bin/snapvm-mksample "$seeds/small.snap" --mem 16K --cpus 1 --density 0.5 >/dev/null
build/bin/snapvm-mksample "$seeds/compact.snap" --mem 32K --cpus 2 --density 1 --writer compact >/dev/null
cp tests/data/sample-v1.0.snap "$seeds/"
fuzz() {  # target, log, fuzzer arguments...
  local target=$1 log=$2
  shift 2
  if "build-fuzz/bin/$target" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 "$@" >"$log" 2>&1; then
    echo "$target: $(grep -E '^Done' "$log" || true)"
    passed=$((passed + 1))
  else
    tail -40 "$log"
    echo "$target found a crash; the input is in $(pwd) (crash-*)"
    failed=$((failed + 1))
  fi
}
fuzz snapvm_fuzz_reader build-fuzz/fuzz-reader.log -max_len=400000 build-fuzz/corpus "$seeds"
mkdir -p build-fuzz/corpus-virtqueue
fuzz snapvm_fuzz_virtqueue build-fuzz/fuzz-virtqueue.log -max_len=70000 build-fuzz/corpus-virtqueue

echo "== KVM tests inside the emulated arm64 test host (real KVM, nested under QEMU)"
if tools/testhost/kvm-tests.sh; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

echo "== restore benchmark inside the test host (256 MiB vs 2 GiB; target 1.2x)"
if tools/testhost/bench.sh restore --reps 3; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

echo "== diff snapshot benchmark inside the test host (1 GiB guest, 1% dirty; docs/benchmarks.md has 2 GiB)"
if tools/testhost/bench.sh diff --mem 1G --percents 1; then
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
