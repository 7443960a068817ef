#!/usr/bin/env bash
# Boots an emulated KVM test host (QEMU TCG emulating the virtualization
# extensions: EL2 on arm64, SVM on x86_64) and runs a command inside it,
# with a payload folder available at /payload.
#
#   tools/testhost/run.sh [--arch aarch64|x86_64] [--timeout SECONDS] [--payload DIR] [--log FILE] -- COMMAND...
#
# The console streams to stdout and to the log. The exit status is the
# command's; a hang becomes exit 124 after the timeout, and a host whose own
# kernel reports a CPU stuck for two minutes exit 126 at once, each with the
# log kept and the host CPUs' registers (kernel RIPs named) in
# FILE.monitor.log.
# TESTHOST_MEM_MB sets the host's RAM (default 3072); TESTHOST_QEMU_ARGS adds QEMU options
# (e.g. "-d cpu_reset -D FILE" to log why the host itself reset).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
arch=aarch64
timeout_s=600
payload=""
log=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --payload) payload=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "testhost: unknown option $1" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "testhost: no command given (run.sh [options] -- COMMAND...)" >&2; exit 2; }
cd "$top"
source "$here/arch.sh" "$arch"
log=${log:-$out/console.log}
host_kernel_image=$(ls "$host_kernel_dir"/boot/vmlinuz-* 2>/dev/null | head -n 1)
[ -n "$host_kernel_image" ] && [ -e "$out/kernel-image" ] ||
  { echo "testhost: not prepared for QEMU $host_qemu and host kernel $host_kernel; run tools/testhost/prepare.sh $arch" >&2; exit 2; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/payload"
cp "$out/busybox/bin/busybox" "$root/bin/busybox"
cp "$here/host-init.sh" "$root/init"
chmod +x "$root/init"
# Modules the host kernel needs for KVM, loaded by the host's init in order.
if ((${#host_modules[@]})); then
  mkdir -p "$root/lib/host-modules"
  moddir=$(ls -d "$host_kernel_dir"/lib/modules/*/ | head -n 1)
  for entry in "${host_modules[@]}"; do
    m=${entry%% *}  # module path, then any parameters
    params=${entry#"$m"}
    name=$(basename "$m").ko
    if [ -e "$moddir/kernel/$m.ko" ]; then cp "$moddir/kernel/$m.ko" "$root/lib/host-modules/$name"
    else xz -dc "$moddir/kernel/$m.ko.xz" > "$root/lib/host-modules/$name"; fi
    echo "$name$params" >> "$root/lib/host-modules/load-order"
  done
fi
if [ "$arch" = x86_64 ]; then  # see hold-kvm-keys.c
  cc=gcc; [ "$(uname -m)" = x86_64 ] || cc=x86_64-linux-gnu-gcc
  [ "$out/hold-kvm-keys" -nt "$here/hold-kvm-keys.c" ] ||
    "$cc" -O2 -Wall -static -o "$out/hold-kvm-keys" "$here/hold-kvm-keys.c"
  cp "$out/hold-kvm-keys" "$root/bin/hold-kvm-keys"
fi
[ -z "$payload" ] || cp -a "$payload/." "$root/payload/"
printf '%q ' "$@" > "$root/payload/run.sh"
echo >> "$root/payload/run.sh"
# Uncompressed: unpacking gzip under instruction emulation costs more than
# QEMU reading a larger file.
(cd "$root" && find . | cpio -o -H newc --quiet) > "$out/host-initrd.cpio"

mkdir -p "$(dirname "$log")"
# The monitor on two FIFOs (QEMU's pipe: chardev) lets this script ask a
# hung host where its CPUs are before killing it.
mkfifo "$root/monitor.in" "$root/monitor.out"
monitor_log="${log%.log}.monitor.log"
: > "$monitor_log"
cat "$root/monitor.out" >> "$monitor_log" &
monitor_reader=$!
# A hung host's CPUs: three register samples a second apart (stuck or
# looping), then each kernel RIP named from /proc/kallsyms of a second host
# booted with the same kernel (nokaslr keeps addresses the same; Debian's
# System.map is a stub).
hang_report() {
  for i in 1 2 3; do
    echo "info registers -a" > "$root/monitor.in"
    sleep 1
  done
  local rips
  rips=$(grep -aoE 'RIP=ffffffff[0-9a-f]+' "$monitor_log" | tail -n 12 | sed 's/RIP=//' | sort -u | tr '\n' ' ')
  echo "testhost: the host's CPUs were at: ${rips:-no kernel address} (registers in $monitor_log)" >&2
  [ -n "$rips" ] && [ -z "${TESTHOST_NO_NAMES:-}" ] || return 0
  mkdir -p "$root/names"
  cat > "$root/names/names.sh" <<NAMES
awk -v list="$rips" 'BEGIN { n = split(list, want, " ") }
  { for (i = 1; i <= n; i++) if (\$1 <= want[i] && \$1 > best[i]) { best[i] = \$1; name[i] = \$3 } }
  END { for (i = 1; i <= n; i++) print "testhost:   " want[i] " in " name[i] }' /proc/kallsyms
NAMES
  TESTHOST_NO_NAMES=1 "$here/run.sh" --arch "$arch" --timeout 120 --payload "$root/names" \
    --log "${log%.log}.names.log" -- sh /payload/names.sh 2>/dev/null | grep -a '^testhost:   ' >&2 || true
}
start=$(date +%s%N)
set +e
"${qemu_cmd[@]}" -smp 2 -m "${TESTHOST_MEM_MB:-3072}" \
    -accel tcg,thread=multi -nographic -no-reboot -monitor "pipe:$root/monitor" -serial stdio -nic none \
    -kernel "$host_kernel_image" -initrd "$out/host-initrd.cpio" \
    -append "console=$console panic=-1 quiet nokaslr $host_cmdline rdinit=/init" ${TESTHOST_QEMU_ARGS:-} \
    </dev/null > >(tee "$log") 2>&1 &
qemu_pid=$!
# The sleep must die with the watchdog: left behind, it would hold this
# script's output pipe open until the timeout.
( sleep "$timeout_s" & sleeper=$!
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  wait "$sleeper"
  if kill -0 "$qemu_pid" 2>/dev/null; then
    touch "$root/timed-out"
    hang_report
    kill "$qemu_pid"; sleep 5; kill -9 "$qemu_pid" 2>/dev/null
    trap - TERM
  fi ) &
watchdog=$!
# The host's own kernel reporting one of its CPUs stuck for two minutes or
# more (its soft-lockup watchdog, on the console at the start of a line) is
# a host that will not come back: seen in the emulated x86_64 host, a CPU
# held inside KVM's guest entry while another waits for it to take an IPI
# (docs/benchmarks.md, "x86_64 in the gate"). End it now rather than at the
# timeout; the caller decides what that means (exit 126).
( while sleep 10; do
    if grep -aqE '^\[ *[0-9.]+\] watchdog: BUG: soft lockup - CPU#[0-9]+ stuck for (1[2-9][0-9]|[2-9][0-9][0-9]|[0-9]{4,})s!' "$log"; then
      touch "$root/locked-up"
      hang_report
      kill "$qemu_pid" 2>/dev/null; sleep 5; kill -9 "$qemu_pid" 2>/dev/null
      exit 0
    fi
  done ) &
lockup_watch=$!
wait "$qemu_pid"
qemu_rc=$?
kill "$watchdog" "$lockup_watch" 2>/dev/null; wait "$watchdog" "$lockup_watch" 2>/dev/null
kill "$monitor_reader" 2>/dev/null
sleep 0.2  # let tee finish the console
set -e
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [ -e "$root/locked-up" ]; then
  echo "testhost: the host's own kernel locked up: $(grep -aE 'watchdog: BUG: soft lockup' "$log" | tail -n 1)" >&2
  echo "testhost: console log kept in $log" >&2
  exit 126
fi
if [ -e "$root/timed-out" ]; then
  # Name where it stopped: the last test started (in each shard, see
  # shards.sh) or benchmark step.
  step=$(grep -aE '^(\[[0-9]\] )?\[ RUN +\]|^\[ *[0-9.]+ s\]' "$log" |
         awk '{ shard = /^\[[0-9]\] / ? substr($0, 1, 3) : "" } { last[shard] = $0 } END { for (s in last) print last[s] }' |
         paste -sd ';' || true)
  echo "testhost: timed out after ${timeout_s}s; last step: ${step:-none seen}; the console's last lines:" >&2
  tail -n 15 "$log" >&2
  echo "testhost: console log kept in $log" >&2
  exit 124
fi
rc=$(sed -n 's/.*SNAPVM-TESTHOST-EXIT \([0-9]*\).*/\1/p' "$log" | tail -n 1)
if [ -z "$rc" ]; then
  echo "testhost: the host ended without reporting an exit status (QEMU exit $qemu_rc); log in $log" >&2
  exit 125
fi
echo "testhost: command exited $rc, test host up $((elapsed_ms / 1000)).$((elapsed_ms % 1000 / 100)) s" >&2
exit "$rc"
