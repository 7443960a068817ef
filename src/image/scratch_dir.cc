#include "image/scratch_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cerrno>
#include <fstream>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "image/tree.h"

namespace snapvm::image {
namespace {

constexpr std::string_view kPrefix = ".importing-";
constexpr std::string_view kOldPrefix = ".import-";  // earlier versions: .import-NAME-PID

// When the process `pid` started (clock ticks since boot, /proc/PID/stat
// field 22), or nullopt if there is no such process.
std::optional<uint64_t> start_time_of(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!std::getline(in, stat)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: count
  // fields after its closing one.
  size_t at = stat.rfind(')');
  if (at == std::string::npos) return std::nullopt;
  for (int field = 2; field < 22; ++field) {
    at = stat.find(' ', at + 1);
    if (at == std::string::npos) return std::nullopt;
  }
  uint64_t ticks = 0;
  const char* begin = stat.data() + at + 1;
  if (std::from_chars(begin, stat.data() + stat.size(), ticks).ec != std::errc()) return std::nullopt;
  return ticks;
}

std::optional<uint64_t> number(std::string_view s) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// Whether the scratch directory `name` belongs to no running importer.
bool stale(std::string_view name) {
  if (name.starts_with(kPrefix)) {  // PID-START-NAME
    name.remove_prefix(kPrefix.size());
    const size_t dash1 = name.find('-');
    const size_t dash2 = dash1 == std::string_view::npos ? dash1 : name.find('-', dash1 + 1);
    if (dash2 == std::string_view::npos) return false;
    auto pid = number(name.substr(0, dash1));
    auto start = number(name.substr(dash1 + 1, dash2 - dash1 - 1));
    if (!pid || !start || *pid == 0 || *pid > 0x7fffffff) return false;
    return start_time_of(static_cast<pid_t>(*pid)) != start;
  }
  if (name.starts_with(kOldPrefix)) {  // NAME-PID, no start time: gone only if the PID is
    auto pid = number(name.substr(name.rfind('-') + 1));
    if (!pid || *pid == 0 || *pid > 0x7fffffff) return false;
    return !start_time_of(static_cast<pid_t>(*pid));
  }
  return false;
}

}  // namespace

Result<ScratchDir> ScratchDir::create(int store_fd, const std::string& store, const std::string& image_name) {
  const auto start = start_time_of(::getpid());
  if (!start) return make_error(ErrorCode::kIo, "read /proc/self/stat (is /proc mounted?)");
  std::string name = fmt::format("{}{}-{}-{}", kPrefix, ::getpid(), *start, image_name);
  // A directory of that name can only be this process's own, from an
  // import it ran before with the same name that was interrupted.
  SNAPVM_CHECK_OK(remove_tree(store_fd, name));
  if (::mkdirat(store_fd, name.c_str(), 0700) != 0) return errno_error(fmt::format("make {}/{}", store, name));
  UniqueFd fd(::openat(store_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return errno_error(fmt::format("open {}/{}", store, name));
  // mkdir's mode went through the umask; 0700 is what is wanted, no less.
  if (::fchmod(fd.get(), 0700) != 0) return errno_error(fmt::format("chmod {}/{}", store, name));
  std::string path = store + "/" + name;
  return ScratchDir(store_fd, std::move(name), std::move(path), std::move(fd));
}

ScratchDir::~ScratchDir() {
  if (fd_.valid()) (void)remove_tree(store_fd_, name_);
}

void remove_stale_scratch(int store_fd) {
  auto names = list_names(store_fd, "the image store");
  if (!names) return;
  for (const auto& name : *names) {
    if (stale(name)) (void)remove_tree(store_fd, name);
  }
}

}  // namespace snapvm::image
