#include "devices/pl061.h"

#include <algorithm>
#include <cstring>

#include "base/byte_codec.h"
#include "devices/register_io.h"

namespace snapvm {
namespace {

enum Reg : uint64_t {
  kDataEnd = 0x400,  // 0x000-0x3fc: GPIODATA, address bits 9:2 mask the lines
  kDir = 0x400,
  kIs = 0x404,
  kIbe = 0x408,
  kIev = 0x40c,
  kIe = 0x410,
  kRis = 0x414,
  kMis = 0x418,
  kIc = 0x41c,
  kAfsel = 0x420,
};
// PeriphID0-3 then CellID0-3 at 0xFE0..0xFFC: a PL061 PrimeCell.
constexpr uint8_t kIds[8] = {0x61, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1};

// Record: u32 version, then DATA, DIR, IS, IBE, IEV, IE, RIS, AFSEL, inputs.
constexpr uint32_t kStateVersion = 1;
constexpr size_t kStateBytes = 4 + 9;

}  // namespace

uint8_t Pl061::pin_levels() const { return static_cast<uint8_t>((data_ & dir_) | (inputs_ & ~dir_)); }

void Pl061::update_irq() {
  // Level-sensitive lines latch nothing: their status follows the level.
  const uint8_t levels = pin_levels();
  const uint8_t active = static_cast<uint8_t>(~(levels ^ iev_));  // level equals the programmed sense
  ris_ = static_cast<uint8_t>((ris_ & ~is_) | (active & is_));
  const bool level = (ris_ & ie_) != 0;
  if (level != irq_level_) {
    irq_level_ = level;
    if (irq_) irq_(level);
  }
}

void Pl061::set_input(uint32_t line, bool high) {
  if (line >= kLines) return;
  MutexLock lock(mu_);
  const uint8_t before = pin_levels();
  const uint8_t bit = static_cast<uint8_t>(1u << line);
  inputs_ = static_cast<uint8_t>(high ? inputs_ | bit : inputs_ & ~bit);
  const uint8_t changed = static_cast<uint8_t>(before ^ pin_levels());
  seen_ = static_cast<uint8_t>(seen_ & ~changed);
  // Edge-sensitive lines latch a change: either way with IBE, else the way
  // IEV names (1: rising).
  const uint8_t rising = static_cast<uint8_t>(changed & pin_levels());
  const uint8_t falling = static_cast<uint8_t>(changed & ~pin_levels());
  const uint8_t edges = static_cast<uint8_t>((changed & ibe_) | (rising & iev_ & ~ibe_) | (falling & ~iev_ & ~ibe_));
  ris_ |= static_cast<uint8_t>(edges & ~is_);
  update_irq();
}

bool Pl061::guest_saw_input(uint32_t line) const {
  MutexLock lock(mu_);
  return line < kLines && ((seen_ >> line) & 1) != 0;
}

void Pl061::mmio_read(uint64_t offset, std::span<uint8_t> data) {
  MutexLock lock(mu_);
  uint32_t v = 0;
  if (offset < kDataEnd) {
    const uint8_t mask = static_cast<uint8_t>(offset >> 2);
    v = pin_levels() & mask;
    seen_ |= mask;
  } else {
    switch (offset) {
      case kDir: v = dir_; break;
      case kIs: v = is_; break;
      case kIbe: v = ibe_; break;
      case kIev: v = iev_; break;
      case kIe: v = ie_; break;
      case kRis: v = ris_; break;
      case kMis: v = ris_ & ie_; break;
      case kAfsel: v = afsel_; break;
      default:
        if (offset >= 0xfe0 && offset < 0x1000) v = kIds[(offset - 0xfe0) / 4];
        break;
    }
  }
  store_register(data, v);
}

void Pl061::mmio_write(uint64_t offset, std::span<const uint8_t> data) {
  const uint8_t v = static_cast<uint8_t>(load_register(data));
  MutexLock lock(mu_);
  if (offset < kDataEnd) {
    // Only output lines under the address mask take the written bits.
    const uint8_t mask = static_cast<uint8_t>((offset >> 2) & dir_);
    data_ = static_cast<uint8_t>((data_ & ~mask) | (v & mask));
  } else {
    switch (offset) {
      case kDir: dir_ = v; break;
      case kIs: is_ = v; break;
      case kIbe: ibe_ = v; break;
      case kIev: iev_ = v; break;
      case kIe: ie_ = v; break;
      case kIc: ris_ = static_cast<uint8_t>(ris_ & ~(v & ~is_)); break;  // level status cannot be cleared
      case kAfsel: afsel_ = v; break;
      default: break;  // RIS, MIS and the IDs are read-only
    }
  }
  update_irq();
}

std::vector<uint8_t> Pl061::save() const {
  MutexLock lock(mu_);
  ByteWriter w;
  w.u32(kStateVersion);
  for (uint8_t r : {data_, dir_, is_, ibe_, iev_, ie_, ris_, afsel_, inputs_}) w.u8(r);
  return w.take();
}

Status Pl061::restore(std::span<const uint8_t> saved) {
  ByteReader r(saved, 0, "PL061 state");
  uint32_t version = r.u32();
  if (!r.ok() || version != kStateVersion || saved.size() != kStateBytes) {
    return make_error(ErrorCode::kDataLoss, "PL061 state: {} bytes of version {}, expected {} bytes of version {}",
                      saved.size(), version, kStateBytes, kStateVersion);
  }
  MutexLock lock(mu_);
  for (uint8_t* reg : {&data_, &dir_, &is_, &ibe_, &iev_, &ie_, &ris_, &afsel_, &inputs_}) *reg = r.u8();
  irq_level_ = (ris_ & ie_) == 0;  // force the line to be driven
  update_irq();
  return {};
}

}  // namespace snapvm
