# Sourced by the test-host scripts: what differs between the two emulated
# hosts. Sets out, deb_arch, kernel_flavour, qemu_pkg, qemu_cmd (an array),
# console, host_cmdline (added to the host kernel's) and host_modules
# (loaded in the host before anything runs).
arch=$1
case "$arch" in
  aarch64)
    out=${TESTHOST_DIR:-build-testhost}
    deb_arch=arm64 kernel_flavour=arm64 qemu_pkg=qemu-system-arm
    # EL2 emulation gives the host kernel a real /dev/kvm (VHE, GICv3).
    qemu_cmd=(qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max)
    console=ttyAMA0
    host_cmdline=""
    host_modules=(drivers/net/tun drivers/net/veth)  # taps for virtio-net, veths for its benchmark
    ;;
  x86_64)
    out=${TESTHOST_DIR:-build-testhost-x86_64}
    deb_arch=amd64 kernel_flavour=amd64 qemu_pkg=qemu-system-x86
    # -cpu max emulates SVM with nested paging; kvm-amd then offers /dev/kvm.
    qemu_cmd=(qemu-system-x86_64 -M q35 -cpu max)
    console=ttyS0
    # idle=poll: an idle host CPU polls instead of halting, so waking it
    # needs no IPI (one host CPU was seen halted for minutes while the
    # other kept sending it IPIs and a guest vCPU waited for it). The TSC
    # stays as Linux judges it (unsynchronised, so the host runs on the
    # HPET): with tsc=reliable, guests stalled with both host CPUs idle.
    host_cmdline="idle=poll"
    # kvm-amd without nested SVM for our guests and without the SVM extras
    # (virtual GIF, virtual VMLOAD/VMSAVE, AVIC, LBR virtualization): set
    # while chasing the host's lockups, whose cause turned out to be kernel
    # text patching (see hold-kvm-keys.c); kept as the configuration the
    # suite is measured with.
    host_modules=(virt/lib/irqbypass drivers/crypto/ccp/ccp arch/x86/kvm/kvm
                  "arch/x86/kvm/kvm-amd ${TESTHOST_KVM_AMD_PARAMS:-nested=0 vgif=0 vls=0 avic=0 lbrv=0}"
                  drivers/net/tun drivers/net/veth)
    ;;
  *) echo "testhost: unknown architecture '$arch' (aarch64, x86_64)" >&2; exit 2 ;;
esac
