// A 16550A UART (the PC's COM1 at I/O port 0x3f8, IRQ 4) as far as a Linux
// console needs it: transmit is always ready, the FIFO and line registers
// read back what was written, modem-control loopback answers the driver's
// probe, and the transmit-empty interrupt paces the tty layer's writes.
// Nothing is received yet. Offsets are from the base port.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "devices/console_device.h"

namespace snapvm {

class Serial8250 final : public ConsoleDevice {
 public:
  Serial8250(OutputFn output, IrqFn irq) : output_(std::move(output)), irq_(std::move(irq)) {}

  void mmio_read(uint64_t offset, std::span<uint8_t> data) override;
  void mmio_write(uint64_t offset, std::span<const uint8_t> data) override;

  std::vector<uint8_t> save() const override;
  Status restore(std::span<const uint8_t> saved) override;

 private:
  uint8_t read_reg(uint64_t offset);
  void write_reg(uint64_t offset, uint8_t value);
  uint8_t modem_status() const;
  void update_irq();  // with mu_ held

  mutable std::mutex mu_;  // the registers below and the irq level
  OutputFn output_;
  IrqFn irq_;
  uint8_t dll_ = 0x0c, dlm_ = 0, ier_ = 0, lcr_ = 0x03, mcr_ = 0x08, scr_ = 0;
  bool fifo_enabled_ = false;
  bool thr_empty_pending_ = false;  // transmit-empty interrupt not yet acknowledged
  bool irq_level_ = false;
};

}  // namespace snapvm
