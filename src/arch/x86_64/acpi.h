// The ACPI tables an x86_64 guest finds its hardware in: RSDP, XSDT, a
// hardware-reduced FADT (power off and reset through two I/O registers, no
// PM timer or SCI), a MADT for the local APICs and the IOAPIC, and a DSDT
// naming each virtio-mmio device (_HID "LNRO0005", as Linux's virtio_mmio
// driver matches) with its registers and interrupt, a power button (a GED
// whose interrupt notifies a PNP0C0C device), plus _S5 for power off.
// Debian's kernel has no virtio_mmio.device= command line, so this is how
// it finds the devices. Pure bytes: built and tested on any host.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace snapvm::arch::x86 {

struct AcpiDevice {
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t gsi = 0;
};

struct AcpiConfig {
  uint64_t base_gpa = 0;  // where the returned bytes are placed
  uint32_t vcpus = 1;
  std::vector<AcpiDevice> virtio;
  std::optional<uint32_t> power_button_gsi;  // the Generic Event Device's interrupt
};

struct AcpiTables {
  uint64_t rsdp_gpa = 0;
  std::vector<uint8_t> bytes;  // all tables, from base_gpa
};

AcpiTables build_acpi(const AcpiConfig& config);

// AML helpers, exposed for tests: a PkgLength encoding of `content` bytes
// of payload (the length counts itself).
std::vector<uint8_t> aml_pkg_length(size_t content);

}  // namespace snapvm::arch::x86
