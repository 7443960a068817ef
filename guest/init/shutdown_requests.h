// The host's requests for a clean shutdown, as a VMM delivers them: a
// KEY_POWER press on an input device (arm64: the gpio-keys power button
// behind Firecracker's SendCtrlAltDel) or Ctrl+Alt+Del from a keyboard
// (x86: with CAD off the kernel signals init with SIGINT). Either ends in
// clean_shutdown(), what systemd does for the same events.
#pragma once

namespace snapvm::guest {

// Turns off the kernel's immediate reboot on Ctrl+Alt+Del and starts a
// thread that watches every input device with a power key and SIGINT.
// Call once from PID 1, after the input modules are loaded.
void watch_shutdown_requests();

// Asks every process to stop (SIGTERM, then SIGKILL after a grace period),
// syncs the filesystems, and powers the machine off. Does not return.
[[noreturn]] void clean_shutdown(const char* why);

}  // namespace snapvm::guest
