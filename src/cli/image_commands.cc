#include "cli/image_commands.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/progress.h"
#include "base/units.h"
#include "cli/commands.h"
#include "cli/image_describe.h"
#include "image/interrupt.h"
#include "image/remove.h"
#include "image/store.h"
#include "sandbox/seccomp.h"

// LeakSanitizer's entry point where the build has it (see the import below).
extern "C" void __lsan_do_leak_check() __attribute__((weak));

namespace snapvm::cli {
namespace {

struct ImageOptions {
  std::string source, name, store = image::default_store(), max_size = "8G";
  std::vector<std::string> names;  // rm
  bool shared = false, allow_other_arch = false, quiet = false;
  bool json = false;
};

// Byte meters are drawn only for steps this large: a smaller one is over
// before a person could read it.
constexpr uint64_t kMeteredFrom = 8 << 20;

// ImportOptions::bytes drawn as one ByteProgress per step.
class ImportMeters {
 public:
  explicit ImportMeters(ByteProgress::Style style) : style_(style) {}

  void operator()(const std::string& step, uint64_t done, uint64_t total) {
    if (step != step_) {
      meter_ = std::make_shared<ByteProgress>(step, total, style_, kMeteredFrom);
      step_ = step;
    }
    if (!meter_) return;  // this step is done
    meter_->update(done);
    if (done >= total) meter_.reset();  // the step's last call: cleared before its summary line
  }

