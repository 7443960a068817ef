// A snapshot under construction: a temp file beside the target that replaces
// the target only once it is complete and durable. Whatever happens before
// commit() (an error, ENOSPC, SIGKILL), the file at the target path is the old
// one, untouched; on every error path the destructor removes the temp file.
#pragma once

#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm {

class PendingFile {
 public:
  static Result<PendingFile> create(const std::string& target);

  PendingFile(PendingFile&& o) noexcept;
  PendingFile& operator=(PendingFile&&) = delete;
  ~PendingFile();

  int fd() const { return fd_.get(); }
  const std::string& temp_path() const { return temp_path_; }

  // fsync the data, rename over the target, fsync the directory.
  Status commit();

 private:
  PendingFile(std::string target, std::string temp, UniqueFd fd)
      : target_(std::move(target)), temp_path_(std::move(temp)), fd_(std::move(fd)) {}

  std::string target_;
  std::string temp_path_;
  UniqueFd fd_;
  bool committed_ = false;
};

}  // namespace snapvm
