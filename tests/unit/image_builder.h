// Builds image layers and image layouts for the image tests, with
// libarchive's writer: tars of given entries, plain, gzip or zstd.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"  // entries name what they set

namespace snapvm::image {

struct Entry {
  std::string path;
  mode_t type = AE_IFREG;
  std::string data;    // file contents
  std::string target;  // symlink target or hard link target
  mode_t perm = 0644;
  bool hardlink = false;
};

// A file's bytes ("" if it cannot be read).
inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A command's stdout and stderr; its exit status in `rc`.
inline std::string shell(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = ::popen(("(" + cmd + ") 2>&1").c_str(), "r");
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  int status = ::pclose(p);
  if (rc != nullptr) *rc = WEXITSTATUS(status);
  return out;
}

// Reads a file out of an ext4 image without mounting it.
inline std::string ext4_cat(const std::string& image, const std::string& path) {
  return shell("debugfs -R 'cat " + path + "' " + image + " 2>/dev/null");
}

enum class Compression { kNone, kGzip, kZstd };

inline void write_layer(const std::string& path, const std::vector<Entry>& entries, Compression c = Compression::kNone) {
  archive* a = archive_write_new();
  if (c == Compression::kGzip) archive_write_add_filter_gzip(a);
  if (c == Compression::kZstd) archive_write_add_filter_zstd(a);
  archive_write_set_format_pax_restricted(a);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
  for (const auto& e : entries) {
    archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.path.c_str());
    archive_entry_set_filetype(ae, e.type);
    archive_entry_set_perm(ae, e.type == AE_IFDIR && e.perm == 0644 ? 0755 : e.perm);
    if (e.hardlink) archive_entry_set_hardlink(ae, e.target.c_str());
    if (e.type == AE_IFLNK) archive_entry_set_symlink(ae, e.target.c_str());
    if (e.type == AE_IFREG && !e.hardlink) archive_entry_set_size(ae, static_cast<la_int64_t>(e.data.size()));
    ASSERT_EQ(archive_write_header(a, ae), ARCHIVE_OK);
    if (!e.data.empty()) archive_write_data(a, e.data.data(), e.data.size());
    archive_entry_free(ae);
  }
  archive_write_close(a);
  archive_write_free(a);
}

}  // namespace snapvm::image
