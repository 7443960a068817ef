// run -d and restore -d: the VMM goes on in the background, its console and
// messages in /run/snapvm/NAME.log (snapvm logs), and the command returns
// once the VM's control socket answers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm::cli {

// The most a detached VM's log holds: a guest that writes its console
// without end must not fill /run (a tmpfs in RAM). Past it, the log starts
// again from empty with a line that says so.
inline constexpr uint64_t kMaxDetachedLogBytes = 16ull << 20;

// One VM per name: an exclusive lock on /run/snapvm/NAME.lock, held as long
// as the returned descriptor (and any process it is forked into) lives. An
// error names the VM that holds it.
Result<UniqueFd> lock_vm_name(const std::string& name);

// Forks. In the background process: nullopt (go on and run the VM). In the
// foreground one: its exit status, once the VM `name` answers on its control
// socket (0; its name printed on stdout) or has ended (its log on stderr).
// Call before any thread exists.
std::optional<int> detach(const std::string& name);

}  // namespace snapvm::cli
