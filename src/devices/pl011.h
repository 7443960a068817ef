// A PL011 UART as far as a Linux console needs it: transmit always ready,
// nothing to receive yet, interrupt status and mask, and the PrimeCell ID
// registers the AMBA bus probes.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"

#include "devices/console_device.h"

namespace snapvm {

class Pl011 final : public ConsoleDevice {
 public:
  Pl011(OutputFn output, IrqFn irq) : output_(std::move(output)), irq_(std::move(irq)) {}

  void mmio_read(uint64_t offset, std::span<uint8_t> data) override;
  void mmio_write(uint64_t offset, std::span<const uint8_t> data) override;

  // The registers a guest programs (line control, interrupt mask, ...), as
  // a snapshot keeps them; restore() refuses a record of another shape and
  // sets the interrupt line to match.
  std::vector<uint8_t> save() const override;
  Status restore(std::span<const uint8_t> saved) override;

 private:
  uint32_t raw_interrupts() const;
  void update_irq();  // with mu_ held

  mutable std::mutex mu_;  // the registers below and the irq level
  OutputFn output_;
  IrqFn irq_;
  uint32_t ibrd_ = 0, fbrd_ = 0, lcr_h_ = 0, cr_ = 0x300, ifls_ = 0x12, imsc_ = 0, dmacr_ = 0;
  bool irq_level_ = false;
};

}  // namespace snapvm
