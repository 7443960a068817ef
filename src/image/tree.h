// Removing a directory tree that an image built (a whited-out directory,
// or a whole scratch tree), whatever its depth or width: one directory
// open at a time and each directory read once, so neither the descriptor
// limit nor time grows with depth beyond the tree's size. Symlinks are
// removed, never followed.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace snapvm::image {

// Removes `name` in `dir_fd` with everything in it; nothing there is fine.
// `name` is one component, never "." or "..".
Status remove_tree(int dir_fd, const std::string& name);

// The names in the directory `dir_fd` (not "." and ".."); `what` names it
// in messages.
Result<std::vector<std::string>> list_names(int dir_fd, const std::string& what);

}  // namespace snapvm::image
