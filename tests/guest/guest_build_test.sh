#!/usr/bin/env bash
# `snapvm guest build` from a clean cache, as a new user runs it: Debian's
# kernel and the initramfs land in the folder, `guest show` checks their
# sums, the kernel is a bootable image of this architecture, the initramfs
# holds snapvm's init, busybox and the module lists, and a second build
# leaves the folder alone.
#   tests/guest/guest_build_test.sh [BUILD_DIR]     (default build)
set -euo pipefail
cd "$(dirname "$0")/../.."
snapvm=${1:-build}/bin/snapvm
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "guest build test: $*" >&2; exit 1; }

"$snapvm" guest build --dir "$dir/guest" 2>"$dir/log" || { cat "$dir/log"; fail "the build failed"; }
show=$("$snapvm" guest show --json --dir "$dir/guest") || fail "guest show refused the fresh build"
grep -q '"verified":true' <<<"$show" || fail "guest show: $show"
case "$(uname -m)" in
  x86_64) [ "$(dd if="$dir/guest/kernel" bs=1 skip=514 count=4 2>/dev/null)" = HdrS ] || fail "the kernel is no bzImage" ;;
  aarch64) [ "$(dd if="$dir/guest/kernel" bs=1 skip=56 count=3 2>/dev/null)" = ARM ] || fail "the kernel is no arm64 Image" ;;
esac
members=$(cpio -it --quiet <"$dir/guest/initrd.cpio")
for m in init bin/busybox lib/modules/load-order lib/modules/load-order-image; do
  grep -qx "$m" <<<"$members" || fail "the initramfs has no $m"
done
cmp -s <(cpio -i --quiet --to-stdout init <"$dir/guest/initrd.cpio") "$(dirname "$snapvm")/snapvm-guest-init" ||
  fail "the initramfs's init is not this build's snapvm-guest-init"
stamp=$(stat -c %Y "$dir/guest/manifest")
"$snapvm" guest build --dir "$dir/guest" 2>"$dir/log2" || fail "the second build failed"
grep -q "up to date" "$dir/log2" || fail "the second build did not find the folder up to date: $(cat "$dir/log2")"
[ "$(stat -c %Y "$dir/guest/manifest")" = "$stamp" ] || fail "the second build rewrote the folder"
echo "guest build test: passed ($(sed -n 's/^kernel_package=//p' "$dir/guest/manifest"), $(du -h "$dir/guest/initrd.cpio" | cut -f1) initramfs)"
