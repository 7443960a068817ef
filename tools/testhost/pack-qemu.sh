#!/usr/bin/env bash
# Packs Debian's QEMU for a test host's architecture, with every library it
# loads and the firmware microvm needs, into DIR, so the emulated host can
# run it on its own KVM beside snapvm for the side-by-side benchmark. Run as
# DIR/qemu (a wrapper that uses the packed loader and libraries).
#
#   pack-qemu.sh DIR [x86_64|aarch64]     (default: this machine's)
#
# For this machine's architecture the installed QEMU is packed. For the
# other one, the same packages (those holding the libraries this machine's
# QEMU loads, for the other architecture) are fetched with apt and unpacked.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
arch=${2:-$(uname -m)}
case "$arch" in
  x86_64) system=qemu-system-x86_64 pkg=qemu-system-x86 deb_arch=amd64 loader=ld-linux-x86-64.so.2 ;;
  aarch64) system=qemu-system-aarch64 pkg=qemu-system-arm deb_arch=arm64 loader=ld-linux-aarch64.so.1 ;;
  *) echo "pack-qemu: unknown architecture '$arch'" >&2; exit 2 ;;
esac
local_bin=/usr/bin/$system
[ -x "$local_bin" ] || { echo "pack-qemu: $local_bin missing (tools/testhost/prepare.sh installs it)" >&2; exit 2; }
rm -rf "$dir"
mkdir -p "$dir/lib" "$dir/share"
libs=$(ldd "$local_bin" | awk '/=> \// { print $3 }')
if [ "$arch" = "$(uname -m)" ]; then
  cp "$local_bin" "$dir/$system"
  for lib in $libs; do cp -L "$lib" "$dir/lib/"; done
  cp -L "$(ldd "$local_bin" | awk '/^\t\// { print $1 }' | head -n 1)" "$dir/lib/$loader"
  share=/usr/share/qemu
else
  # The packages that hold this machine's QEMU libraries, for $deb_arch.
  pkgs=("$pkg" libc6)
  for lib in $libs; do
    owner=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(realpath "$lib")" 2>/dev/null || dpkg -S "/usr$lib" 2>/dev/null) ||
      { echo "pack-qemu: no package holds $lib" >&2; exit 1; }
    pkgs+=("${owner%%:*}")
  done
  debs=$(mktemp -d)
  trap 'rm -rf "$debs"' EXIT
  (cd "$debs" && apt-get download $(printf '%s:'"$deb_arch"'\n' "${pkgs[@]}" | sort -u) >/dev/null)
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$debs/root"; done
  cp "$debs/root/usr/bin/$system" "$dir/$system"
  find "$debs/root" -name '*.so*' \( -type f -o -type l \) -path '*-linux-gnu*' -not -path '*/gconv/*' -exec cp -L {} "$dir/lib/" \;
  share=$debs/root/usr/share/qemu
fi
# Debian's QEMU 10 finds SeaBIOS's images in their own package's folder
# (its firmware path), 7.2 through links in its own.
for fw in bios-microvm.bin qboot.rom linuxboot_dma.bin pvh.bin efi-virtio.rom; do
  for from in "$share" "${share%/qemu}/seabios"; do
    if [ -e "$from/$fw" ]; then cp -L "$from/$fw" "$dir/share/"; break; fi
  done
done
cat > "$dir/qemu" <<WRAP
#!/bin/sh
here=\$(dirname "\$0")
exec "\$here/lib/$loader" --library-path "\$here/lib" "\$here/$system" -L "\$here/share" "\$@"
WRAP
chmod +x "$dir/qemu"
echo "pack-qemu: $arch QEMU ($(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo '?')), $(du -sh "$dir" | cut -f1) in $dir"
