#!/usr/bin/env bash
# Boots an emulated KVM test host (QEMU TCG emulating the virtualization
# extensions: EL2 on arm64, SVM on x86_64) and runs a command inside it,
# with a payload folder available at /payload.
#
#   tools/testhost/run.sh [--arch aarch64|x86_64] [--timeout SECONDS] [--payload DIR] [--log FILE] -- COMMAND...
#
# The console streams to stdout and to the log. The exit status is the
# command's; a hang becomes exit 124 after the timeout, with the log kept.
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
[ -e "$out/kernel-image" ] || { echo "testhost: not prepared; run tools/testhost/prepare.sh $arch" >&2; exit 2; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/payload"
cp "$out/busybox/bin/busybox" "$root/bin/busybox"
cp "$here/host-init.sh" "$root/init"
chmod +x "$root/init"
# Modules the host kernel needs for KVM, loaded by the host's init in order.
if ((${#host_modules[@]})); then
  mkdir -p "$root/lib/host-modules"
  moddir=$(ls -d "$out"/kernel/lib/modules/*/ | head -n 1)
  for entry in "${host_modules[@]}"; do
    m=${entry%% *}  # module path, then any parameters
    params=${entry#"$m"}
    name=$(basename "$m").ko
    if [ -e "$moddir/kernel/$m.ko" ]; then cp "$moddir/kernel/$m.ko" "$root/lib/host-modules/$name"
    else xz -dc "$moddir/kernel/$m.ko.xz" > "$root/lib/host-modules/$name"; fi
    echo "$name$params" >> "$root/lib/host-modules/load-order"
  done
fi
[ -z "$payload" ] || cp -a "$payload/." "$root/payload/"
printf '%q ' "$@" > "$root/payload/run.sh"
echo >> "$root/payload/run.sh"
# Uncompressed: unpacking gzip under instruction emulation costs more than
# QEMU reading a larger file.
(cd "$root" && find . | cpio -o -H newc --quiet) > "$out/host-initrd.cpio"

mkdir -p "$(dirname "$log")"
start=$(date +%s%N)
set +e
timeout --foreground -k 5 "$timeout_s" \
  "${qemu_cmd[@]}" -smp 2 -m 3072 \
    -accel tcg,thread=multi -nographic -no-reboot -monitor none -serial stdio -nic none \
    -kernel "$out/kernel-image" -initrd "$out/host-initrd.cpio" \
    -append "console=$console panic=-1 quiet rdinit=/init" </dev/null 2>&1 | tee "$log"
qemu_rc=${PIPESTATUS[0]}
set -e
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
  # Name where it stopped: the last test started or benchmark step.
  step=$(grep -aE '^\[ RUN +\]|^\[ *[0-9.]+ s\]' "$log" | tail -n 1 || true)
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
