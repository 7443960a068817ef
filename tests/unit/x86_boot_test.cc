// The x86_64 boot data built on any host: ACPI tables that Linux's parser
// would accept (signatures, lengths, checksums, the devices the DSDT names),
// the boot_params page, the e820 map and the x86 state records' checks.
#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/boot_params.h"
#include "arch/x86_64/cpu_features.h"
#include "state/x86_64/x86_state.h"

namespace snapvm::arch::x86 {
namespace {

uint64_t le(const std::vector<uint8_t>& b, size_t off, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint64_t{b[off + i]} << (8 * i);
  return v;
}
uint8_t sum(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; ++i) s = static_cast<uint8_t>(s + p[i]);
  return s;
}

TEST(X86Acpi, TablesChainFromTheRsdpWithValidChecksums) {
  AcpiConfig c;
  c.base_gpa = 0xe0000;
  c.vcpus = 3;
  c.virtio = {{0xd0000000, 0x200, 5}, {0xd0000200, 0x200, 6}};
  AcpiTables t = build_acpi(c);
  const auto& b = t.bytes;
  auto at = [&](uint64_t gpa) { return static_cast<size_t>(gpa - c.base_gpa); };
  size_t rsdp = at(t.rsdp_gpa);
  ASSERT_EQ(std::memcmp(b.data() + rsdp, "RSD PTR ", 8), 0);
  EXPECT_EQ(sum(b.data() + rsdp, 20), 0);
  EXPECT_EQ(sum(b.data() + rsdp, 36), 0);
  size_t xsdt = at(le(b, rsdp + 24, 8));
  ASSERT_EQ(std::memcmp(b.data() + xsdt, "XSDT", 4), 0);
  size_t xlen = le(b, xsdt + 4, 4);
  EXPECT_EQ(sum(b.data() + xsdt, xlen), 0);
  ASSERT_EQ(xlen, 36u + 16);
  size_t fadt = at(le(b, xsdt + 36, 8)), madt = at(le(b, xsdt + 44, 8));
  ASSERT_EQ(std::memcmp(b.data() + fadt, "FACP", 4), 0);
  ASSERT_EQ(std::memcmp(b.data() + madt, "APIC", 4), 0);
  EXPECT_EQ(le(b, fadt + 4, 4), 276u);
  EXPECT_EQ(sum(b.data() + fadt, 276), 0);
  EXPECT_NE(le(b, fadt + 112, 4) & (1u << 20), 0u) << "hardware-reduced ACPI";
  EXPECT_EQ(le(b, fadt + 244 + 4, 8), 0x3c0u) << "sleep control register";
  size_t madt_len = le(b, madt + 4, 4);
  EXPECT_EQ(sum(b.data() + madt, madt_len), 0);
  // One enabled local APIC per vCPU, ids 0..2, then the IOAPIC.
  size_t off = madt + 44;
  for (uint8_t i = 0; i < 3; ++i, off += 8) {
    EXPECT_EQ(b[off], 0);
    EXPECT_EQ(b[off + 3], i);
    EXPECT_EQ(le(b, off + 4, 4), 1u);
  }
  EXPECT_EQ(b[off], 1) << "IOAPIC entry";
  EXPECT_EQ(le(b, off + 4, 4), 0xfec00000u);
  size_t dsdt = at(le(b, fadt + 140, 8));
  ASSERT_EQ(std::memcmp(b.data() + dsdt, "DSDT", 4), 0);
  size_t dlen = le(b, dsdt + 4, 4);
  EXPECT_EQ(sum(b.data() + dsdt, dlen), 0);
  std::string aml(reinterpret_cast<const char*>(b.data() + dsdt), dlen);
  // Two virtio-mmio devices with Linux's _HID, and _S5 for power off.
  size_t first = aml.find("LNRO0005");
  ASSERT_NE(first, std::string::npos);
  EXPECT_NE(aml.find("LNRO0005", first + 1), std::string::npos);
  EXPECT_NE(aml.find("_S5_"), std::string::npos);
  // The second device's registers and GSI sit in its _CRS.
  uint8_t mem[] = {0x86, 0x09, 0x00, 0x01, 0x00, 0x02, 0x00, 0xd0, 0x00, 0x02, 0x00, 0x00};
  EXPECT_NE(aml.find(std::string(reinterpret_cast<char*>(mem), sizeof mem)), std::string::npos);
  uint8_t irq[] = {0x89, 0x06, 0x00, 0x03, 0x01, 0x06, 0x00, 0x00, 0x00};
  EXPECT_NE(aml.find(std::string(reinterpret_cast<char*>(irq), sizeof irq)), std::string::npos);
}

// The power button: a GED (ACPI0013) whose interrupt is the given GSI and
// whose _EVT notifies \_SB.PWRB (PNP0C0C) with 0x80, as Linux's evged and
// button drivers expect; absent unless asked for.
TEST(X86Acpi, PowerButtonIsAGenericEventDeviceNotifyingAPnp0c0cButton) {
  auto dsdt_of = [](const AcpiConfig& c) {
    AcpiTables t = build_acpi(c);
    const std::string all(t.bytes.begin(), t.bytes.end());
    size_t at = all.find("DSDT");
    return all.substr(at, le(t.bytes, at + 4, 4));
  };
  AcpiConfig c;
  c.base_gpa = 0xe0000;
  const std::string without = dsdt_of(c);
  EXPECT_EQ(without.find("ACPI0013"), std::string::npos);
  c.power_button_gsi = 3;
  const std::string aml = dsdt_of(c);
  EXPECT_EQ(sum(reinterpret_cast<const uint8_t*>(aml.data()), aml.size()), 0);
  EXPECT_NE(aml.find("ACPI0013"), std::string::npos);
  const uint8_t pnp0c0c[] = {0x0c, 0x41, 0xd0, 0x0c, 0x0c};
  EXPECT_NE(aml.find(std::string(reinterpret_cast<const char*>(pnp0c0c), sizeof pnp0c0c)), std::string::npos);
  const uint8_t irq[] = {0x89, 0x06, 0x00, 0x03, 0x01, 0x03, 0x00, 0x00, 0x00};
  EXPECT_NE(aml.find(std::string(reinterpret_cast<const char*>(irq), sizeof irq)), std::string::npos);
  const std::string evt = std::string("_EVT\x01\x86\x5c\x2e_SB_PWRB\x0a\x80", 18);
  const size_t method = aml.find(evt);
  ASSERT_NE(method, std::string::npos);
  EXPECT_EQ(static_cast<uint8_t>(aml[method - 2]), 0x14) << "MethodOp";
  EXPECT_EQ(static_cast<uint8_t>(aml[method - 1]), evt.size() + 1) << "PkgLength";
}

TEST(X86Acpi, PkgLengthEncodesEachSize) {
  EXPECT_EQ(aml_pkg_length(0), (std::vector<uint8_t>{0x01}));
  EXPECT_EQ(aml_pkg_length(62), (std::vector<uint8_t>{0x3f}));
  // 63 bytes of content: 65 with a two-byte length, 0x41 -> 0x41, 0x04.
  EXPECT_EQ(aml_pkg_length(63), (std::vector<uint8_t>{0x41, 0x04}));
  auto big = aml_pkg_length(5000);  // 5003 = 0x138b: three bytes
  ASSERT_EQ(big.size(), 3u);
  EXPECT_EQ(big[0], 0x80 | 0xb);
  EXPECT_EQ(big[1], 0x38);
  EXPECT_EQ(big[2], 0x01);
}

std::vector<uint8_t> fake_bzimage(uint16_t version, uint16_t xloadflags) {
  std::vector<uint8_t> k(64 * 1024, 0);
  k[0x1f1] = 4;  // setup sectors
  k[0x1fe] = 0x55;
  k[0x1ff] = 0xaa;
  k[0x201] = 0x6a;  // header ends at 0x26c
  std::memcpy(k.data() + 0x202, "HdrS", 4);
  k[0x206] = static_cast<uint8_t>(version);
  k[0x207] = static_cast<uint8_t>(version >> 8);
  k[0x236] = static_cast<uint8_t>(xloadflags);
  uint32_t cmdline_size = 2047, initrd_max = 0x7fffffff, init_size = 32 << 20;
  std::memcpy(k.data() + 0x238, &cmdline_size, 4);
  std::memcpy(k.data() + 0x22c, &initrd_max, 4);
  std::memcpy(k.data() + 0x260, &init_size, 4);
  return k;
}

TEST(X86Boot, BzImageHeaderIsCheckedAndBootParamsFilled) {
  EXPECT_FALSE(parse_bzimage(std::vector<uint8_t>(4096, 0), "zeros"));
  EXPECT_FALSE(parse_bzimage(fake_bzimage(0x20b, 1), "old"));
  EXPECT_FALSE(parse_bzimage(fake_bzimage(0x20f, 0), "32-bit"));
  auto image = fake_bzimage(0x20f, 1);
  auto k = parse_bzimage(image, "vmlinuz");
  ASSERT_TRUE(k) << k.error().describe();
  ASSERT_EQ(k->segments.size(), 1u);
  EXPECT_EQ(k->segments[0].gpa, 0x100000u);
  EXPECT_EQ(k->segments[0].bytes.size(), image.size() - 5 * 512);
  EXPECT_EQ(k->segments[0].mem_size, 32u << 20) << "init_size: what the kernel uses while it decompresses";
  EXPECT_EQ(k->entry, 0x100200u);

  std::vector<RamRange> ram = {{0, 0xd0000000}, {0x100000000, 1ull << 30}};
  auto plan = plan_boot(*k, ram, 10 << 20, 100);
  ASSERT_TRUE(plan) << plan.error().describe();
  EXPECT_EQ(plan->initrd_addr % (2 << 20), 0u);
  EXPECT_LE(plan->initrd_addr + plan->initrd_size, 0xd0000000u);
  EXPECT_GE(plan->initrd_addr, plan->kernel_end);
  std::vector<RamRange> tiny = {{0, 32 << 20}};
  auto no = plan_boot(*k, tiny, 10 << 20, 100);
  ASSERT_FALSE(no);
  EXPECT_NE(no.error().describe().find("cannot hold the kernel"), std::string::npos);
  EXPECT_FALSE(plan_boot(*k, ram, 0, 5000)) << "command line longer than the kernel takes";

  auto e820 = e820_map(ram);
  ASSERT_EQ(e820.size(), 4u);
  EXPECT_EQ(e820[1].type, 2u) << "the BIOS area is reserved";
  EXPECT_EQ(e820[3].addr, 0x100000000u);
  auto zp = boot_params(*k, *plan, 0x20000, 100, e820, 0xe0000);
  ASSERT_EQ(zp.size(), 4096u);
  EXPECT_EQ(le(zp, 0x202, 4), 0x53726448u) << "setup header copied";
  EXPECT_EQ(zp[0x210], 0xff);
  EXPECT_EQ(le(zp, 0x228, 4), 0x20000u);
  EXPECT_EQ(le(zp, 0x218, 4), plan->initrd_addr);
  EXPECT_EQ(le(zp, 0x21c, 4), 10u << 20);
  EXPECT_EQ(zp[0x1e8], 4);
  EXPECT_EQ(le(zp, 0x2d0 + 3 * 20, 8), 0x100000000u);
  EXPECT_EQ(le(zp, 0x070, 8), 0xe0000u) << "acpi_rsdp_addr";
}

// A minimal x86_64 ELF executable shaped like vmlinux: loadable segments at
// physical addresses from 16 MiB, the entry at the first one's start.
struct FakeElf {
  std::vector<uint8_t> bytes;
  Elf64_Ehdr& header() { return *reinterpret_cast<Elf64_Ehdr*>(bytes.data()); }
  Elf64_Phdr& segment(size_t i) { return *reinterpret_cast<Elf64_Phdr*>(bytes.data() + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr)); }
};

