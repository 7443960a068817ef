# Sourced by the test-host scripts: what differs between the two emulated
# hosts. Sets out, deb_arch, kernel_flavour, qemu_pkg, qemu_cmd (an array),
# console, host_cmdline (added to the host kernel's) and host_modules
# (loaded in the host before anything runs), and which QEMU and host kernel
# the host runs; each architecture has its own default (below), and
# docs/benchmarks.md ("x86_64 in the gate") the numbers behind them:
#   TESTHOST_QEMU=10      QEMU 10 from Debian's bookworm-backports, installed
#   TESTHOST_QEMU=7.2     Debian 12's own QEMU, unpacked into $out/qemu-7.2
#   TESTHOST_KERNEL=6.12  the host runs Linux 6.12 from bookworm-backports
#   TESTHOST_KERNEL=6.1   the host runs Debian 12's kernel
# The guest's kernel is Debian 12's 6.1 in every case.
arch=$1
case "$arch" in
  aarch64)
    out=${TESTHOST_DIR:-build-testhost}
    deb_arch=arm64 kernel_flavour=arm64 qemu_pkg=qemu-system-arm
    # EL2 emulation gives the host kernel a real /dev/kvm (VHE, GICv3).
    qemu_bin=qemu-system-aarch64
    qemu_cmd=(-M virt,virtualization=on,gic-version=3 -cpu max)
    console=ttyAMA0
    # QEMU 10 and Linux 6.12 from bookworm-backports: the whole suite in
    # 365 s of test-host time against 757 s on Debian 12's QEMU and kernel.
    default_qemu=10 default_kernel=6.12
    host_cmdline=""
    host_modules=(drivers/net/tun drivers/net/veth)  # taps for virtio-net, veths for its benchmark
    ;;
  x86_64)
    out=${TESTHOST_DIR:-build-testhost-x86_64}
    deb_arch=amd64 kernel_flavour=amd64 qemu_pkg=qemu-system-x86
    # -cpu max emulates SVM with nested paging; kvm-amd then offers /dev/kvm.
    qemu_bin=qemu-system-x86_64
    qemu_cmd=(-M q35 -cpu max)
    console=ttyS0
    # Debian 12's QEMU on shadow paging (npt=0, below): with QEMU 10 a
    # 4-vCPU guest on shadow paging printed nothing in 400 s, and on nested
    # paging clones reset and the host's kernel corrupted itself.
    default_qemu=7.2 default_kernel=6.1
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
    # suite is measured with. npt=0: the host's KVM uses shadow paging, not
    # the nested paging QEMU emulates, under which restored clones reset
    # (about 1 in 17 with QEMU 10 and Linux 6.12) and the host's own kernel
    # corrupts its memory (docs/benchmarks.md, "x86_64 in the gate");
    # TESTHOST_NPT=1 puts nested paging back, for hunting that.
    host_modules=(virt/lib/irqbypass drivers/crypto/ccp/ccp arch/x86/kvm/kvm
                  "arch/x86/kvm/kvm-amd ${TESTHOST_KVM_AMD_PARAMS:-nested=0 vgif=0 vls=0 avic=0 lbrv=0 npt=${TESTHOST_NPT:-0}}"
                  drivers/net/tun drivers/net/veth)
    ;;
  *) echo "testhost: unknown architecture '$arch' (aarch64, x86_64)" >&2; exit 2 ;;
esac
host_qemu=${TESTHOST_QEMU:-$default_qemu}
host_kernel=${TESTHOST_KERNEL:-$default_kernel}
case "$host_qemu" in 10|7.2) ;; *) echo "testhost: TESTHOST_QEMU is 10 or 7.2, not '$host_qemu'" >&2; exit 2 ;; esac
case "$host_kernel" in 6.12|6.1) ;; *) echo "testhost: TESTHOST_KERNEL is 6.12 or 6.1, not '$host_kernel'" >&2; exit 2 ;; esac
# Debian 12's QEMU runs unpacked beside the installed one (prepare.sh), with
# the installed firmware.
if [ "$host_qemu" = 7.2 ]; then
  qemu_bin=$out/qemu-7.2/usr/bin/$qemu_bin
  # x86_64: its firmware from the installed packages, SeaBIOS's own folder
  # first, which QEMU 10's data package no longer links into QEMU's.
  if [ "$arch" = x86_64 ]; then qemu_cmd+=(-L /usr/share/seabios -L /usr/share/qemu); fi
  # Its TCG is a loadable module, which must be its own version's.
  if [ -d "$out/qemu-7.2/usr/lib/$(uname -m)-linux-gnu/qemu" ]; then
    export QEMU_MODULE_DIR=$PWD/$out/qemu-7.2/usr/lib/$(uname -m)-linux-gnu/qemu
  fi
fi
qemu_cmd=("$qemu_bin" "${qemu_cmd[@]}")
# The host kernel's folder (its image and modules); $out/kernel is the guest's.
host_kernel_dir=$out/kernel
if [ "$host_kernel" = 6.12 ]; then host_kernel_dir=$out/host-kernel-6.12; fi
