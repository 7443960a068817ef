// Guest RAM for a snapshot that keeps it in a separate memory file
// (Firecracker's two-file layout, state/external_ram.h): mapped
// copy-on-write from the file, as snapvm's own restore maps its snapshots,
// or served page by page by a userfaultfd page server, with Firecracker's
// handshake.
#pragma once

#include <string>
#include <vector>

#include "base/mapped_region.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "state/external_ram.h"

namespace snapvm {

struct ExternalMemory {
  std::vector<MappedRegion> regions;  // one per ExternalRam region, in order
  // The userfaultfd the page server serves (kept open for the VM's life: if
  // it closed, faults on pages never served would read zeros, silently).
  UniqueFd uffd;
  // What hand_to_page_server sends: the JSON list of regions.
  std::string handshake;
};

// Each region mapped MAP_PRIVATE from `path` at its offset; the file must
// cover them all.
Result<ExternalMemory> map_memory_file(const std::string& path, const state::ExternalRam& layout);

// Anonymous regions registered with a new userfaultfd for missing pages.
// Nothing is sent yet: until hand_to_page_server, a fault on them waits,
// so the VMM must not touch them before then.
Result<ExternalMemory> register_for_page_server(const state::ExternalRam& layout);

// Firecracker's handshake: connects to the page server at `socket_path` and
// sends it, in one message, the JSON list of regions
// ([{"base_host_virt_addr", "size", "offset", "page_size_kib", "page_size"}])
// (ExternalMemory::handshake) with `uffd` attached (SCM_RIGHTS). Returns the connection, to be
// kept open while the VM lives (page servers may watch it to learn when the
// VM is gone).
//
// The userfaultfd is as powerful as ptrace over the VMM: the page server
// can register any range of the VMM's address space with it (its heap, its
// stacks), not only guest RAM, and fill pages there with its own bytes. So
// the restore sends it only after the snapshot's state has been checked,
// and the page server must be as trusted as the VMM itself.
Result<UniqueFd> hand_to_page_server(const std::string& socket_path, int uffd, const std::string& handshake);

}  // namespace snapvm
