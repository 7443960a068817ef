// Unix stream sockets the VMM listens on (the control socket, the vsock
// socket): bound without ever taking a path from a live process.
#pragma once

#include <sys/stat.h>

#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm {

// Listens on `path` (non-blocking, close-on-exec) with permissions `mode`.
// A socket file left by a process that is gone is replaced; one that a live
// process still accepts on is refused, and so is any other kind of file:
// a second VM must never silently take over the first one's socket.
Result<UniqueFd> listen_unix(const std::string& path, int backlog, mode_t mode, const char* what);

// Connects to `path` (blocking); the error says whether nobody listens.
Result<UniqueFd> connect_unix(const std::string& path);

}  // namespace snapvm
