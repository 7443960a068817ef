// SIGBUS from guest RAM: the file a restored VM maps its RAM from can be
// truncated by someone else, or its filesystem can run out of room for a
// page the guest touches. The VM cannot go on, but it should end with one
// line saying why, not a crash and a core dump full of guest memory.
#pragma once

#include <cstddef>

namespace snapvm {

// Exit status of a VMM ended by such a fault.
inline constexpr int kExitGuestMemoryLost = 70;  // EX_SOFTWARE

// Names [addr, addr + size) as guest RAM backed by `backing` (a file name,
// copied; at most 8 ranges). Async-signal-safe to consult.
void register_guest_memory(const void* addr, size_t size, const char* backing);
void unregister_guest_memory(const void* addr);

// Installs the SIGBUS handler: a fault inside registered guest RAM prints
// "snapvm: guest RAM ... lost" and exits kExitGuestMemoryLost; any other
// SIGBUS keeps its default action.
void install_memory_fault_handler();

}  // namespace snapvm
