#!/usr/bin/env bash
# Takes the uncompressed ELF vmlinux out of an x86 bzImage (the payload its
# setup header points at, xz-compressed in Debian's kernels), for the test of
# booting an ELF vmlinux as Firecracker's x86 guides do.
#
#   tools/testhost/extract-vmlinux.sh BZIMAGE OUT
set -euo pipefail
bzimage=$1 out=$2
field() { od -An -t u"$2" -j "$1" -N "$2" "$bzimage" | tr -d ' '; }
setup_sects=$(field $((0x1f1)) 1)
[ "$setup_sects" != 0 ] || setup_sects=4
payload_offset=$(field $((0x248)) 4)
payload_length=$(field $((0x24c)) 4)
start=$(((setup_sects + 1) * 512 + payload_offset))
magic=$(od -An -t x1 -j "$start" -N 6 "$bzimage" | tr -d ' ')
[ "$magic" = fd377a585a00 ] || { echo "extract-vmlinux: $bzimage: payload is not xz (magic $magic)" >&2; exit 1; }
dd if="$bzimage" bs=64K iflag=skip_bytes,count_bytes skip="$start" count="$payload_length" status=none |
  xz -dc --single-stream > "$out.tmp"
[ "$(head -c 4 "$out.tmp" | od -An -t x1 | tr -d ' ')" = 7f454c46 ] || { echo "extract-vmlinux: no ELF inside $bzimage" >&2; exit 1; }
mv "$out.tmp" "$out"
