// Thin POSIX file helpers that turn short reads/writes and EINTR into either
// full transfers or errors with context.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm {

Result<UniqueFd> open_file(const std::string& path, int flags, mode_t mode = 0);

// Opens an existing file to be read as data (a snapshot, a memory file)
// without ever blocking: a FIFO or a device given in its place would hang
// a plain open() or the first read, so the open is O_NONBLOCK and anything
// but a regular file is refused with one line (naming it `what`) before
// any byte is read. The descriptor returned blocks as usual.
Result<UniqueFd> open_regular_file(const std::string& path, int flags, std::string_view what);

// Reads exactly buf.size() bytes at offset; hitting end of file is kDataLoss
// (a snapshot shorter than it claims), not a silent short read.
Status pread_exact(int fd, std::span<uint8_t> buf, uint64_t offset);
Status pwrite_all(int fd, std::span<const uint8_t> buf, uint64_t offset);

Result<uint64_t> file_size(int fd);

// fsync of the directory holding `path`, so a rename into it is durable.
Status fsync_parent_dir(const std::string& path);

std::string parent_dir(const std::string& path);

}  // namespace snapvm
