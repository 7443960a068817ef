#include "arch/arm64/fdt.h"

extern "C" {
#include <libfdt.h>
}

#include "arch/arm64/kernel_image.h"
#include "arch/arm64/layout.h"

namespace snapvm::arch {
namespace {

// Interrupt specifier cells for "arm,gic-v3": type, number, flags.
constexpr uint32_t kGicSpi = 0;
constexpr uint32_t kGicPpi = 1;
constexpr uint32_t kIrqEdgeRising = 1;
constexpr uint32_t kIrqLevelHigh = 4;
constexpr uint32_t kPhandleGic = 1;
constexpr uint32_t kPhandleClock = 2;
constexpr uint32_t kPhandleGpio = 3;
constexpr uint32_t kGpioActiveHigh = 0;

class FdtWriter {
 public:
  explicit FdtWriter(size_t size) : buf_(size) {
    check(fdt_create(buf_.data(), static_cast<int>(size)), "create");
    check(fdt_finish_reservemap(buf_.data()), "reserve map");
  }

  void begin(const std::string& name) { check(fdt_begin_node(buf_.data(), name.c_str()), name.c_str()); }
  void end() { check(fdt_end_node(buf_.data()), "end node"); }
  void prop(const char* name, const std::string& s) { check(fdt_property_string(buf_.data(), name, s.c_str()), name); }
  void prop_u32(const char* name, uint32_t v) { check(fdt_property_u32(buf_.data(), name, v), name); }
  void prop_u64(const char* name, uint64_t v) { check(fdt_property_u64(buf_.data(), name, v), name); }
  void prop_empty(const char* name) { check(fdt_property(buf_.data(), name, nullptr, 0), name); }
  void prop_cells(const char* name, std::initializer_list<uint32_t> cells) { prop_cells(name, std::vector<uint32_t>(cells)); }
  void prop_cells(const char* name, const std::vector<uint32_t>& cells) {
    std::vector<fdt32_t> be;
    for (uint32_t c : cells) be.push_back(cpu_to_fdt32(c));
    check(fdt_property(buf_.data(), name, be.data(), static_cast<int>(be.size() * 4)), name);
  }
  // A list of strings, as in "compatible".
  void prop_strings(const char* name, std::initializer_list<const char*> strs) {
    std::string joined;
    for (const char* s : strs) {
      joined += s;
      joined.push_back('\0');
    }
    check(fdt_property(buf_.data(), name, joined.data(), static_cast<int>(joined.size())), name);
  }
  void reg(uint64_t base, uint64_t size) {
    prop_cells("reg", {uint32_t(base >> 32), uint32_t(base), uint32_t(size >> 32), uint32_t(size)});
  }

  Result<std::vector<uint8_t>> finish() {
    check(fdt_finish(buf_.data()), "finish");
    if (!error_.empty()) return make_error(ErrorCode::kInvalidArgument, "device tree: {}", error_);
    buf_.resize(fdt_totalsize(buf_.data()));
    return std::move(buf_);
  }

