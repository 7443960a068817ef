#include "image/remove.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>

#include "image/catalog.h"
#include "image/scratch_dir.h"
#include "image/store.h"
#include "image/tree.h"

namespace snapvm::image {
namespace {

namespace fs = std::filesystem;

// What the regular files directly in the image's directory hold (an image
// is a flat directory: rootfs.ext4 and image.json).
uint64_t bytes_in(int dir_fd, const std::string& name) {
  uint64_t total = 0;
  const int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return 0;
  const UniqueFd dir(fd);
  auto names = list_names(dir.get(), name);
  if (!names) return 0;
  for (const auto& n : *names) {
    struct stat st {};
    if (::fstatat(dir.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_size);
    }
  }
  return total;
}

}  // namespace

Result<Removed> remove_image(const std::string& store, const std::string& name) {
  SNAPVM_CHECK_OK(check_image_name(name));
  std::error_code ec;
  if (!fs::is_directory(store, ec)) {
    return make_error(ErrorCode::kNotFound, "no image `{}`: there is no image store at {}", name, store);
  }
  auto store_fd = SNAPVM_TRY(open_store(store, false));
  remove_stale_scratch(store_fd.get());
  // Only what is an image: a directory (not a link to one) with an
  // image.json, readable or not (a damaged image can still be removed).
  struct stat st {};
  const std::string meta = name + "/image.json";
  if (::fstatat(store_fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
      ::fstatat(store_fd.get(), meta.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return make_error(ErrorCode::kNotFound, "no image `{}` in {}", name, store);
  }
  Removed removed{name, bytes_in(store_fd.get(), name)};
  auto scratch = SNAPVM_TRY(ScratchDir::create(store_fd.get(), store, name));
  if (::renameat(store_fd.get(), name.c_str(), scratch.fd(), "removed") != 0) {
    return errno_error(fmt::format("move {}/{} aside", store, name));
  }
  // The scratch directory goes, with the image in it, as `scratch` does.
  SNAPVM_CHECK_OK(remove_tree(scratch.fd(), "removed"));
  return removed;
}

}  // namespace snapvm::image
