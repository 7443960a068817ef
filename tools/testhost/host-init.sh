#!/bin/busybox sh
# /init of the emulated KVM test host: mount the basics, run the payload's
# run.sh, report its exit status on the console, power off.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t cgroup2 none /sys/fs/cgroup   # limits for snapvm jail
# Snapshots live here; a restored VM reading a hole of its tmpfs-backed RAM
# mapping allocates that page in the tmpfs, so give it room (the default is 50%).
mount -t tmpfs -o size=75% tmp /tmp
ip link set lo up
if [ -e /lib/host-modules/load-order ]; then  # KVM as modules (x86_64)
  while read -r m params; do insmod "/lib/host-modules/$m" $params; done < /lib/host-modules/load-order
fi
# x86_64: keep KVM from live-patching the host kernel (hold-kvm-keys.c).
if [ -x /bin/hold-kvm-keys ] && [ -c /dev/kvm ]; then
  /bin/hold-kvm-keys &
  sleep 0.2
fi
echo "SNAPVM-TESTHOST-BOOTED kvm=$([ -c /dev/kvm ] && echo yes || echo no) cpus=$(nproc)"
cd /payload
sh /payload/run.sh
echo "SNAPVM-TESTHOST-EXIT $?"
sync
poweroff -f
