// Where named VMs and pools keep their sockets: one folder, spelled once.
#pragma once

#include <string>
#include <string_view>

namespace snapvm {

inline constexpr std::string_view kRuntimeDir = "/run/snapvm";

// A VM's name, as --name takes it: it names files in kRuntimeDir
// (NAME.sock, NAME.vsock, NAME.log), so 1-64 of [A-Za-z0-9_.-], starting
// with a letter or digit: no path, no hidden file.
bool is_vm_name(std::string_view name);

// kRuntimeDir/`name`.
std::string runtime_path(std::string_view name);
// Creates kRuntimeDir (mode 0755) if missing; whoever binds a socket in it
// reports the error that matters if it cannot be made.
void make_runtime_dir();

}  // namespace snapvm
