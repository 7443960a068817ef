#include "devices/virtio/block.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "base/file_io.h"

namespace snapvm::virtio {
namespace {

constexpr uint64_t kFeatureReadOnly = 1ull << 5;
constexpr uint64_t kFeatureFlush = 1ull << 9;
constexpr uint32_t kTypeIn = 0;
constexpr uint32_t kTypeOut = 1;
constexpr uint32_t kTypeFlush = 4;
constexpr uint32_t kTypeGetId = 8;
constexpr uint8_t kStatusOk = 0;
constexpr uint8_t kStatusIoErr = 1;
constexpr uint8_t kStatusUnsupported = 2;
constexpr uint64_t kSector = 512;
constexpr size_t kIdBytes = 20;

struct Image {
  UniqueFd fd;
  uint64_t sectors;
  std::string id;
};

Result<Image> open_image(const std::string& path, bool read_only) {
  auto fd = open_file(path, read_only ? O_RDONLY : O_RDWR);
  if (!fd) return tl::unexpected(std::move(fd.error()).context("disk image"));
  uint64_t size = SNAPVM_TRY(file_size(fd->get()));
  if (size % kSector != 0) {
    return make_error(ErrorCode::kInvalidArgument, "disk image {} is {} bytes, not a multiple of 512", path, size);
  }
  auto slash = path.find_last_of('/');
  std::string id = path.substr(slash == std::string::npos ? 0 : slash + 1).substr(0, kIdBytes);
  return Image{std::move(*fd), size / kSector, id};
}

}  // namespace

bool Block::read_only_of_saved(const state::VirtioMmioState& saved) {
  return (saved.device_features & kFeatureReadOnly) != 0;
}

Result<std::unique_ptr<Block>> Block::open(const std::string& path, bool read_only) {
  Image image = SNAPVM_TRY(open_image(path, read_only));
  return std::unique_ptr<Block>(new Block(std::move(image.fd), image.sectors, read_only, image.id));
}

uint64_t Block::sectors() const {
  std::lock_guard lock(backing_mu_);
  return sectors_;
}

Status Block::replace_backing(const std::string& path) {
  Image image = SNAPVM_TRY(open_image(path, read_only_));
  {
    std::lock_guard lock(backing_mu_);
    fd_ = std::move(image.fd);  // the old image closes here, after its last request
    sectors_ = image.sectors;
    id_ = image.id;
  }
  if (Transport* t = transport_.load()) t->signal_config_change();
  return {};
}

uint64_t Block::device_features() const { return kFeatureFlush | (read_only_ ? kFeatureReadOnly : 0); }

void Block::read_config(uint64_t offset, std::span<uint8_t> data) const {
  // struct virtio_blk_config starts with the capacity in sectors.
  uint8_t config[8];
  const uint64_t sectors = this->sectors();
  std::memcpy(config, &sectors, 8);
  std::memset(data.data(), 0, data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i < sizeof config) data[i] = config[offset + i];
  }
}

uint8_t Block::handle(const Chain& chain, uint32_t* written) {
  *written = 0;
  std::lock_guard lock(backing_mu_);
  uint8_t header[16];
  if (chain.read(0, header) != sizeof header) return kStatusIoErr;
  uint32_t type;
  uint64_t sector;
  std::memcpy(&type, header, 4);
  std::memcpy(&sector, header + 8, 8);
  uint64_t data_in = chain.readable_bytes() - sizeof header;  // bytes to write to disk
  uint64_t data_out = chain.writable_bytes() - 1;            // room for data read from disk
  auto in_range = [&](uint64_t bytes) {
    return bytes % kSector == 0 && sector <= sectors_ && bytes / kSector <= sectors_ - sector;
  };
  switch (type) {
    case kTypeIn: {
      if (!in_range(data_out)) return kStatusIoErr;
      uint64_t off = sector * kSector, done = 0;
      for (const auto& b : chain.writable) {
        uint64_t n = std::min<uint64_t>(b.len, data_out - done);
        if (n == 0) break;
        if (!pread_exact(fd_.get(), {b.data, n}, off + done)) return kStatusIoErr;
        done += n;
      }
      *written = static_cast<uint32_t>(done);
      return kStatusOk;
    }
    case kTypeOut: {
      if (read_only_ || !in_range(data_in)) return kStatusIoErr;
      uint64_t off = sector * kSector, skip = sizeof header, done = 0;
      for (const auto& b : chain.readable) {
        uint64_t from = std::min<uint64_t>(skip, b.len);
        skip -= from;
        if (b.len == from) continue;
        if (!pwrite_all(fd_.get(), {b.data + from, b.len - from}, off + done)) return kStatusIoErr;
        done += b.len - from;
      }
      return kStatusOk;
    }
    case kTypeFlush:
      return ::fdatasync(fd_.get()) == 0 ? kStatusOk : kStatusIoErr;
    case kTypeGetId: {
      uint8_t id[kIdBytes] = {};
      std::memcpy(id, id_.data(), id_.size());
      *written = static_cast<uint32_t>(chain.write(0, {id, std::min<size_t>(kIdBytes, data_out)}));
      return kStatusOk;
    }
    default:
      return kStatusUnsupported;
  }
}

void Block::queue_notify(size_t index) {
  Transport* transport = transport_.load();
  if (transport == nullptr || index != 0) return;
  serve_queue(*transport, 0, [this](const Chain& chain) -> uint32_t {
    uint32_t written = 0;
    uint8_t status = kStatusIoErr;
    if (!chain.writable.empty() && chain.writable.back().len >= 1) status = handle(chain, &written);
    // The status byte is the last writable byte of the chain.
    if (!chain.writable.empty()) {
      const Buffer& last = chain.writable.back();
      if (last.len >= 1) last.data[last.len - 1] = status;
    }
    return written + 1;
  });
}

}  // namespace snapvm::virtio
