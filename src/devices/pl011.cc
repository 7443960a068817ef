#include "devices/pl011.h"

#include <cstring>

#include "base/byte_codec.h"
#include "devices/register_io.h"

namespace snapvm {
namespace {

enum Reg : uint64_t {
  kDr = 0x000,
  kFr = 0x018,
  kIbrd = 0x024,
  kFbrd = 0x028,
  kLcrH = 0x02c,
  kCr = 0x030,
  kIfls = 0x034,
  kImsc = 0x038,
  kRis = 0x03c,
  kMis = 0x040,
  kIcr = 0x044,
  kDmacr = 0x048,
};
constexpr uint32_t kFrRxEmpty = 1u << 4;
constexpr uint32_t kFrTxEmpty = 1u << 7;
constexpr uint32_t kIntTx = 1u << 5;
// PeriphID0-3 then CellID0-3 at 0xFE0..0xFFC: a PL011 r1p4 PrimeCell.
constexpr uint8_t kIds[8] = {0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1};

}  // namespace

// Record: u32 version (1), then IBRD, FBRD, LCR_H, CR, IFLS, IMSC, DMACR.
constexpr uint32_t kStateVersion = 1;
constexpr size_t kStateBytes = 8 * 4;

std::vector<uint8_t> Pl011::save() const {
  std::lock_guard lock(mu_);
  ByteWriter w;
  w.u32(kStateVersion);
  for (uint32_t r : {ibrd_, fbrd_, lcr_h_, cr_, ifls_, imsc_, dmacr_}) w.u32(r);
  return w.take();
}

Status Pl011::restore(std::span<const uint8_t> saved) {
  ByteReader r(saved, 0, "PL011 state");
  uint32_t version = r.u32();
  if (!r.ok() || version != kStateVersion || saved.size() != kStateBytes) {
    return make_error(ErrorCode::kDataLoss, "PL011 state: {} bytes of version {}, expected {} bytes of version {}",
                      saved.size(), version, kStateBytes, kStateVersion);
  }
  std::lock_guard lock(mu_);
  for (uint32_t* reg : {&ibrd_, &fbrd_, &lcr_h_, &cr_, &ifls_, &imsc_, &dmacr_}) *reg = r.u32();
  imsc_ &= 0x7ff;
  irq_level_ = !((raw_interrupts() & imsc_) != 0);  // force the line to be driven
  update_irq();
  return {};
}

uint32_t Pl011::raw_interrupts() const {
  // Characters leave at once, so the transmit FIFO is always below its level.
  return kIntTx;
}

void Pl011::update_irq() {
  bool level = (raw_interrupts() & imsc_) != 0;
  if (level != irq_level_) {
    irq_level_ = level;
    if (irq_) irq_(level);
  }
}

void Pl011::mmio_read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  uint32_t v = 0;
  switch (offset) {
    case kDr: v = 0; break;
    case kFr: v = kFrRxEmpty | kFrTxEmpty; break;
    case kIbrd: v = ibrd_; break;
    case kFbrd: v = fbrd_; break;
    case kLcrH: v = lcr_h_; break;
    case kCr: v = cr_; break;
    case kIfls: v = ifls_; break;
    case kImsc: v = imsc_; break;
    case kRis: v = raw_interrupts(); break;
    case kMis: v = raw_interrupts() & imsc_; break;
    case kDmacr: v = dmacr_; break;
    default:
      if (offset >= 0xfe0 && offset < 0x1000) v = kIds[(offset - 0xfe0) / 4];
      break;
  }
  store_register(data, v);
}

void Pl011::mmio_write(uint64_t offset, std::span<const uint8_t> data) {
  uint32_t v = load_register(data);
  std::lock_guard lock(mu_);
  switch (offset) {
    case kDr: {
      char c = static_cast<char>(v & 0xff);
      if (output_) output_({&c, 1});
      break;
    }
    case kIbrd: ibrd_ = v; break;
    case kFbrd: fbrd_ = v; break;
    case kLcrH: lcr_h_ = v; break;
    case kCr: cr_ = v; break;
    case kIfls: ifls_ = v; break;
    case kImsc: imsc_ = v & 0x7ff; break;
    case kIcr: break;  // TX cannot be cleared while the FIFO stays empty
    case kDmacr: dmacr_ = v; break;
    default: break;
  }
  update_irq();
}

}  // namespace snapvm
