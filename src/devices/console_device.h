// The guest console as the machine sees it, whatever the UART: bytes the
// guest writes go to an output callback, the interrupt line to an irq
// callback, and the registers a guest programs are saved in snapshots.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "devices/mmio_bus.h"

namespace snapvm {

class ConsoleDevice : public MmioDevice {
 public:
  using OutputFn = std::function<void(std::string_view)>;
  using IrqFn = std::function<void(bool level)>;

  // A versioned record of the guest-visible registers; restore() refuses a
  // record of another shape and sets the interrupt line to match.
  virtual std::vector<uint8_t> save() const = 0;
  virtual Status restore(std::span<const uint8_t> saved) = 0;
};

}  // namespace snapvm