 private:
  ByteProgress::Style style_;
  std::string step_;
  std::shared_ptr<ByteProgress> meter_;  // shared: std::function copies what it holds
};

int run_import(const ImageOptions& o) {
  auto max = parse_size_flag("--max-size", o.max_size);
  if (!max) return report_error(max.error().describe(), false, 2);
  image::ImportOptions io;
  io.store = o.store;
  io.max_bytes = *max;
  io.shared = o.shared;
  io.allow_other_arch = o.allow_other_arch;
  const auto t0 = std::chrono::steady_clock::now();
  if (!o.quiet) {
    io.progress = [t0](const std::string& line) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fmt::print(stderr, "[{:6.1f} s] {}\n", s, line);
    };
    io.bytes = ImportMeters(ByteProgress::style_for(STDERR_FILENO, o.quiet));
  }
  // A hostile archive is unpacked under the import filter: files only, no
  // socket, no ptrace or mount. SNAPVM_SECCOMP=log|off as for the VMM.
  const char* mode = std::getenv("SNAPVM_SECCOMP");
  const std::string seccomp = mode != nullptr && *mode != '\0' ? mode : "enforce";
  if (seccomp != "off") {
    if (auto s = sandbox::enable(seccomp == "log" ? sandbox::Mode::kLog : sandbox::Mode::kEnforce); !s) {
      fmt::print(stderr, "snapvm image import: {}\n", s.error().describe());
      return 1;
    }
    // In an ASan build LeakSanitizer would check at exit by ptracing the
    // process, which this filter refuses on the thread that exits: it
    // checks now instead (a weak symbol, absent from other builds).
    if (__lsan_do_leak_check != nullptr) __lsan_do_leak_check();
    sandbox::enter_or_die(sandbox::ThreadKind::kImport);
  }
  auto r = image::import_image(o.source, o.name, io);
  if (!r) {
    fmt::print(stderr, "snapvm image import: {}\n", r.error().describe());
    // The import stopped for a signal and cleaned up: now the signal ends
    // the command, so its caller sees what happened.
    if (const int sig = image::interrupting_signal(); sig != 0) {
      ::signal(sig, SIG_DFL);
      ::raise(sig);
    }
    return 1;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (r->reused) {
    fmt::print("{}: already imported ({}), {}\n", r->name, r->digest.substr(0, 19), r->rootfs);
  } else {
    fmt::print("{}: imported {} layer(s), {:.1f} MiB of files, into {} ({:.1f} MiB) in {:.1f} s\n", r->name,
               r->layers, r->content_bytes / 1048576.0, r->rootfs, r->rootfs_bytes / 1048576.0, s);
  }
  return 0;
}

int run_list(const ImageOptions& o) {
  auto images = image::list_images(o.store);
  if (!images) return report_error("image list: " + images.error().describe(), o.json);
  if (o.json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& i : *images) {
      list.push_back({{"name", i.name},
                      {"architecture", i.architecture},
                      {"digest", i.digest},
                      {"rootfs", i.rootfs},
                      {"rootfs_bytes", i.rootfs_bytes},
                      {"entrypoint", i.config.entrypoint},
                      {"cmd", i.config.cmd},
                      {"env", i.config.env},
                      {"working_dir", i.config.working_dir},
                      {"user", i.config.user},
                      {"exposed_tcp_ports", i.config.exposed_tcp_ports}});
    }
    fmt::print("{}\n", list.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    return 0;
  }
  fmt::print("{:<24} {:<8} {:>10}  {:<19}  {}\n", "NAME", "ARCH", "ROOTFS", "DIGEST", "COMMAND");
  for (const auto& i : *images) {
    std::vector<std::string> command = i.config.entrypoint;
    command.insert(command.end(), i.config.cmd.begin(), i.config.cmd.end());
    fmt::print("{:<24} {:<8} {:>7.1f} MiB  {:<19}  {}\n", i.name, i.architecture, i.rootfs_bytes / 1048576.0,
               i.digest.substr(0, 19), fmt::join(command, " "));
  }
  return 0;
}

int run_rm(const ImageOptions& o) {
  int rc = 0;
  for (const auto& name : o.names) {
    if (auto valid = image::check_image_name(name); !valid) {
      rc = std::max(rc, report_error("image rm: " + valid.error().describe(), false, 2));
      continue;
    }
    auto removed = image::remove_image(o.store, name);
    if (!removed) {
      rc = std::max(rc, report_error("image rm: " + removed.error().describe(), false));
      continue;
    }
    fmt::print("{}: removed ({:.1f} MiB freed)\n", removed->name, removed->bytes / 1048576.0);
  }
  return rc;
}

int run_inspect(const ImageOptions& o) {
  if (auto valid = image::check_image_name(o.name); !valid) {
    return report_error("image inspect: " + valid.error().describe(), o.json, 2);
  }
  auto found = image::find_image(o.store, o.name);
  if (!found) return report_error("image inspect: " + found.error().describe(), o.json);
  if (o.json) {
    const auto j = describe_image_json(*found);
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
  } else {
    fmt::print("{}", describe_image_text(*found));
  }
  return 0;
}

}  // namespace

std::function<int()> register_image_commands(CLI::App& app) {
  auto o = std::make_shared<ImageOptions>();
  auto* image = app.add_subcommand("image", "Container images as root filesystems: import, list, inspect, rm");
  image->require_subcommand(1);
  auto* import = image->add_subcommand(
      "import", "Import an OCI image layout or a `docker save` tarball as NAME (an ext4 root filesystem and the "
                "image's entrypoint, env, working dir, user and ports). Pull one first with skopeo, e.g. "
                "`skopeo copy docker://docker.io/library/alpine:3.19 oci:alpine:3.19`");
  import->add_option("SOURCE", o->source,
                     "oci:DIR[:TAG] (an OCI layout; TAG picks the manifest by its ref.name), "
                     "docker-archive:PATH[:TAG] (a docker save tarball, plain, gzip or zstd; TAG picks among its "
                     "RepoTags), or the path of either. Without TAG the source must hold one image; a "
                     "multi-platform image yields this host's architecture")
      ->required();
  import->add_option("NAME", o->name,
                     "name in the store (default: the tag's image name and tag, as alpine:3.19, else the directory's "
                     "or tarball's name)");
  import->add_option("--max-size", o->max_size,
                     "refuse images whose files add up to more (each entry also costs: 256 bytes a directory "
                     "level of its path, 32 bytes an entry already in its directory)")
      ->capture_default_str();
  import->add_flag("--shared", o->shared,
                   "let every user read the stored image (directory 0755, files 0644; default 0700 and 0600)");
  import->add_flag("--allow-other-arch", o->allow_other_arch,
                   "import an image whose config names another architecture than this host's (refused otherwise)");
  import->add_flag("--quiet,-q", o->quiet,
                   "no progress on stderr (by default: a line per step, and byte counts on large layers and the "
                   "filesystem build, redrawn in place on a terminal, at each quarter otherwise)");
  auto* list = image->add_subcommand("list", "List the images in the store");
  list->add_flag("--json", o->json, "the images (or the error) as JSON on stdout");
  auto* inspect = image->add_subcommand(
      "inspect", "Show a stored image: digest, architecture, os, created, sizes, layers, entrypoint, cmd, env, "
                 "working dir, user, ports");
  inspect->add_option("NAME", o->name, "the image's name in the store")->required();
  inspect->add_flag("--json", o->json, "one JSON object (or the error) on stdout");
  auto* rm = image->add_subcommand(
      "rm", "Remove images from the store, and their files (images share none). A VM already running from one "
            "keeps its open root filesystem until it ends");
  rm->add_option("NAME", o->names, "the images' names")->required();
  for (auto* c : {import, list, inspect, rm}) {
    c->add_option("--store", o->store, "the image store (SNAPVM_IMAGE_STORE)")->capture_default_str();
  }
  return [o, import, list, inspect, rm]() -> int {
    if (import->parsed()) return run_import(*o);
    if (list->parsed()) return run_list(*o);
    if (inspect->parsed()) return run_inspect(*o);
    if (rm->parsed()) return run_rm(*o);
    return -1;
  };
}

}  // namespace snapvm::cli