 private:
  void check(int r, const char* what) {
    if (r < 0 && error_.empty()) error_ = fmt::format("{}: {}", what, fdt_strerror(r));
  }
  std::vector<uint8_t> buf_;
  std::string error_;
};

uint64_t split(uint64_t v, int part) { return part == 0 ? v >> 32 : v & 0xffffffff; }

}  // namespace

Result<std::vector<uint8_t>> build_fdt(const FdtConfig& c) {
  FdtWriter w(kMaxDtbBytes);
  w.begin("");
  w.prop("compatible", "linux,dummy-virt");
  w.prop_u32("#address-cells", 2);
  w.prop_u32("#size-cells", 2);
  w.prop_u32("interrupt-parent", kPhandleGic);

  w.begin("chosen");
  w.prop("bootargs", c.cmdline);
  w.prop("stdout-path", fmt::format("/pl011@{:x}", kUartBase));
  if (c.initrd_size != 0) {
    w.prop_u64("linux,initrd-start", c.initrd_addr);
    w.prop_u64("linux,initrd-end", c.initrd_addr + c.initrd_size);
  }
  w.end();

  w.begin(fmt::format("memory@{:x}", c.ram_base));
  w.prop("device_type", "memory");
  w.reg(c.ram_base, c.ram_size);
  w.end();

  w.begin("cpus");
  w.prop_u32("#address-cells", 1);
  w.prop_u32("#size-cells", 0);
  for (uint64_t mpidr : c.mpidrs) {
    w.begin(fmt::format("cpu@{:x}", mpidr));
    w.prop("device_type", "cpu");
    w.prop("compatible", "arm,arm-v8");
    w.prop("enable-method", "psci");
    w.prop_u32("reg", static_cast<uint32_t>(mpidr));
    w.end();
  }
  w.end();

  w.begin("psci");
  w.prop_strings("compatible", {"arm,psci-0.2", "arm,psci"});
  w.prop("method", "hvc");
  w.end();

  uint64_t redist_size = kGicRedistSizePerCpu * c.mpidrs.size();
  w.begin(fmt::format("intc@{:x}", kGicDistBase));
  w.prop("compatible", "arm,gic-v3");
  w.prop_u32("#interrupt-cells", 3);
  w.prop_empty("interrupt-controller");
  w.prop_cells("reg", {uint32_t(split(kGicDistBase, 0)), uint32_t(split(kGicDistBase, 1)), uint32_t(split(kGicDistSize, 0)),
                       uint32_t(split(kGicDistSize, 1)), uint32_t(split(kGicRedistBase, 0)),
                       uint32_t(split(kGicRedistBase, 1)), uint32_t(split(redist_size, 0)),
                       uint32_t(split(redist_size, 1))});
  w.prop_u32("phandle", kPhandleGic);
  w.end();

  // Secure physical, non-secure physical, virtual, hypervisor timer PPIs.
  w.begin("timer");
  w.prop("compatible", "arm,armv8-timer");
  w.prop_cells("interrupts", {kGicPpi, 13, kIrqLevelHigh, kGicPpi, 14, kIrqLevelHigh, kGicPpi, 11, kIrqLevelHigh,
                              kGicPpi, 10, kIrqLevelHigh});
  w.prop_empty("always-on");
  w.end();

  // The PL011's AMBA glue insists on a clock.
  w.begin("apb-pclk");
  w.prop("compatible", "fixed-clock");
  w.prop_u32("#clock-cells", 0);
  w.prop_u32("clock-frequency", 24'000'000);
  w.prop("clock-output-names", "clk24mhz");
  w.prop_u32("phandle", kPhandleClock);
  w.end();

  w.begin(fmt::format("pl011@{:x}", kUartBase));
  w.prop_strings("compatible", {"arm,pl011", "arm,primecell"});
  w.reg(kUartBase, kUartSize);
  w.prop_cells("interrupts", {kGicSpi, kUartSpi, kIrqLevelHigh});
  w.prop_cells("clocks", {kPhandleClock, kPhandleClock});
  w.prop_strings("clock-names", {"uartclk", "apb_pclk"});
  w.prop_u32("arm,primecell-periphid", 0x00241011);
  w.end();

  w.begin(fmt::format("pl061@{:x}", kGpioBase));
  w.prop_strings("compatible", {"arm,pl061", "arm,primecell"});
  w.reg(kGpioBase, kGpioSize);
  w.prop_cells("interrupts", {kGicSpi, kGpioSpi, kIrqLevelHigh});
  w.prop_empty("gpio-controller");
  w.prop_u32("#gpio-cells", 2);
  w.prop_cells("clocks", {kPhandleClock});
  w.prop("clock-names", "apb_pclk");
  w.prop_u32("phandle", kPhandleGpio);
  w.end();

  w.begin("gpio-keys");
  w.prop("compatible", "gpio-keys");
  w.begin("power-button");
  w.prop("label", "power button");
  w.prop_u32("linux,code", kKeyPower);
  w.prop_cells("gpios", {kPhandleGpio, kPowerButtonLine, kGpioActiveHigh});
  w.end();
  w.end();

  for (const auto& v : c.virtio) {
    w.begin(fmt::format("virtio_mmio@{:x}", v.base));
    w.prop("compatible", "virtio,mmio");
    w.reg(v.base, v.size);
    w.prop_cells("interrupts", {kGicSpi, v.spi, kIrqEdgeRising});
    w.prop_empty("dma-coherent");
    w.end();
  }

  w.end();
  return w.finish();
}

}  // namespace snapvm::arch
