// `fill-memory FILE MIB`: writes MIB MiB of pseudo-random bytes to FILE. In
// the guest's RAM-backed root filesystem the pages stay resident, so a
// benchmark can give the guest a known amount of incompressible, non-zero
// RAM (the comparison with other VMMs fills 60 % of it). The bytes come from
// xorshift64* rather than /dev/urandom: under instruction emulation the
// kernel's generator costs tens of times more per byte. Installed as
// /bin/fill-memory, a link to /init.
#pragma once

#include <cstdint>
#include <string>

namespace snapvm::guest {

// Writes the bytes; false with errno set on failure.
bool fill_memory(const std::string& path, uint64_t mib);

int fill_memory_main(int argc, char** argv);

}  // namespace snapvm::guest
