#include "snapshot/pending_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "base/file_io.h"

namespace snapvm {

Result<PendingFile> PendingFile::create(const std::string& target) {
  if (target.empty() || target.back() == '/') {
    return make_error(ErrorCode::kInvalidArgument, "snapshot path '{}' names no file", target);
  }
  auto slash = target.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : target.substr(0, slash == 0 ? 1 : slash);
  std::string base = slash == std::string::npos ? target : target.substr(slash + 1);
  // Hidden and marked, so a leftover from a killed writer is recognisable.
  std::string tmpl = fmt::format("{}/.{}.snapvm-tmp-XXXXXX", dir, base);
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  int fd = ::mkostemp(buf.data(), O_CLOEXEC);
  if (fd < 0) return errno_error(fmt::format("create temporary file in {}", dir));
  // mkostemp's 0600 stays: a snapshot holds guest RAM (keys, tokens), so
  // only its owner may read it, whatever the umask.
  return PendingFile(target, std::string(buf.data()), UniqueFd(fd));
}

PendingFile::PendingFile(PendingFile&& o) noexcept
    : target_(std::move(o.target_)),
      temp_path_(std::move(o.temp_path_)),
      fd_(std::move(o.fd_)),
      committed_(o.committed_) {
  o.committed_ = true;  // the moved-from shell must not unlink anything
}

PendingFile::~PendingFile() {
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

Status PendingFile::commit() {
  if (::fsync(fd_.get()) != 0) return errno_error(fmt::format("fsync {}", temp_path_));
  if (::rename(temp_path_.c_str(), target_.c_str()) != 0) {
    return errno_error(fmt::format("rename {} to {}", temp_path_, target_));
  }
  committed_ = true;
  fd_.reset();
  // The new name is not durable until its directory entry is.
  return fsync_parent_dir(target_);
}

}  // namespace snapvm
