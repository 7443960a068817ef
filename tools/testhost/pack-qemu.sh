#!/usr/bin/env bash
# Packs this machine's QEMU (Debian's qemu-system-x86 package) with the
# libraries it loads and the microvm firmware into DIR, so the emulated
# x86_64 test host can run it on its own KVM beside snapvm for the
# side-by-side benchmark. Run as DIR/qemu (a wrapper that uses the packed
# loader and libraries).
#   pack-qemu.sh DIR
set -euo pipefail
dir=$1
bin=/usr/bin/qemu-system-x86_64
[ -x "$bin" ] || { echo "pack-qemu: $bin missing (tools/testhost/prepare.sh x86_64 installs it)" >&2; exit 2; }
rm -rf "$dir"
mkdir -p "$dir/lib" "$dir/share"
cp "$bin" "$dir/qemu-system-x86_64"
# Every library the binary loads, the dynamic loader included.
ldd "$bin" | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
  cp -L "$lib" "$dir/lib/"
done
loader=$(basename "$(ldd "$bin" | awk '/^\t\// { print $1 }' | head -n 1)")
for fw in bios-microvm.bin qboot.rom linuxboot_dma.bin pvh.bin; do
  [ -e "/usr/share/qemu/$fw" ] && cp -L "/usr/share/qemu/$fw" "$dir/share/"
done
cat > "$dir/qemu" <<WRAP
#!/bin/sh
here=\$(dirname "\$0")
exec "\$here/lib/$loader" --library-path "\$here/lib" "\$here/qemu-system-x86_64" -L "\$here/share" "\$@"
WRAP
chmod +x "$dir/qemu"
echo "pack-qemu: $(du -sh "$dir" | cut -f1) in $dir ($("$bin" --version | head -n 1))"