FakeElf fake_vmlinux() {
  FakeElf e;
  e.bytes.assign(0x3000, 0);
  auto& h = e.header();
  std::memcpy(h.e_ident, ELFMAG, SELFMAG);
  h.e_ident[EI_CLASS] = ELFCLASS64;
  h.e_ident[EI_DATA] = ELFDATA2LSB;
  h.e_type = ET_EXEC;
  h.e_machine = EM_X86_64;
  h.e_entry = 0x1000000;
  h.e_phoff = sizeof(Elf64_Ehdr);
  h.e_phentsize = sizeof(Elf64_Phdr);
  h.e_phnum = 3;
  // text, then data with a bss, then a note that is not loaded
  e.segment(0) = {PT_LOAD, PF_R | PF_X, 0x1000, 0xffffffff81000000, 0x1000000, 0x1000, 0x1000, 0x200000};
  e.segment(1) = {PT_LOAD, PF_R | PF_W, 0x2000, 0xffffffff81200000, 0x1200000, 0x1000, 0x300000, 0x200000};
  e.segment(2) = {PT_NOTE, PF_R, 0x2800, 0, 0, 0x10, 0x10, 4};
  e.bytes[0x1000] = 0xe8;  // where the entry is
  return e;
}

TEST(X86Boot, ElfVmlinuxLoadsItsSegmentsAndEntersAtItsEntryPoint) {
  auto e = fake_vmlinux();
  auto k = parse_kernel(e.bytes, "vmlinux");
  ASSERT_TRUE(k) << k.error().describe();
  ASSERT_EQ(k->segments.size(), 2u) << "only PT_LOAD segments";
  EXPECT_EQ(k->segments[0].gpa, 0x1000000u);
  EXPECT_EQ(k->segments[0].bytes.data(), e.bytes.data() + 0x1000);
  EXPECT_EQ(k->segments[1].gpa, 0x1200000u);
  EXPECT_EQ(k->segments[1].bytes.size(), 0x1000u);
  EXPECT_EQ(k->segments[1].mem_size, 0x300000u) << "bss";
  EXPECT_EQ(k->entry, 0x1000000u);
  EXPECT_EQ(k->end, 0x1500000u);

  // The rest of the boot is the bzImage's: the plan keeps the initrd past the
  // kernel's end, and boot_params carry a header the kernel accepts.
  std::vector<RamRange> ram = {{0, 256 << 20}};
  auto plan = plan_boot(*k, ram, 10 << 20, 100);
  ASSERT_TRUE(plan) << plan.error().describe();
  EXPECT_GE(plan->initrd_addr, 0x1500000u);
  auto zp = boot_params(*k, *plan, 0x20000, 100, e820_map(ram), 0xe0000);
  EXPECT_EQ(le(zp, 0x1fe, 2), 0xaa55u);
  EXPECT_EQ(le(zp, 0x202, 4), 0x53726448u);
  EXPECT_EQ(le(zp, 0x206, 2), 0x20fu);
  EXPECT_EQ(le(zp, 0x228, 4), 0x20000u) << "cmd_line_ptr";
  EXPECT_EQ(le(zp, 0x218, 4), plan->initrd_addr);
  EXPECT_EQ(zp[0x211] & 0x01, 0x01) << "LOADED_HIGH";

  // The segments must fit the RAM given.
  std::vector<RamRange> small = {{0, 20 << 20}};
  auto no = plan_boot(*k, small, 0, 100);
  ASSERT_FALSE(no);
  EXPECT_NE(no.error().describe().find("cannot hold the kernel"), std::string::npos);
}

