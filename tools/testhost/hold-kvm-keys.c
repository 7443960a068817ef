/*
 * Runs in the emulated x86_64 test host before anything else: holds one VM
 * whose only vCPU has its local APIC disabled in hardware (APIC base MSR)
 * and in software (its reset state), and sleeps for good.
 *
 * Why: KVM counts vCPUs with a disabled APIC in two static keys
 * (apic_hw_disabled, apic_sw_disabled). Each time a count goes between 0
 * and 1, which happens whenever test VMs come and go, the host kernel
 * patches its own code live with INT3 breakpoints (text_poke_bp). Under
 * QEMU's multi-threaded TCG that patching was seen to leave both host CPUs
 * looping in the INT3 handler (asm_exc_int3 / exc_int3) for good: the
 * emulated x86_64 host's "lockups". With this VM alive both counts stay at
 * 1 or more, so creating and destroying VMs never patches kernel text.
 *
 * Plain C: <linux/kvm.h>'s flexible arrays (kvm_msrs) have another layout
 * in C++.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MSR_IA32_APICBASE 0x1b
#define APIC_BASE_ADDRESS 0xfee00000ull
#define APIC_BASE_BSP (1ull << 8)

int main(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) {
    perror("hold-kvm-keys: /dev/kvm");
    return 1;
  }
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0 || ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) {
    perror("hold-kvm-keys: creating the VM");
    return 1;
  }
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) {
    perror("hold-kvm-keys: creating the vCPU");
    return 1;
  }
  struct {
    struct kvm_msrs head;
    struct kvm_msr_entry entry;
  } msrs;
  memset(&msrs, 0, sizeof msrs);
  msrs.head.nmsrs = 1;
  msrs.entry.index = MSR_IA32_APICBASE;
  msrs.entry.data = APIC_BASE_ADDRESS | APIC_BASE_BSP; /* enable bit (11) clear */
  if (ioctl(vcpu, KVM_SET_MSRS, &msrs) != 1) {
    perror("hold-kvm-keys: disabling the APIC");
    return 1;
  }
  printf("hold-kvm-keys: holding a VM with a disabled APIC (KVM's APIC static keys stay on)\n");
  fflush(stdout);
  for (;;) pause();
}
