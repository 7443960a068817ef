#include "devices/serial_8250.h"

#include <cstring>

#include "base/byte_codec.h"

namespace snapvm {
namespace {

enum Reg : uint64_t { kData = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7 };
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kIerThri = 0x02;
constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirThri = 0x02;
constexpr uint8_t kIirFifo = 0xc0;
constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kLsrThre = 0x20;
constexpr uint8_t kLsrTemt = 0x40;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kRecordVersion = 1;
constexpr size_t kRecordBytes = 16;

}  // namespace

void Serial8250::mmio_read(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (data.empty() || offset >= 8) return;
  std::lock_guard lock(mu_);
  data[0] = read_reg(offset);
}

void Serial8250::mmio_write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty() || offset >= 8) return;
  std::string_view out;
  char byte = 0;
  {
    std::lock_guard lock(mu_);
    if (offset == kData && (lcr_ & kLcrDlab) == 0) {
      // Sent at once: the holding register is empty again, which is an
      // interrupt when enabled. In loopback the byte goes nowhere.
      if ((mcr_ & kMcrLoop) == 0) {
        byte = static_cast<char>(data[0]);
        out = {&byte, 1};
      }
      thr_empty_pending_ = (ier_ & kIerThri) != 0;
      update_irq();
    } else {
      write_reg(offset, data[0]);
    }
  }
  if (!out.empty() && output_) output_(out);
}

uint8_t Serial8250::read_reg(uint64_t offset) {
  const bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (offset) {
    case kData: return dlab ? dll_ : 0;  // nothing received
    case kIer: return dlab ? dlm_ : ier_;
    case kIir: {
      uint8_t fifo = fifo_enabled_ ? kIirFifo : 0;
      if (thr_empty_pending_) {
        thr_empty_pending_ = false;  // reading IIR acknowledges it
        update_irq();
        return fifo | kIirThri;
      }
      return fifo | kIirNone;
    }
    case kLcr: return lcr_;
    case kMcr: return mcr_;
    case kLsr: return kLsrThre | kLsrTemt;
    case kMsr: return modem_status();
    case kScr: return scr_;
  }
  return 0;
}

void Serial8250::write_reg(uint64_t offset, uint8_t value) {
  const bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (offset) {
    case kData: dll_ = value; break;  // DLAB set: divisor latch low
    case kIer:
      if (dlab) {
        dlm_ = value;
      } else {
        // Enabling the transmit-empty interrupt with an empty holding
        // register raises it at once: the driver starts sending that way.
        if ((value & kIerThri) != 0 && (ier_ & kIerThri) == 0) thr_empty_pending_ = true;
        if ((value & kIerThri) == 0) thr_empty_pending_ = false;
        ier_ = value & 0x0f;
        update_irq();
      }
      break;
    case kIir: fifo_enabled_ = (value & kFcrEnable) != 0; break;  // FCR
    case kLcr: lcr_ = value; break;
    case kMcr: mcr_ = value & 0x1f; break;
    case kScr: scr_ = value; break;
    default: break;  // LSR and MSR are read-only
  }
}

uint8_t Serial8250::modem_status() const {
  if ((mcr_ & kMcrLoop) == 0) return 0xb0;  // carrier, data set ready, clear to send
  // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD (the driver's probe).
  return static_cast<uint8_t>(((mcr_ & 0x02) ? 0x10 : 0) | ((mcr_ & 0x01) ? 0x20 : 0) | ((mcr_ & 0x04) ? 0x40 : 0) |
                              ((mcr_ & 0x08) ? 0x80 : 0));
}

void Serial8250::update_irq() {
  bool level = thr_empty_pending_;
  if (level != irq_level_) {
    irq_level_ = level;
    if (irq_) irq_(level);
  }
}

std::vector<uint8_t> Serial8250::save() const {
  std::lock_guard lock(mu_);
  ByteWriter w;
  w.u8(kRecordVersion);
  for (uint8_t v : {dll_, dlm_, ier_, lcr_, mcr_, scr_}) w.u8(v);
  w.u8(fifo_enabled_ ? 1 : 0);
  w.u8(thr_empty_pending_ ? 1 : 0);
  w.bytes(std::vector<uint8_t>(kRecordBytes - 9, 0));
  return w.take();
}

Status Serial8250::restore(std::span<const uint8_t> saved) {
  if (saved.size() != kRecordBytes || saved[0] != kRecordVersion) {
    return make_error(ErrorCode::kDataLoss, "8250 UART record: {} bytes, version {}; expected {} bytes, version {}",
                      saved.size(), saved.empty() ? 0 : saved[0], kRecordBytes, kRecordVersion);
  }
  std::lock_guard lock(mu_);
  dll_ = saved[1];
  dlm_ = saved[2];
  ier_ = saved[3] & 0x0f;
  lcr_ = saved[4];
  mcr_ = saved[5] & 0x1f;
  scr_ = saved[6];
  fifo_enabled_ = saved[7] != 0;
  thr_empty_pending_ = saved[8] != 0 && (ier_ & kIerThri) != 0;
  irq_level_ = !thr_empty_pending_;  // force the line to the restored level
  update_irq();
  return {};
}

}  // namespace snapvm