TEST(X86Boot, ElfVmlinuxThatDoesNotFitIsRefusedWithOneLine) {
  auto refused = [](FakeElf e, const char* why) {
    auto k = parse_kernel(e.bytes, "vmlinux");
    EXPECT_FALSE(k) << why;
    if (!k) {
      EXPECT_NE(k.error().describe().find(why), std::string::npos) << k.error().describe();
      EXPECT_EQ(k.error().describe().find('\n'), std::string::npos);
    }
  };
  auto e = fake_vmlinux();
  e.header().e_machine = EM_AARCH64;
  refused(e, "built for another machine");
  e = fake_vmlinux();
  e.header().e_ident[EI_CLASS] = ELFCLASS32;
  refused(e, "not 64-bit");
  e = fake_vmlinux();
  e.header().e_phnum = 200;
  refused(e, "program headers");
  e = fake_vmlinux();
  e.header().e_phoff = 0x2ff0;
  refused(e, "program headers past the end");
  e = fake_vmlinux();
  e.segment(1).p_filesz = 0x10000;
  refused(e, "past the end of the file");
  e = fake_vmlinux();
  e.segment(1).p_offset = ~0ull - 0x10;
  refused(e, "past the end of the file");
  e = fake_vmlinux();
  e.segment(1).p_filesz = 0x400000;
  e.segment(1).p_offset = 0;
  refused(e, "past the end of the file");
  e = fake_vmlinux();
  e.segment(1).p_paddr = 0xffff'f000;
  refused(e, "outside the first 4 GiB");
  e = fake_vmlinux();
  e.segment(1).p_paddr = 0x1000800;
  refused(e, "overlapping");
  e = fake_vmlinux();
  e.header().e_entry = 0x1200000 + 0x2000;  // in the bss, not in bytes loaded from the file
  refused(e, "entry point");
  e = fake_vmlinux();
  e.segment(0).p_type = PT_NOTE;
  e.segment(1).p_type = PT_NOTE;
  refused(e, "nothing to load");
  e = fake_vmlinux();
  e.bytes.resize(40);
  refused(e, "shorter than an ELF header");

  // Loaded below 1 MiB it would overwrite boot_params and the page tables.
  e = fake_vmlinux();
  e.segment(0).p_paddr = 0x8000;
  e.header().e_entry = 0x8000;
  auto k = parse_kernel(e.bytes, "vmlinux");
  ASSERT_TRUE(k) << k.error().describe();
  std::vector<RamRange> ram = {{0, 256 << 20}};
  auto low = plan_boot(*k, ram, 0, 100);
  ASSERT_FALSE(low);
  EXPECT_NE(low.error().describe().find("below 1 MiB"), std::string::npos);
  // Neither ELF nor bzImage: one line naming both.
  auto neither = parse_kernel(std::vector<uint8_t>(4096, 0), "junk");
  ASSERT_FALSE(neither);
  EXPECT_NE(neither.error().describe().find("not an x86 bzImage or ELF vmlinux"), std::string::npos);
}

