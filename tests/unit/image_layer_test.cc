// Image layers applied onto a root directory: order, whiteouts, opaque
// directories, links, compression; and hostile layers that try to write
// outside the root or carry what an image may not.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "image/layer.h"
#include "image_builder.h"

namespace snapvm::image {
namespace {

namespace fs = std::filesystem;


class LayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("snapvm-layer-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir / "root");
    root.reset(::open((dir / "root").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  void TearDown() override { fs::remove_all(dir); }
  Result<LayerStats> apply(const std::vector<Entry>& entries, Compression c = Compression::kNone) {
    const std::string layer = (dir / ("layer" + std::to_string(++layers) + ".tar")).string();
    write_layer(layer, entries, c);
    return apply_layer(layer, root.get(), limits, budget);
  }
  fs::path rootfs(const std::string& p) const { return dir / "root" / p; }

  fs::path dir;
  UniqueFd root;
  LayerLimits limits;
  uint64_t budget = 1 << 20;
  int layers = 0;
};

TEST_F(LayerTest, LayersApplyInOrderWithWhiteoutsAndOpaqueDirectories) {
  auto first = apply({{"etc/", AE_IFDIR},
                      {"etc/hostname", AE_IFREG, "base\n"},
                      {"etc/old.conf", AE_IFREG, "old\n"},
                      {"var/cache/", AE_IFDIR},
                      {"var/cache/a", AE_IFREG, "a"},
                      {"var/cache/b", AE_IFREG, "b"},
                      {"bin/busybox", AE_IFREG, "#!bb", "", 0755},
                      {"bin/sh", AE_IFLNK, "", "busybox"},
                      {"bin/ls", AE_IFREG, "", "bin/busybox", 0755, true}},
                     Compression::kGzip);
  ASSERT_TRUE(first) << first.error().describe();
  EXPECT_EQ(first->files, 5u);
  EXPECT_EQ(first->hardlinks, 1u);
  EXPECT_EQ(first->symlinks, 1u);
  // The second layer changes a file, deletes one, and replaces /var/cache.
  auto second = apply({{"etc/hostname", AE_IFREG, "app\n"},
                       {"etc/.wh.old.conf", AE_IFREG},
                       {"var/cache/", AE_IFDIR},
                       {"var/cache/.wh..wh..opq", AE_IFREG},
                       {"var/cache/c", AE_IFREG, "c"}},
                      Compression::kZstd);
  ASSERT_TRUE(second) << second.error().describe();
  EXPECT_EQ(second->whiteouts, 2u);
  EXPECT_EQ(read_file(rootfs("etc/hostname")), "app\n");
  EXPECT_FALSE(fs::exists(rootfs("etc/old.conf")));
  EXPECT_FALSE(fs::exists(rootfs("etc/.wh.old.conf"))) << "markers are not files of the image";
  EXPECT_FALSE(fs::exists(rootfs("var/cache/a")));
  EXPECT_FALSE(fs::exists(rootfs("var/cache/b")));
  EXPECT_EQ(read_file(rootfs("var/cache/c")), "c");
  EXPECT_EQ(fs::read_symlink(rootfs("bin/sh")), "busybox");
  struct stat a {}, b {};
  ASSERT_EQ(::stat(rootfs("bin/busybox").c_str(), &a), 0);
  ASSERT_EQ(::stat(rootfs("bin/ls").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "a hard link, not a copy";
  EXPECT_EQ(a.st_mode & 07777, 0755u);
}

TEST_F(LayerTest, SymlinksInTheImageResolveInsideItsRoot) {
  // /lib -> /usr/lib (absolute, as merged-/usr images have), and a link that
  // climbs far above the root: writes through both land inside.
  auto r = apply({{"usr/lib/", AE_IFDIR},
                  {"tmp/", AE_IFDIR},
                  {"lib", AE_IFLNK, "", "/usr/lib"},
                  {"escape", AE_IFLNK, "", "../../../../../../tmp"},
                  {"lib/libc.so", AE_IFREG, "libc"},
                  {"escape/snapvm-layer-escaped", AE_IFREG, "x"}});
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(read_file(rootfs("usr/lib/libc.so")), "libc");
  EXPECT_TRUE(fs::exists(rootfs("tmp/snapvm-layer-escaped")));
  EXPECT_FALSE(fs::exists("/tmp/snapvm-layer-escaped")) << "written outside the root";
  EXPECT_FALSE(fs::exists("/usr/lib/libc.so") && read_file("/usr/lib/libc.so") == "libc");
}

TEST_F(LayerTest, HostileLayersAreRefusedWithOneLine) {
  struct Case {
    const char* what;
    std::vector<Entry> entries;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"dot-dot", {{"../escaped", AE_IFREG, "x"}}, "climbs out of the root"},
      {"nested dot-dot", {{"a/../../escaped", AE_IFREG, "x"}}, "climbs out of the root"},
      {"device", {{"dev/sda", AE_IFBLK}}, "device node"},
      {"char device", {{"dev/mem", AE_IFCHR}}, "device node"},
      {"hard link out", {{"passwd", AE_IFREG, "", "../../etc/passwd", 0644, true}}, "outside the root"},
      {"too big", {{"big", AE_IFREG, std::string(2 << 20, 'b')}}, "more than the"},
  };
  for (const auto& c : cases) {
    auto r = apply(c.entries);
    ASSERT_FALSE(r) << c.what;
    EXPECT_NE(r.error().describe().find(c.says), std::string::npos) << c.what << ": " << r.error().describe();
    EXPECT_EQ(r.error().describe().find('\n'), std::string::npos) << c.what;
  }
  EXPECT_FALSE(fs::exists(dir / "escaped"));
  // Not a tar at all, and a tar cut short.
  const std::string junk = (dir / "junk.tar").string();
  std::ofstream(junk) << "this is not a tar archive";
  EXPECT_FALSE(apply_layer(junk, root.get(), limits, budget));
  write_layer((dir / "whole.tar").string(), {{"f", AE_IFREG, std::string(100000, 'f')}}, Compression::kGzip);
  fs::resize_file(dir / "whole.tar", fs::file_size(dir / "whole.tar") / 2);
  auto cut = apply_layer((dir / "whole.tar").string(), root.get(), limits, budget);
  EXPECT_FALSE(cut);
}

TEST_F(LayerTest, EntryLimitAndSharedByteBudget) {
  limits.max_entries = 3;
  auto many = apply({{"a", AE_IFREG, "1"}, {"b", AE_IFREG, "2"}, {"c", AE_IFREG, "3"}, {"d", AE_IFREG, "4"}});
  ASSERT_FALSE(many);
  EXPECT_NE(many.error().describe().find("more than 3 entries"), std::string::npos);
  limits.max_entries = 100;
  budget = 10;
  ASSERT_TRUE(apply({{"six", AE_IFREG, "666666"}}));
  EXPECT_EQ(budget, 4u) << "what a layer writes comes off the image's budget";
  EXPECT_FALSE(apply({{"five", AE_IFREG, "55555"}}));
}

}  // namespace
}  // namespace snapvm::image
