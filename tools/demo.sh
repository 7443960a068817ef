#!/usr/bin/env bash
# The main job, from a fresh machine: install, build, then write a snapshot of
# a synthetic 256 MiB arm64 machine, inspect it, verify it, and time a
# copy-on-write restore mapping. (Booting a real guest on KVM comes with the
# VMM; this shows the snapshot engine it stands on.)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh release
out=${DEMO_DIR:-build/demo}
mkdir -p "$out"
snap="$out/sample.snap"

echo
echo "== write: 256 MiB guest RAM, 2 vCPUs, 25% of pages holding data"
build/bin/snapvm-mksample "$snap" --mem 256M --cpus 2 --density 0.25
echo
echo "== inspect"
build/bin/snapvm inspect "$snap"
echo
echo "== verify"
build/bin/snapvm verify "$snap"
echo
echo "== timings: metadata load and copy-on-write map (independent of RAM size)"
build/bin/snapvm-bench-format --sizes 256M --densities 25 --patterns clustered --dir "$out/bench" |
  grep -E "memory read|zero scan|full write \(|metadata load|copy-on-write map"