// A restore refused for missing CPU features names them as /proc/cpuinfo
// does (a PVM host refused "leaf 0x1.0 ecx bits 0x76d81203" before).
TEST(X86CpuFeatures, BitsAreNamedAsLinuxNamesThem) {
  EXPECT_EQ(cpuid_feature_name(1, 0, CpuidReg::kEcx, 21), "x2apic");
  EXPECT_EQ(cpuid_feature_name(7, 0, CpuidReg::kEbx, 5), "avx2");
  EXPECT_EQ(cpuid_feature_name(0x80000001, 0, CpuidReg::kEdx, 29), "lm");
  EXPECT_EQ(cpuid_feature_name(0xd, 1, CpuidReg::kEax, 3), "xsaves");
  EXPECT_EQ(cpuid_feature_names(1, 0, CpuidReg::kEcx, 0x76d81203),
            "sse3, pclmulqdq, ssse3, fma, sse4_1, sse4_2, movbe, popcnt, aes, xsave, avx, f16c, rdrand");
  // No name here: the leaf, register and bit, never a blank.
  EXPECT_EQ(cpuid_feature_name(7, 0, CpuidReg::kEcx, 15), "CPUID 0x7.0 ecx bit 15");
  EXPECT_EQ(cpuid_feature_name(0x40000001, 0, CpuidReg::kEax, 3), "CPUID 0x40000001.0 eax bit 3");
  EXPECT_EQ(cpuid_feature_names(7, 1, CpuidReg::kEax, 0), "");
}

