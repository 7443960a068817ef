#!/usr/bin/env bash
# The main job, from a fresh machine: install, build, then
#  1. boot an arm64 Linux guest to its init with `snapvm run` (natively on an
#     arm64 host with /dev/kvm, otherwise inside the emulated KVM test host);
#  2. write a snapshot of a synthetic 256 MiB arm64 machine, inspect it,
#     verify it, and time opening and copy-on-write mapping it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh release
out=${DEMO_DIR:-build/demo}
mkdir -p "$out"

echo
echo "== boot: 2 vCPUs, 256 MiB, Debian's arm64 kernel, snapvm's guest init"
guest_cmdline="console=ttyAMA0 quiet panic=-1 snapvm.poweroff"
if [ "$(uname -m)" = aarch64 ] && [ -c /dev/kvm ]; then
  tools/testhost/prepare.sh >/dev/null
  tools/testhost/native-guest.sh >/dev/null
  guest=build-testhost/native-guest
  time build/bin/snapvm run --kernel "$guest/Image" --initrd "$guest/initrd.cpio" \
    --mem 256M --cpus 2 --cmdline "$guest_cmdline"
else
  echo "(no arm64 /dev/kvm here: booting the emulated KVM test host first; its times are not hardware times)"
  tools/testhost/prepare.sh >/dev/null
  tools/testhost/build-aarch64.sh >/dev/null
  tools/testhost/run.sh --timeout 600 --payload build-testhost/payload --log "$out/boot-console.log" -- \
    sh -c "start=\$(cut -d' ' -f1 /proc/uptime); /payload/snapvm run --kernel /payload/guest/Image \
           --initrd /payload/guest/initrd.cpio --mem 256M --cpus 2 --cmdline '$guest_cmdline'; rc=\$?; \
           end=\$(cut -d' ' -f1 /proc/uptime); \
           echo \"snapvm run: exit \$rc after \$(awk \"BEGIN {print \$end - \$start}\") s (test-host time)\"; exit \$rc"
fi

snap="$out/sample.snap"
echo
echo "== snapshot: write 256 MiB guest RAM, 2 vCPUs, 25% of pages holding data"
build/bin/snapvm-mksample "$snap" --mem 256M --cpus 2 --density 0.25
echo
echo "== inspect"
build/bin/snapvm inspect "$snap"
echo
echo "== verify"
build/bin/snapvm verify "$snap"
echo
echo "== timings: zero scan and write vs machine limits; metadata load and copy-on-write map (independent of RAM size)"
build/bin/snapvm-bench-format --sizes 256M --densities 25 --patterns clustered --dir "$out/bench" |
  grep -E "memory read|zero scan|full write \(|metadata load|copy-on-write map"
