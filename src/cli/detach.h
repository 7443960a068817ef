// run -d and restore -d: the VMM goes on in the background, its console and
// messages in /run/snapvm/NAME.log (snapvm logs), and the command returns
// once the VM's control socket answers.
#pragma once

#include <optional>
#include <string>

namespace snapvm::cli {

// Forks. In the background process: nullopt (go on and run the VM). In the
// foreground one: its exit status, once the VM `name` answers on its control
// socket (0; its name printed on stdout) or has ended (its log on stderr).
// Call before any thread exists.
std::optional<int> detach(const std::string& name);

}  // namespace snapvm::cli