TEST(X86Boot, PageTablesMapTheFirstFourGiBOneToOne) {
  auto t = identity_page_tables(0x9000);
  ASSERT_EQ(t.size(), 6u * 4096);
  EXPECT_EQ(le(t, 0, 8), 0xa003u);
  for (uint64_t gib = 0; gib < 4; ++gib) EXPECT_EQ(le(t, 4096 + 8 * gib, 8), (0xb000 + gib * 4096) | 3);
  EXPECT_EQ(le(t, 2 * 4096 + 8 * 2047, 8), (2047ull << 21) | 0x83);
}

TEST(X86State, VcpuRecordsAreChecked) {
  using namespace state::x86;
  state::VcpuState v;
  v.events.assign(64, 0);
  auto add = [&](Struct s, size_t n) { v.registers.push_back({struct_id(s), std::vector<uint8_t>(n, 0)}); };
  add(Struct::kCpuid, 8 + 40 * 3);
  add(Struct::kTscKhz, 8);
  add(Struct::kRegs, 144);
  add(Struct::kSregs, 312);
  add(Struct::kXsave, 4096);
  add(Struct::kXcrs, 392);
  add(Struct::kDebugRegs, 128);
  add(Struct::kLapic, 1024);
  v.registers.push_back({msr_id(0x10), std::vector<uint8_t>(8, 0)});
  EXPECT_EQ(check_vcpu(v), "");
  auto bad = v;
  bad.registers[2].value.resize(143);
  EXPECT_NE(check_vcpu(bad).find("regs record"), std::string::npos);
  bad = v;
  bad.registers.pop_back();
  bad.registers.erase(bad.registers.begin() + 7);
  EXPECT_NE(check_vcpu(bad).find("lapic record is missing"), std::string::npos);
  bad = v;
  bad.registers.push_back({0x6030'0000'0010'0040ull, std::vector<uint8_t>(8, 0)});
  EXPECT_NE(check_vcpu(bad).find("not an x86 one"), std::string::npos);
  bad = v;
  bad.events.resize(10);
  EXPECT_NE(check_vcpu(bad).find("events"), std::string::npos);
}

TEST(X86State, VmStateRoundTripsAndRefusesWrongSizes) {
  using namespace state::x86;
  VmState s;
  for (auto k : {VmRecord::kPit, VmRecord::kClock, VmRecord::kPicMaster, VmRecord::kPicSlave, VmRecord::kIoapic}) {
    s.records.push_back({k, std::vector<uint8_t>(vm_record_size(k), static_cast<uint8_t>(k))});
  }
  ByteWriter w;
  encode(w, s);
  auto bytes = w.take();
  {
    ByteReader r(bytes, 0, "x86 vm");
    EXPECT_EQ(decode_vm_state(r), s);
    EXPECT_TRUE(r.ok());
  }
  s.records[1].bytes.pop_back();  // a kvmclock record one byte short
  ByteWriter w2;
  encode(w2, s);
  auto short_bytes = w2.take();
  ByteReader r2(short_bytes, 0, "x86 vm");
  decode_vm_state(r2);
  EXPECT_FALSE(r2.ok());
  s.records.pop_back();
  s.records[1].bytes.push_back(0);
  ByteWriter w3;
  encode(w3, s);
  auto four = w3.take();
  ByteReader r3(four, 0, "x86 vm");
  decode_vm_state(r3);
  EXPECT_FALSE(r3.ok()) << "an IOAPIC-less state must not load";
}

}  // namespace
}  // namespace snapvm::arch::x86
