// Synthetic but realistic machine states (arm64 and x86_64) and RAM images,
// for the demo, the benchmark, the tests and the fuzz corpus. Register ids
// and record sizes are KVM's, so inspect output reads like a real
// snapshot's.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "snapshot/ram_layout.h"
#include "state/snapshot_state.h"

namespace snapvm::sample {

inline constexpr uint64_t kRamBase = 0x4000'0000;  // the arm64 machine's RAM base

inline constexpr uint64_t kX86RamBase = 0;

state::SnapshotState make_state(uint32_t vcpus, std::span<const RamExtent> memory, uint64_t seed = 1);
// The x86_64 machine: 8250 console, virtio-mmio in the hole below 4 GiB,
// vCPU structures and MSRs, PIT/kvmclock/PIC/IOAPIC records.
state::SnapshotState make_x86_state(uint32_t vcpus, std::span<const RamExtent> memory, uint64_t seed = 1);

// Fills `ram` so that about `density` (0..1) of its pages hold pseudo-random
// data and the rest are zero; every page is written, so none is left as the
// kernel's shared zero page. Deterministic for a given seed.
// With cluster_pages > 1, data comes in aligned runs of that many pages, as
// in a real guest (kernel image, page cache, huge pages); 1 scatters single
// pages, the worst case for sparse files.
void fill_ram(std::span<uint8_t> ram, double density, uint64_t seed, uint64_t cluster_pages = 1);

// Deterministic page selection shared by fill_ram and the tests.
bool page_has_data(uint64_t page, double density, uint64_t seed, uint64_t cluster_pages = 1);

uint64_t mix64(uint64_t x);

}  // namespace snapvm::sample
