// Thin POSIX file helpers that turn short reads/writes and EINTR into either
// full transfers or errors with context.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm {

Result<UniqueFd> open_file(const std::string& path, int flags, mode_t mode = 0);

// Reads exactly buf.size() bytes at offset; hitting end of file is kDataLoss
// (a snapshot shorter than it claims), not a silent short read.
Status pread_exact(int fd, std::span<uint8_t> buf, uint64_t offset);
Status pwrite_all(int fd, std::span<const uint8_t> buf, uint64_t offset);

Result<uint64_t> file_size(int fd);

// fsync of the directory holding `path`, so a rename into it is durable.
Status fsync_parent_dir(const std::string& path);

std::string parent_dir(const std::string& path);

}  // namespace snapvm
