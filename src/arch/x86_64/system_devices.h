// The x86_64 machine's power and reset controls on I/O ports: the ACPI
// hardware-reduced sleep control, sleep status and reset registers the FADT
// names, and the i8042 controller's reset line (port 0x64, command 0xfe),
// which Linux tries when told reboot=k or when ACPI reset fails.
#pragma once

#include <functional>

#include "devices/mmio_bus.h"

namespace snapvm::arch::x86 {

enum class PowerRequest { kPowerOff, kReset };
using PowerRequestFn = std::function<void(PowerRequest)>;

class AcpiPowerRegisters final : public MmioDevice {
 public:
  explicit AcpiPowerRegisters(PowerRequestFn request) : request_(std::move(request)) {}
  void mmio_read(uint64_t offset, std::span<uint8_t> data) override;
  void mmio_write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  PowerRequestFn request_;
};

class I8042 final : public MmioDevice {
 public:
  explicit I8042(PowerRequestFn request) : request_(std::move(request)) {}
  void mmio_read(uint64_t offset, std::span<uint8_t> data) override;
  void mmio_write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  PowerRequestFn request_;
};

}  // namespace snapvm::arch::x86
