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
  UniqueFd uffd_socket;  // the page server's connection, open while the VM lives
};

// Each region mapped MAP_PRIVATE from `path` at its offset; the file must
// cover them all.
Result<ExternalMemory> map_memory_file(const std::string& path, const state::ExternalRam& layout);

// Anonymous regions registered with a new userfaultfd for missing pages;
// then, as Firecracker does, connects to the page server at `socket_path`
// and sends it, in one message, the JSON list of regions
// ([{"base_host_virt_addr", "size", "offset", "page_size_kib", "page_size"}])
// with the userfaultfd attached (SCM_RIGHTS).
Result<ExternalMemory> map_with_page_server(const std::string& socket_path, const state::ExternalRam& layout);

}  // namespace snapvm
