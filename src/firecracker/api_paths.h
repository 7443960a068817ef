// Opening the paths a Firecracker API client names (kernel, initrd, drives,
// the config file, logger and metrics sinks) without letting a path block
// the VMM or write through a link someone planted.
//
// Inputs follow symbolic links: a link to a kernel or a disk (/vmlinuz,
// /dev/disk/by-id/...) is ordinary, reading through one gives the client
// nothing it could not name directly, and inside `snapvm jail` every link
// resolves within the jail. What they must not be is a FIFO or a character
// device: a blocking open or read of one would hang the VMM thread, so the
// open is O_NONBLOCK and the type is checked before any byte is read.
//
// Sinks are written, and may be created: a link there makes no sense (a
// link planted where the client expects a new log file would have the VMM
// append to whatever file the link names), so the last component is never
// followed (O_NOFOLLOW) and a missing file is created with O_EXCL, which
// also refuses a dangling link. A FIFO sink is opened read-write and
// non-blocking, as Firecracker opens it: the open needs no reader, and a
// reader that stops reading costs log lines, never a stalled VMM.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm::firecracker {

enum class ApiInput {
  kFile,   // kernel, initrd, config file: a regular file, read-only
  kDrive,  // a disk: a regular file or a block device
};

// Opens `path` for reading (or, for a writable drive, reading and writing),
// never blocking; anything but the kind asked for is refused with one line
// naming `what`. The descriptor returned blocks as usual.
Result<UniqueFd> open_api_input(const std::string& path, ApiInput kind, bool writable, std::string_view what);

// Opens the logger's or metrics' `path` for appending: an existing regular
// file or FIFO, or a new 0600 file; a symbolic link is refused.
Result<UniqueFd> open_api_sink(const std::string& path, std::string_view what);

}  // namespace snapvm::firecracker
