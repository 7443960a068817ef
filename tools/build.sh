#!/usr/bin/env bash
# Configures and builds one snapvm build tree.
#   tools/build.sh            release build in build/
#   tools/build.sh asan       clang-14 ASan+UBSan build in build-asan/: the unit tests, the snapvm command
#                             and the libFuzzer targets, from one tree (checks thread-safety annotations)
#   tools/build.sh tsan       ThreadSanitizer build in build-tsan/ (GCC)
#   (asan and tsan build what their native tests run: the unit tests and the
#   snapvm command; KVM code is checked on a real kernel in the test hosts)
#   tools/build.sh fuzz       only the fuzz targets of build-asan/
#   tools/build.sh static     fully static -O2 build of this machine's architecture in build-ARCH-static/:
#                             what a test host of this architecture runs (tools/testhost/build.sh); no
#                             image import (libarchive is not linked statically)
#   tools/build.sh KIND TARGET...   only those targets (and what they need)
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
[ $# -gt 0 ] && shift
jobs=$(nproc)
targets=()
case "$kind" in
  release) dir=build; args=() ;;
  # One sanitizer tree for the unit tests and the fuzzers (a second
  # instrumented build of the same libraries cost every CI run minutes).
  # -O2 with assertions kept: clang builds this tree as fast at -O2 as at -O1
  # (9 min either way here), and the JSON fuzzers run 7-10 % more inputs.
  asan|fuzz)
    dir=build-asan
    args=(-DSNAPVM_SANITIZE=ON -DSNAPVM_FUZZ=ON -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14
          -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g")
    if [ "$kind" = asan ]; then targets=(snapvm_unit_tests snapvm_fuzzers); else targets=(snapvm_fuzzers); fi ;;
  # -O1: enough for ThreadSanitizer (its docs ask for -O1 or more), and quicker to build than -O2.
  tsan) dir=build-tsan; args=(-DSNAPVM_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g -DNDEBUG")
        targets=(snapvm_unit_tests) ;;
  # -O2 rather than CMake's -O3: a VMM waits on the kernel, not on loops
  # that -O3 would unroll, and every CI run pays for this build.
  static) dir=build-$(uname -m)-static
          args=(-DSNAPVM_STATIC=ON -DSNAPVM_TESTS=ON -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG"
                "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG") ;;
  *) echo "build.sh: unknown build kind '$kind' (release, asan, tsan, static, fuzz)" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && targets=("$@")
cmake -S . -B "$dir" -G Ninja "${args[@]}" >/dev/null
ninja -C "$dir" -j "$jobs" "${targets[@]}" | { grep -v '^\[' || true; }
echo "build.sh: $kind build ready in $dir/"
