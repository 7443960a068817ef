#include "arch/x86_64/system_devices.h"

#include <cstring>

#include "arch/x86_64/layout.h"

namespace snapvm::arch::x86 {
namespace {

constexpr uint8_t kSleepEnable = 0x20;  // SLP_EN
constexpr uint8_t kI8042ResetCommand = 0xfe;

}  // namespace

// Offsets from kAcpiSleepControlPort: 0 sleep control, 1 sleep status, 2 reset.
void AcpiPowerRegisters::mmio_read(uint64_t /*offset*/, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());  // no wake status to report
}

void AcpiPowerRegisters::mmio_write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  const uint8_t v = data[0];
  if (offset == kAcpiSleepControlPort - kAcpiSleepControlPort) {
    // SLP_TYP in bits 2-4; S5 (what _S5 names) is the only state offered.
    if ((v & kSleepEnable) != 0 && ((v >> 2) & 7) == kAcpiS5SleepType) request_(PowerRequest::kPowerOff);
  } else if (offset == kAcpiResetPort - kAcpiSleepControlPort && v == kAcpiResetValue) {
    request_(PowerRequest::kReset);
  }
}

// Offsets from port 0x60: 0 data, 4 status/command. No keyboard: the status
// reads "nothing to read, ready for a command".
void I8042::mmio_read(uint64_t /*offset*/, std::span<uint8_t> data) { std::memset(data.data(), 0, data.size()); }

void I8042::mmio_write(uint64_t offset, std::span<const uint8_t> data) {
  if (!data.empty() && offset == kI8042CommandPort - kI8042DataPort && data[0] == kI8042ResetCommand) {
    request_(PowerRequest::kReset);
  }
}

}  // namespace snapvm::arch::x86
