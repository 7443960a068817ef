#include "arch/x86_64/acpi.h"

// GCC 12 at -O3 reports vector inserts into freshly sized vectors as out of
// bounds (GCC bug 107852 and relatives); the code is plain std::vector use.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Wstringop-overread"
#endif

#include <algorithm>
#include <cstring>
#include <string_view>

#include "arch/x86_64/layout.h"

namespace snapvm::arch::x86 {
namespace {

using Bytes = std::vector<uint8_t>;

void put(Bytes& b, size_t off, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void append(Bytes& b, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void append(Bytes& b, const Bytes& more) { b.insert(b.end(), more.begin(), more.end()); }

uint8_t checksum_of(const uint8_t* p, size_t n) {
  uint8_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum = static_cast<uint8_t>(sum + p[i]);
  return static_cast<uint8_t>(-sum);
}

// The 36-byte header every system description table starts with; length
// and checksum are filled in by finish().
Bytes table(std::string_view signature, uint8_t revision, size_t length) {
  Bytes t(length, 0);
  std::memcpy(t.data(), signature.data(), 4);
  put(t, 4, length, 4);
  t[8] = revision;
  std::memcpy(t.data() + 10, "SNAPVM", 6);
  std::memcpy(t.data() + 16, "SNAPVMTB", 8);
  put(t, 24, 1, 4);
  std::memcpy(t.data() + 28, "SNVM", 4);
  put(t, 32, 1, 4);
  return t;
}
void finish(Bytes& t) {
  put(t, 4, t.size(), 4);
  t[9] = 0;
  t[9] = checksum_of(t.data(), t.size());
}

// A Generic Address Structure for a byte-wide I/O port.
void gas_io(Bytes& t, size_t off, uint16_t port) {
  t[off] = 1;      // system I/O space
  t[off + 1] = 8;  // register bit width
  t[off + 2] = 0;
  t[off + 3] = 1;  // byte access
  put(t, off + 4, port, 8);
}

// --- AML --------------------------------------------------------------
Bytes aml_name_seg(std::string_view four) {
  Bytes b(4, '_');
  std::memcpy(b.data(), four.data(), std::min<size_t>(4, four.size()));
  return b;
}
Bytes aml_integer(uint64_t v) {
  if (v <= 1) return Bytes(1, static_cast<uint8_t>(v));  // ZeroOp, OneOp
  size_t width = v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffff ? 4 : 8;
  uint8_t prefix = width == 1 ? 0x0a : width == 2 ? 0x0b : width == 4 ? 0x0c : 0x0e;
  Bytes b(1, prefix);
  append(b, v, width);
  return b;
}
Bytes aml_string(std::string_view s) {
  Bytes b(s.size() + 2, 0);  // StringPrefix, the characters, NUL
  b[0] = 0x0d;
  std::memcpy(b.data() + 1, s.data(), s.size());
  return b;
}
Bytes aml_name(std::string_view seg, const Bytes& value) {
  Bytes b{0x08};
  append(b, aml_name_seg(seg));
  append(b, value);
  return b;
}
// An opcode, a PkgLength over what follows, then the body.
Bytes aml_pkg(Bytes opcode, const Bytes& body) {
  Bytes b = std::move(opcode);
  append(b, aml_pkg_length(body.size()));
  append(b, body);
  return b;
}
Bytes aml_buffer(const Bytes& data) {
  Bytes body = aml_integer(data.size());
  append(body, data);
  return aml_pkg({0x11}, body);
}
Bytes aml_device(std::string_view seg, const Bytes& body) {
  Bytes inner = aml_name_seg(seg);
  append(inner, body);
  return aml_pkg({0x5b, 0x82}, inner);
}

// Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi }, then
// the end tag: how every device here ends its _CRS.
void append_interrupt_and_end(Bytes& res, uint32_t gsi) {
  append(res, 0x89, 1);
  append(res, 6, 2);
  res.push_back(0x03);
  res.push_back(1);
  append(res, gsi, 4);
  res.push_back(0x79);
  res.push_back(0);
}

Bytes device_with_resources(std::string_view seg, const Bytes& hid, uint64_t uid, const Bytes& resources) {
  Bytes body = aml_name("_HID", hid);
  append(body, aml_name("_UID", aml_integer(uid)));
  append(body, aml_name("_CRS", aml_buffer(resources)));
  return aml_device(seg, body);
}

Bytes virtio_device(size_t index, const AcpiDevice& d) {
  static const char kHex[] = "0123456789ABCDEF";
  char seg[5] = {'V', kHex[(index >> 8) & 0xf], kHex[(index >> 4) & 0xf], kHex[index & 0xf], 0};
  Bytes res;
  // Memory32Fixed(ReadWrite, base, size)
  append(res, 0x86, 1);
  append(res, 9, 2);
  res.push_back(1);
  append(res, d.base, 4);
  append(res, d.size, 4);
  append_interrupt_and_end(res, d.gsi);
  return device_with_resources(seg, aml_string("LNRO0005"), index, res);
}

// COM1, as a PNP0501 device with its ports and interrupt. In
// hardware-reduced ACPI Linux keeps no legacy PIC, so ISA IRQ 4 exists only
// once a device's _CRS names GSI 4; without this the legacy port probes
// but cannot get its interrupt, and every tty write fails with EIO.
Bytes com1_device() {
  Bytes res;
  // IO(Decode16, 0x3f8, 0x3f8, 8, 8)
  res.push_back(0x47);
  res.push_back(0x01);
  append(res, kCom1Port, 2);
  append(res, kCom1Port, 2);
  res.push_back(8);
  res.push_back(8);
  append_interrupt_and_end(res, kCom1Irq);
  return device_with_resources("COM1", aml_integer(0x0105d041), 0, res);  // EisaId("PNP0501")
}

// The power button: a PNP0C0C device, and a Generic Event Device (ACPI0013)
// whose interrupt runs _EVT, which notifies the button (0x80: pressed).
// Hardware-reduced ACPI has no fixed power button; Linux's GED and button
// drivers turn this into a KEY_POWER press.
Bytes power_button_devices(uint32_t gsi) {
  Bytes pwrb = aml_name("_HID", aml_integer(0x0c0cd041));  // EisaId("PNP0C0C")
  append(pwrb, aml_name("_UID", aml_integer(0)));
  Bytes out = aml_device("PWRB", pwrb);
  Bytes res;
  append_interrupt_and_end(res, gsi);
  Bytes ged = aml_name("_HID", aml_string("ACPI0013"));
  append(ged, aml_name("_UID", aml_integer(0)));
  append(ged, aml_name("_CRS", aml_buffer(res)));
  // Method(_EVT, 1) { Notify(\_SB.PWRB, 0x80) }
  Bytes method = aml_name_seg("_EVT");
  method.push_back(0x01);  // one argument (the GSI), not serialized
  method.push_back(0x86);  // NotifyOp
  method.push_back(0x5c);  // root
  method.push_back(0x2e);  // DualNamePrefix
  append(method, aml_name_seg("_SB_"));
  append(method, aml_name_seg("PWRB"));
  append(method, aml_integer(0x80));
  append(ged, aml_pkg({0x14}, method));
  append(out, aml_device("GED0", ged));
  return out;
}

}  // namespace

std::vector<uint8_t> aml_pkg_length(size_t content) {
  if (content + 1 < 0x40) return {static_cast<uint8_t>(content + 1)};
  for (size_t extra = 1; extra <= 3; ++extra) {
    size_t total = content + 1 + extra;
    if (total < (size_t{1} << (4 + 8 * extra))) {
      std::vector<uint8_t> out{static_cast<uint8_t>((extra << 6) | (total & 0xf))};
      for (size_t i = 0; i < extra; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
      return out;
    }
  }
  return {};  // beyond 256 MiB: never for our tables
}

AcpiTables build_acpi(const AcpiConfig& c) {
  // Placement inside the blob: RSDP, XSDT, FADT, MADT, then the DSDT.
  constexpr size_t kRsdp = 0, kXsdt = 0x40, kFadt = 0x100, kMadt = 0x300, kDsdt = 0x1000;

  Bytes dsdt_body;
  Bytes sb = com1_device();
  for (size_t i = 0; i < c.virtio.size(); ++i) append(sb, virtio_device(i, c.virtio[i]));
  if (c.power_button_gsi) append(sb, power_button_devices(*c.power_button_gsi));
  Bytes scope{0x5c, '_', 'S', 'B', '_'};
  append(scope, sb);
  append(dsdt_body, aml_pkg({0x10}, scope));
  // Name(_S5, Package() { 5, 5 }): SLP_TYPa and SLP_TYPb for power off.
  Bytes s5{2};
  append(s5, aml_integer(kAcpiS5SleepType));
  append(s5, aml_integer(kAcpiS5SleepType));
  append(dsdt_body, aml_name("_S5_", aml_pkg({0x12}, s5)));
  Bytes dsdt = table("DSDT", 2, 36);
  append(dsdt, dsdt_body);
  finish(dsdt);

  Bytes fadt = table("FACP", 6, 276);
  put(fadt, 40, c.base_gpa + kDsdt, 4);     // DSDT
  put(fadt, 46, 9, 2);                      // SCI_INT: unused in reduced hardware
  put(fadt, 109, (1u << 2) | (1u << 5), 2);  // IAPC_BOOT_ARCH: no VGA, no CMOS RTC
  // Flags: WBINVD works, no fixed power/sleep buttons, reset register,
  // hardware-reduced ACPI.
  put(fadt, 112, (1u << 0) | (1u << 4) | (1u << 5) | (1u << 10) | (1u << 20), 4);
  gas_io(fadt, 116, kAcpiResetPort);
  fadt[128] = kAcpiResetValue;
  fadt[131] = 0;                            // FADT minor version (6.0)
  put(fadt, 140, c.base_gpa + kDsdt, 8);    // X_DSDT
  gas_io(fadt, 244, kAcpiSleepControlPort);
  gas_io(fadt, 256, kAcpiSleepStatusPort);
  std::memcpy(fadt.data() + 268, "SNAPVM\0\0", 8);  // hypervisor vendor identity
  finish(fadt);

  Bytes madt = table("APIC", 4, 44);
  put(madt, 36, kLapicAddr, 4);
  put(madt, 40, 1, 4);  // PCAT_COMPAT: there are 8259s to mask
  for (uint32_t i = 0; i < c.vcpus; ++i) {
    madt.insert(madt.end(), {0, 8, static_cast<uint8_t>(i), static_cast<uint8_t>(i)});
    append(madt, 1, 4);  // enabled
  }
  madt.insert(madt.end(), {1, 12, 0, 0});  // IOAPIC id 0
  append(madt, kIoapicAddr, 4);
  append(madt, 0, 4);  // GSI base
  // The PIT's IRQ 0 arrives on IOAPIC pin 2 (KVM's default routing).
  madt.insert(madt.end(), {2, 10, 0, 0});
  append(madt, 2, 4);
  append(madt, 0, 2);
  // NMI on every local APIC's LINT1.
  madt.insert(madt.end(), {4, 6, 0xff, 0, 0, 1});
  finish(madt);

  Bytes xsdt = table("XSDT", 1, 36);
  append(xsdt, c.base_gpa + kFadt, 8);
  append(xsdt, c.base_gpa + kMadt, 8);
  finish(xsdt);

  Bytes rsdp(36, 0);
  std::memcpy(rsdp.data(), "RSD PTR ", 8);
  std::memcpy(rsdp.data() + 9, "SNAPVM", 6);
  rsdp[15] = 2;  // ACPI 2.0+: use the XSDT
  put(rsdp, 20, 36, 4);
  put(rsdp, 24, c.base_gpa + kXsdt, 8);
  rsdp[8] = checksum_of(rsdp.data(), 20);
  rsdp[32] = checksum_of(rsdp.data(), 36);

  AcpiTables out;
  out.rsdp_gpa = c.base_gpa + kRsdp;
  out.bytes.assign(kDsdt + dsdt.size(), 0);
  auto place = [&](size_t off, const Bytes& t) { std::memcpy(out.bytes.data() + off, t.data(), t.size()); };
  place(kRsdp, rsdp);
  place(kXsdt, xsdt);
  place(kFadt, fadt);
  place(kMadt, madt);
  place(kDsdt, dsdt);
  return out;
}

}  // namespace snapvm::arch::x86
