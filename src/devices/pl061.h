// A PL061 GPIO controller: eight lines whose inputs the host drives, with
// the PL061's edge and level interrupt logic and the PrimeCell ID registers
// Linux's AMBA bus probes. The arm64 machine wires one line to a gpio-keys
// KEY_POWER key: the power button the host presses to ask a guest to shut
// down cleanly (Firecracker's SendCtrlAltDel).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/thread_annotations.h"
#include "devices/mmio_bus.h"

namespace snapvm {

class Pl061 final : public MmioDevice {
 public:
  using IrqFn = std::function<void(bool level)>;
  static constexpr uint32_t kLines = 8;

  explicit Pl061(IrqFn irq) : irq_(std::move(irq)) {}

  void mmio_read(uint64_t offset, std::span<uint8_t> data) override;
  void mmio_write(uint64_t offset, std::span<const uint8_t> data) override;

  // Drives input `line` (0-7) high or low, as a button wired to it would;
  // raises the interrupt the guest programmed for that change. Thread-safe.
  void set_input(uint32_t line, bool high);
  // Whether the guest has read `line`'s level since set_input last changed
  // it: a button is held until its driver has seen the press.
  bool guest_saw_input(uint32_t line) const;

  // The registers the guest programs and the input levels, as a snapshot
  // keeps them; restore() refuses a record of another shape.
  std::vector<uint8_t> save() const;
  Status restore(std::span<const uint8_t> saved);

 private:
  uint8_t pin_levels() const REQUIRES(mu_);
  void update_irq() REQUIRES(mu_);

  mutable Mutex mu_;
  IrqFn irq_;
  // Registers, named as in the PL061 manual.
  uint8_t data_ GUARDED_BY(mu_) = 0;   // output latch
  uint8_t dir_ GUARDED_BY(mu_) = 0;    // 1: output
  uint8_t is_ GUARDED_BY(mu_) = 0;     // 1: level-sensitive
  uint8_t ibe_ GUARDED_BY(mu_) = 0;    // 1: both edges
  uint8_t iev_ GUARDED_BY(mu_) = 0;    // 1: rising edge / high level
  uint8_t ie_ GUARDED_BY(mu_) = 0;     // interrupt mask (1: enabled)
  uint8_t ris_ GUARDED_BY(mu_) = 0;    // raw interrupt status
  uint8_t afsel_ GUARDED_BY(mu_) = 0;
  uint8_t inputs_ GUARDED_BY(mu_) = 0;  // what the host drives
  uint8_t seen_ GUARDED_BY(mu_) = 0xff;  // input lines read since their last change
  bool irq_level_ GUARDED_BY(mu_) = false;
};

}  // namespace snapvm
