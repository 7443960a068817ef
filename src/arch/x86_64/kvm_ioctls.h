// x86 KVM structures that end in a flexible array, as the kernel lays them
// out. In C++, <linux/kvm.h>'s __DECLARE_FLEX_ARRAY puts an empty struct
// (one byte) before the array, so the array moves (kvm_msrs' entries to
// offset 16, not 8) and sizeof changes with it, and so do the ioctl numbers,
// which encode that size: KVM answers EINVAL or reads the wrong bytes. Code
// here never touches those members; it uses the C offsets and numbers below.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstddef>

namespace snapvm::arch::x86::ioctl {

// Where the array starts in kvm_msrs, kvm_cpuid2 (8) and kvm_msr_list (4).
inline constexpr size_t kMsrsHeader = 8;
inline constexpr size_t kCpuid2Header = 8;
inline constexpr size_t kMsrListHeader = 4;
inline constexpr size_t kXsaveLegacy = 4096;  // kvm_xsave without its extra area

inline constexpr unsigned long kGetMsrIndexList = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x02, 4);
inline constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, 8);
inline constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, 8);
inline constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, 8);
inline constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, 8);
inline constexpr unsigned long kGetCpuid2 = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x91, 8);
inline constexpr unsigned long kGetXsave = _IOC(_IOC_READ, KVMIO, 0xa4, 4096);
inline constexpr unsigned long kSetXsave = _IOC(_IOC_WRITE, KVMIO, 0xa5, 4096);
inline constexpr unsigned long kGetXsave2 = _IOC(_IOC_READ, KVMIO, 0xcf, 4096);

}  // namespace snapvm::arch::x86::ioctl
