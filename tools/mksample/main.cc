// snapvm-mksample: writes a sample snapshot of a synthetic arm64 machine, for
// the demo, the fuzz corpus and anyone who wants a file to inspect.
#include <chrono>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "base/mapped_region.h"
#include "base/units.h"
#include "snapshot/writer.h"
#include "state/snapshot_state.h"
#include "tools/common/sample_state.h"


int main(int argc, char** argv) {
  CLI::App app{"snapvm-mksample: write a sample snapshot of a synthetic arm64 machine"};
  std::string out, mem = "256M";
  uint32_t vcpus = 2;
  double density = 0.25;
  uint64_t seed = 1;
  std::string writer = "full";
  std::string arch = "arm64";
  app.add_option("OUT", out, "snapshot file to write")->required();
  app.add_option("--mem", mem, "guest RAM size (e.g. 256M, 1G)");
  app.add_option("--cpus", vcpus, "vCPU count")->check(CLI::Range(1, 64));
  app.add_option("--density", density, "fraction of RAM pages holding data")->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", seed, "seed for the synthetic contents");
  app.add_option("--writer", writer, "full or compact")->check(CLI::IsMember({"full", "compact"}));
  app.add_option("--arch", arch, "architecture recorded in the header")->check(CLI::IsMember({"arm64", "x86_64"}));
  CLI11_PARSE(app, argc, argv);

  auto parsed = snapvm::parse_size(mem);
  if (!parsed) {
    fmt::print(stderr, "snapvm-mksample: --mem: {}\n", parsed.error().describe());
    return 1;
  }
  uint64_t bytes = *parsed;
  if (bytes == 0 || bytes % snapvm::format::kPageSize != 0) {
    fmt::print(stderr, "snapvm-mksample: --mem {} is not a positive multiple of 4 KiB\n", mem);
    return 1;
  }
  auto ram = snapvm::MappedRegion::anonymous(bytes);
  if (!ram) {
    fmt::print(stderr, "snapvm-mksample: {}\n", ram.error().describe());
    return 1;
  }
  snapvm::sample::fill_ram(ram->span(), density, seed);
  const bool x86 = arch == "x86_64";
  const uint64_t base = x86 ? snapvm::sample::kX86RamBase : snapvm::sample::kRamBase;
  snapvm::RamExtent extent{base, bytes};
  auto sample_state = x86 ? snapvm::sample::make_x86_state(vcpus, {&extent, 1}, seed)
                          : snapvm::sample::make_state(vcpus, {&extent, 1}, seed);
  auto contents = snapvm::state::to_contents(sample_state);
  snapvm::RamSource src{base, ram->span()};

  auto t0 = std::chrono::steady_clock::now();
  snapvm::Result<snapvm::WriteStats> stats = [&]() -> snapvm::Result<snapvm::WriteStats> {
    if (writer == "compact") {
      auto captured = snapvm::capture_compact({&src, 1});
      if (!captured) return tl::unexpected(captured.error());
      return snapvm::write_compact(out, contents, *captured);
    }
    return snapvm::write_full(out, contents, {&src, 1});
  }();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!stats) {
    fmt::print(stderr, "snapvm-mksample: {}\n", stats.error().describe());
    return 1;
  }
  fmt::print("wrote {} ({} writer): {} MiB RAM, {} MiB data, {} MiB holes, in {:.3f} s\n", out, writer,
             stats->ram_bytes >> 20, stats->data_bytes >> 20, stats->zero_bytes >> 20, secs);
  return 0;
}
