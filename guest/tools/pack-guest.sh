#!/usr/bin/env bash
# Packs the guest initramfs: snapvm's init (with the agent) as /init, busybox
# for the userland, and the virtio, vsock, network, input (power button) and
# image root (ext4, overlay) modules Debian's kernel keeps as modules, listed
# in load order; the image root's in a list of their own, loaded only by a
# guest that runs an image.
#   pack-guest.sh INIT_BINARY KERNEL_MODULES_DIR BUSYBOX OUT.cpio
set -euo pipefail
init=$1 moddir=$2 busybox=$3 out=$4
guest=$(mktemp -d)
trap 'rm -rf "$guest"' EXIT
mkdir -p "$guest/lib/modules" "$guest/bin" "$guest/sbin" "$guest/usr/bin" "$guest/usr/sbin"
cp "$init" "$guest/init"
cp "$busybox" "$guest/bin/busybox"
ln -s /init "$guest/bin/vsock-connect"
ln -s /init "$guest/bin/fill-memory"
ln -s /init "$guest/bin/probe-tcp"
add_modules() {  # list file, module paths under kernel/ without .ko
  local list=$guest/lib/modules/$1 m src name
  shift
  : > "$list"
  for m in "$@"; do
    src="$moddir/kernel/$m.ko"
    name=$(basename "$src")
    if [ -e "$src" ]; then
      cp "$src" "$guest/lib/modules/$name"
    elif [ -e "$src.xz" ]; then
      xz -dc "$src.xz" > "$guest/lib/modules/$name"
    else
      continue  # built into this kernel
    fi
    echo "$name" >> "$list"
  done
}
add_modules load-order drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_mmio \
  drivers/block/virtio_blk drivers/char/hw_random/virtio-rng \
  net/vmw_vsock/vsock net/vmw_vsock/vmw_vsock_virtio_transport_common \
  net/vmw_vsock/vmw_vsock_virtio_transport net/vmw_vsock/vsock_loopback \
  drivers/input/evdev drivers/input/keyboard/gpio_keys drivers/acpi/button \
  net/core/failover drivers/net/net_failover drivers/net/virtio_net
add_modules load-order-image lib/crc16 crypto/crc32c_generic fs/mbcache fs/jbd2/jbd2 fs/ext4/ext4 fs/overlayfs/overlay
(cd "$guest" && find . | cpio -o -H newc --quiet) > "$out"
