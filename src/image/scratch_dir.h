// Where an import builds: STORE/.importing-PID-START-NAME, mode 0700, so no
// other user ever reaches the tree being built (it holds the image's
// set-user-ID files, owned as the image says, and its FIFOs). Removed when
// the import ends, however it ends short of SIGKILL; the directory of an
// importer that was killed is removed by the next import, which finds the
// PID in its name gone or reused by another process (the start time in
// the name tells them apart).
#pragma once

#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm::image {

class ScratchDir {
 public:
  // Made in the directory `store_fd` (`store` names it in messages).
  static Result<ScratchDir> create(int store_fd, const std::string& store, const std::string& image_name);
  ScratchDir(ScratchDir&&) = default;
  ScratchDir& operator=(ScratchDir&&) = delete;
  ~ScratchDir();

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }

 private:
  ScratchDir(int store_fd, std::string name, std::string path, UniqueFd fd)
      : store_fd_(store_fd), name_(std::move(name)), path_(std::move(path)), fd_(std::move(fd)) {}

  int store_fd_;
  std::string name_, path_;
  UniqueFd fd_;
};

// Removes the scratch directories in the store whose importer is gone.
void remove_stale_scratch(int store_fd);

}  // namespace snapvm::image
