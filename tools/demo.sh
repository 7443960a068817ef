#!/usr/bin/env bash
# The main job, from a fresh machine: install, build, then
#  1. for x86_64 and for arm64: boot a Linux guest to its init with `snapvm
#     run` (natively where this machine's own KVM runs that guest, otherwise
#     inside the emulated KVM test host of that architecture, saying which),
#     run commands in it through the guest agent, snapshot it, restore it in
#     a new process (printing the restore timing breakdown), run a command in
#     the restored guest, and power it off;
#     then run a container image (imported on this machine) as a microVM,
#     bake it into a warm snapshot, serve it from a pool and fetch a page
#     from taken clones, with the timings;
#  2. write a snapshot of a synthetic 256 MiB machine, inspect it, verify
#     it, and time opening and copy-on-write mapping it.
#
#   DEMO_ARCHES="aarch64 x86_64"   which guests to boot
#   TESTHOST_QEMU, TESTHOST_KERNEL, TESTHOST_NPT   the emulated hosts' QEMU, kernel
#                                  and paging (tools/testhost/arch.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh release
out=${DEMO_DIR:-build/demo}
mkdir -p "$out"

echo
echo "== boot a guest (2 vCPUs, 256 MiB), run commands in it, snapshot it, restore it in a new process, run a command there"
# Runs in the test host (or natively): boot in the background, wait for the
# guest's readiness line, run commands through the agent, power off.
cat > "$out/boot-demo.sh" <<'DEMO'
dir=$1; kernel=$2; initrd=$3; snapvm=$4
# Every VMM's exit status is checked: one the demo does not expect (159 is
# a seccomp filter's stop, whose line is printed above) fails the demo.
expect_status() {  # WHAT EXPECTED ACTUAL
  [ "$3" -eq "$2" ] && return 0
  echo "FAILED: $1 exited with status $3, expected $2"
  exit 1
}
rm -f "$dir/console.log"
start=$(cut -d' ' -f1 /proc/uptime)
"$snapvm" run --kernel "$kernel" --initrd "$initrd" --mem 256M --cpus 2 --vsock "$dir/demo.vsock" \
  --api "$dir/demo.sock" --console "$dir/console.log" &
vmm=$!
i=0
until grep -q SNAPVM-GUEST-READY "$dir/console.log" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 1200 ] || { echo "guest did not come up"; kill $vmm; exit 1; }; sleep 0.1
done
ready=$(cut -d' ' -f1 /proc/uptime)
grep SNAPVM-GUEST-READY "$dir/console.log"
echo "guest ready $(awk "BEGIN {print $ready - $start}") s after snapvm run"
echo "\$ snapvm exec demo.vsock -- uname -a"
"$snapvm" exec "$dir/demo.vsock" -- uname -a
echo "\$ snapvm exec demo.vsock -- sh -c 'nproc; grep MemTotal /proc/meminfo'"
"$snapvm" exec "$dir/demo.vsock" -- sh -c 'nproc; grep MemTotal /proc/meminfo'
"$snapvm" exec "$dir/demo.vsock" -- sh -c 'echo "written before the snapshot" > /tmp/note'
echo "\$ snapvm snapshot demo.sock demo.snap"
"$snapvm" snapshot "$dir/demo.sock" "$dir/demo.snap"
kill $vmm; status=0; wait $vmm 2>/dev/null || status=$?
expect_status "the booted VM, stopped with SIGTERM," 143 $status
echo "\$ snapvm inspect demo.snap (first lines)"
"$snapvm" inspect "$dir/demo.snap" | head -6
echo "\$ snapvm restore demo.snap --vsock demo2.vsock   (a new process; the first VM is gone)"
"$snapvm" restore "$dir/demo.snap" --vsock "$dir/demo2.vsock" --console /dev/null &
clone=$!
i=0
until "$snapvm" exec "$dir/demo2.vsock" -- true 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "restored guest did not answer"; kill $clone; exit 1; }; sleep 0.1
done
echo "\$ snapvm exec demo2.vsock -- cat /tmp/note; uptime"
"$snapvm" exec "$dir/demo2.vsock" -- sh -c 'cat /tmp/note; uptime'
"$snapvm" exec "$dir/demo2.vsock" -- poweroff -f >/dev/null 2>&1
status=0; wait $clone || status=$?
echo "the restored VM exited with status $status after its guest powered off"
expect_status "the restored VM" 0 $status

