#include "cli/commands.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/describe.h"
#include "snapshot/raw_memory.h"
#include "snapshot/reader.h"
#include "snapshot/verify.h"
#include "state/snapshot_state.h"
#include "state/two_file.h"

namespace snapvm::cli {
namespace {

int fail(const Error& e, bool json = false) { return report_error(e.describe(), json); }

// A one-line progress meter on a terminal; silent when stderr is a file.
ProgressFn terminal_progress(std::string label) {
  if (!::isatty(STDERR_FILENO)) return {};
  return [label](uint64_t done, uint64_t total) {
    if (total == 0) return;
    fmt::print(stderr, "\r{}: {:3.0f}% ({} of {})\x1b[K", label, 100.0 * done / total, human_bytes(done),
               human_bytes(total));
    if (done >= total) fmt::print(stderr, "\r\x1b[K");
  };
}

}  // namespace

int report_error(const std::string& message, bool json, int exit_code) {
  if (json) {
    nlohmann::ordered_json j{{"error", message}, {"exit_code", exit_code}};
    fmt::print("{}\n", j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    std::fflush(stdout);
  } else {
    fmt::print(stderr, "snapvm: {}\n", message);
  }
  return exit_code;
}

int run_inspect(const std::string& path, bool json) {
  auto file = SnapshotFile::open(path);
  if (!file) return fail(file.error(), json);
  auto st = state::load_state(*file);
  if (!st) return fail(std::move(st.error()).context(path), json);
  if (json) {
    fmt::print("{}\n", describe_json(*file, *st).dump(2));
  } else {
    fmt::print("{}", describe_text(*file, *st));
  }
  return 0;
}

int run_verify(const std::string& path, bool quiet, bool json) {
  auto start = std::chrono::steady_clock::now();
  auto file = SnapshotFile::open(path);
  if (!file) return fail(file.error(), json);
  // Decoding the state checks every record, not just its checksum.
  auto st = state::load_state(*file);
  if (!st) return fail(std::move(st.error()).context(path), json);
  auto report = verify_ram(*file, quiet || json ? ProgressFn{} : terminal_progress("verify"));
  if (!report) return fail(report.error(), json);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (json) {
    nlohmann::ordered_json bad = nlohmann::ordered_json::array();
    for (const auto& b : report->bad_pages) {
      bad.push_back({{"region", b.region}, {"page", b.page}, {"guest_address", b.gpa}, {"file_offset", b.file_offset}});
    }
    nlohmann::ordered_json j{{"file", path},
                             {"ok", report->ok()},
                             {"sections", file->sections().size() + 1},
                             {"ram_regions", file->ram_regions().size()},
                             {"pages_checked", report->pages_checked},
                             {"data_pages", report->data_pages},
                             {"hole_pages", report->pages_checked - report->data_pages},
                             {"bad_page_count", report->bad_page_count},
                             {"bad_pages", bad},
                             {"seconds", secs}};
    if (!report->ok()) {
      j["error"] = fmt::format("{}: {} page(s) fail their checksum", path, report->bad_page_count);
      j["exit_code"] = 1;
    }
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    return report->ok() ? 0 : 1;
  }
  if (!report->ok()) {
    for (const auto& b : report->bad_pages) {
      fmt::print(stderr, "snapvm: {}: RAM region {} page {:#x} (guest address {:#x}, file offset {:#x}): checksum mismatch\n",
                 path, b.region, b.page, b.gpa, b.file_offset);
    }
    if (report->bad_page_count > report->bad_pages.size()) {
      fmt::print(stderr, "snapvm: {}: ... {} bad pages in all\n", path, report->bad_page_count);
    }
    return 1;
  }
  if (!quiet) {
    fmt::print("{}: OK: header, {} sections, {} RAM region(s): {} pages checked ({} stored, {} holes) in {:.3f} s\n", path,
               file->sections().size() + 1, file->ram_regions().size(), report->pages_checked, report->data_pages,
               report->pages_checked - report->data_pages, secs);
  }
  return 0;
}

int run_convert(const std::string& to, const std::vector<std::string>& files) {
  if (files.size() != 3) {
    return fail(Error(ErrorCode::kInvalidArgument, to == "firecracker" ? "convert --to firecracker SNAPSHOT STATE MEM"
                                                                       : "convert --to snapvm STATE MEM SNAPSHOT"));
  }
  WriteOptions options;
  options.progress = terminal_progress("convert");
  if (to == "firecracker") {
    auto s = state::split_snapshot(files[0], files[1], files[2], options);
    if (!s) return fail(s.error());
    fmt::print("{} -> {} (machine state, {}) and {} (guest RAM, {} of data in {})\n", files[0], files[1],
               human_bytes(s->state.file_bytes), files[2], human_bytes(s->memory.data_bytes),
               human_bytes(s->memory.ram_bytes));
  } else {
    auto s = state::join_snapshot(files[0], files[1], files[2], options);
    if (!s) return fail(s.error());
    fmt::print("{} and {} -> {} ({} of data in {} of RAM)\n", files[0], files[1], files[2],
               human_bytes(s->state.data_bytes), human_bytes(s->state.ram_bytes));
  }
  return 0;
}

int run_rebase_mem(const std::string& base, const std::string& diff) {
  auto r = rebase_raw_memory(base, diff);
  if (!r) return fail(r.error());
  fmt::print("{} -> {}: {} copied in {} extent(s)\n", diff, base, human_bytes(r->data_bytes), r->extents);
  return 0;
}

}  // namespace snapvm::cli
