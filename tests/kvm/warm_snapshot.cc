#include "warm_snapshot.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <tuple>
#include <vector>

namespace snapvm::test {
namespace {

tl::unexpected<std::string> fail(std::string why) { return tl::unexpected(std::move(why)); }

// What makes two configurations' guests differ after boot. Port forwards,
// dirty tracking and the vsock path are the host's side and are given at
// restore.
struct Key {
  uint32_t vcpus;
  uint64_t mem_bytes;
  std::string extra_cmdline;
  std::vector<std::pair<uint64_t, bool>> disks;  // size, read-only
  auto tie() const { return std::tie(vcpus, mem_bytes, extra_cmdline, disks); }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

// A disk the test hands in must read as zeros, like the stand-in the warm
// guest booted with; returns its size, or why not.
tl::expected<uint64_t, std::string> zero_disk_size(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("cannot open the disk " + path);
  struct stat st {};
  ::fstat(fd, &st);
  std::vector<char> buf(1 << 20);
  bool zeros = true;
  for (ssize_t n; zeros && (n = ::read(fd, buf.data(), buf.size())) > 0;) {
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] != 0) {
        zeros = false;
        break;
      }
    }
  }
  ::close(fd);
  if (!zeros) {
    return fail("the disk " + path + " holds data; a warm restore needs disks that are all zeros " +
                          "(the guest read them at boot): start this VM with VmOptions::Start::kBoot");
  }
  return static_cast<uint64_t>(st.st_size);
}

// Owned by the test thread (the suite runs one test at a time per process).
std::map<Key, std::string>& snapshots() {
  static std::map<Key, std::string> made;
  return made;
}

}  // namespace

tl::expected<std::string, std::string> warm_snapshot(const VmOptions& options) {
  Key key{options.vcpus, options.mem_bytes, options.extra_cmdline, {}};
  for (const auto& d : options.disks) {
    auto size = zero_disk_size(d.path);
    if (!size) return fail(size.error());
    key.disks.emplace_back(*size, d.read_only);
  }
  auto& made = snapshots();
  if (auto it = made.find(key); it != made.end()) return it->second;

  const std::string prefix = fmt::format("/tmp/warm-{}-{}", ::getpid(), made.size());
  VmOptions boot = options;
  boot.start = VmOptions::Start::kBoot;
  boot.publish.clear();
  boot.track_dirty = false;
  for (size_t i = 0; i < boot.disks.size(); ++i) {
    boot.disks[i].path = fmt::format("{}-disk{}.img", prefix, i);
    int fd = ::open(boot.disks[i].path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(key.disks[i].first)) != 0) {
      if (fd >= 0) ::close(fd);
      return fail("cannot make the stand-in disk " + boot.disks[i].path);
    }
    ::close(fd);
  }
  const std::string path = prefix + ".snap";
  auto t0 = std::chrono::steady_clock::now();
  {
    BackgroundVm vm(prefix + ".vsock", boot);
    if (!vm.error().empty()) return fail("booting the warm guest: " + vm.error());
    if (!vm.wait_ready()) return fail("the warm guest never became ready: " + vm.console());
    // The agent must answer before the snapshot: every restore expects it up.
    auto probe = run(prefix + ".vsock", {"true"});
    if (!probe.error.empty() || probe.result.exit_code != 0) {
      return fail("the warm guest's agent did not answer: " + probe.error);
    }
    if (!vm.machine().pause()) return fail("the warm guest did not pause");
    auto written = vm.machine().snapshot(path);
    if (!written) return fail("snapshotting the warm guest: " + written.error().describe());
  }
  std::printf("[warm] booted and snapshotted %u vCPUs, %llu MiB, %zu disk(s)%s in %.1f s: %s\n", key.vcpus,
              static_cast<unsigned long long>(key.mem_bytes >> 20), key.disks.size(),
              key.extra_cmdline.empty() ? "" : (", cmdline '" + key.extra_cmdline + "'").c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), path.c_str());
  made.emplace(key, path);
  return path;
}

}  // namespace snapvm::test