# A container image (imported on the build host: tools/testhost/pack-image.sh)
# run as a microVM, baked into a warm snapshot, served from a pool.
store=$(dirname "$kernel")/images
echo
echo "\$ snapvm run --image web --entrypoint /bin/sh -- -c 'id; echo \$GREETING; cat /www/index.html'"
"$snapvm" run --image web --store "$store" --kernel "$kernel" --initrd "$initrd" --mem 256M \
  --entrypoint /bin/sh -- -c 'id; echo $GREETING; cat /www/index.html' || expect_status "snapvm run --image" 0 $?
echo "\$ snapvm bake web web.snap   (boot, start httpd as user app, wait for port 8080, snapshot)"
status=0
"$snapvm" bake web "$dir/web.snap" --store "$store" --kernel "$kernel" --initrd "$initrd" --mem 256M \
  --console /dev/null >"$dir/bake.log" 2>&1 || status=$?
grep -E "ready|started" "$dir/bake.log" || cat "$dir/bake.log"
expect_status "snapvm bake" 0 $status
echo "\$ snapvm pool serve web.snap --size 2 --max 4 --port 8080 &"
"$snapvm" pool serve "$dir/web.snap" --socket "$dir/web.pool" --size 2 --max 4 --port 8080 --allow-dir "$store" \
  2>"$dir/pool.log" &
pool=$!
i=0
until "$snapvm" pool status --json --socket "$dir/web.pool" 2>/dev/null | grep -q '"ready":2'; do
  i=$((i + 1)); [ $i -lt 1200 ] || { echo "the pool did not fill"; cat "$dir/pool.log"; kill $pool; exit 1; }; sleep 0.1
done
for n in 1 2; do
  echo "\$ snapvm pool take; wget http://ADDRESS/"
  start=$(cut -d' ' -f1 /proc/uptime)
  taken=$("$snapvm" pool take --socket "$dir/web.pool")
  address=$(echo "$taken" | sed -n 's/.* 8080=\([^ ]*\) .*/\1/p')
  page=$(timeout 30 wget -q -O - "http://$address/") || { echo "FAILED: no page from the clone ($taken)"; exit 1; }
  served=$(cut -d' ' -f1 /proc/uptime)
  echo "$taken"
  echo "served: $page ($(awk "BEGIN {print ($served - $start) * 1000}") ms from take to page, /proc/uptime resolution)"
done
"$snapvm" pool stop --socket "$dir/web.pool"
status=0; wait $pool || status=$?
expect_status "snapvm pool serve" 0 $status
# Each clone is a `snapvm restore` of its own: the pool names any that ended.
if grep -E "ended|seccomp" "$dir/pool.log"; then echo "FAILED: a pooled clone ended"; exit 1; fi
DEMO
for arch in ${DEMO_ARCHES:-aarch64 x86_64}; do
  echo
  echo "=== $arch guest"
  th=$(source tools/testhost/arch.sh "$arch" && echo "$out")  # that test host's folder
  tools/testhost/prepare.sh "$arch" >/dev/null
  if [ "$(uname -m)" = "$arch" ] && tools/testhost/native-kvm.sh 2>/dev/null; then
    tools/testhost/native-guest.sh >/dev/null
    if tools/testhost/native-kvm.sh --probe-boot; then
      echo "(natively on this machine's KVM)"
      echo "\$ snapvm image list   (web: built with umoci and imported by tools/testhost/native-guest.sh)"
      build/bin/snapvm image list --store "$th/native-guest/images"
      sh "$out/boot-demo.sh" "$out" "$th/native-guest/kernel" "$th/native-guest/initrd.cpio" build/bin/snapvm
      continue
    fi
  fi
  echo "(no usable $arch KVM here: booting the emulated $arch KVM test host first; its times are not hardware times)"
  tools/testhost/build.sh "$arch" >/dev/null
  echo "\$ snapvm image list   (web: built with umoci and imported on this machine by tools/testhost/pack-image.sh)"
  build/bin/snapvm image list --store "$th/payload/guest/images"
  cp "$out/boot-demo.sh" "$th/payload/boot-demo.sh"
  tools/testhost/run.sh --arch "$arch" --timeout 600 --payload "$th/payload" --log "$out/boot-console-$arch.log" -- \
    sh /payload/boot-demo.sh /tmp /payload/guest/kernel /payload/guest/initrd.cpio /payload/snapvm
done

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
