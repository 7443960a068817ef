// An image's root filesystem for the programs the agent starts in it
// (snapvm run --image): with `snapvm.image=DEV` on the kernel command line,
// DEV (the image's ext4, attached read-only) is the lower layer of an
// overlay whose upper layer is a tmpfs. Every VM (and every clone of a
// snapshot, since the tmpfs is guest RAM) writes into its own layer and
// shares the image on the host. /proc, /sys, /dev, /dev/pts and /dev/shm
// are mounted inside. The agent itself stays outside, in the initramfs.
#pragma once

#include <string>

namespace snapvm::guest {

// Does nothing without snapvm.image=; returns a line for the console.
std::string mount_image_root(const std::string& cmdline);

}  // namespace snapvm::guest
