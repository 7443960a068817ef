// Image layers applied onto a root directory: order, whiteouts, opaque
// directories, links, compression; and hostile layers that try to write
// outside the root or carry what an image may not.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
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
  budget = 10 + kCostPerLevel;  // the contents, and the entry one level down
  ASSERT_TRUE(apply({{"six", AE_IFREG, "666666"}}));
  EXPECT_EQ(budget, 4u) << "what a layer writes comes off the image's budget";
  EXPECT_FALSE(apply({{"five", AE_IFREG, "55555"}}));
}

// `.wh..` and `.wh...` name the directory itself and its parent: at the
// top of a layer, the parent is the scratch directory the import builds
// in. Refused, and nothing beside the root goes.
TEST_F(LayerTest, WhiteoutsOfDotAndDotDotAreRefusedAndTheRootsSiblingsSurvive) {
  std::ofstream(dir / "sibling") << "the importer's own file";
  ASSERT_TRUE(apply({{"keep", AE_IFREG, "k"}, {"sub/", AE_IFDIR}, {"sub/inner", AE_IFREG, "i"}}));
  for (const char* whiteout : {".wh...", ".wh..", "sub/.wh...", "sub/.wh..", ".wh."}) {
    auto r = apply({{whiteout, AE_IFREG}});
    ASSERT_FALSE(r) << whiteout;
    EXPECT_NE(r.error().describe().find("names no entry"), std::string::npos) << r.error().describe();
    EXPECT_TRUE(fs::exists(dir / "sibling")) << whiteout;
    EXPECT_TRUE(fs::exists(rootfs("keep"))) << whiteout;
    EXPECT_TRUE(fs::exists(rootfs("sub/inner"))) << whiteout;
  }
}

// Only tar, plain or gzip or zstd, decoded by libarchive itself: xz and
// bzip2 (which libarchive could decode) and lrzip (which it hands to an
// external `lrzip -d`) are refused, and no program is ever started.
TEST_F(LayerTest, OnlyPlainGzipAndZstdLayersAreReadAndNoDecompressorProgramRuns) {
  const std::string tar = (dir / "plain.tar").string();
  write_layer(tar, {{"f", AE_IFREG, "data"}});
  const fs::path bin = dir / "bin", ran = dir / "a-program-ran";
  fs::create_directories(bin);
  for (const char* program : {"lrzip", "lzop", "grzip", "lz4", "lzip", "xz", "bzip2", "gzip", "zstd"}) {
    std::ofstream(bin / program) << "#!/bin/sh\ntouch " << ran.string() << "\ncat >/dev/null\n";
    fs::permissions(bin / program, fs::perms(0755));
  }
  const std::string path = std::getenv("PATH");
  ::setenv("PATH", (bin.string() + ":" + path).c_str(), 1);
  struct Case {
    const char* name;
    std::string command;
  };
  const std::vector<Case> cases = {
      {"xz", "xz -c " + tar},
      {"bzip2", "bzip2 -c " + tar},
      // lrzip's magic and header: libarchive's bidder takes it, then runs `lrzip -d`.
      {"lrzip", "printf 'LRZI\\000\\006\\000\\000\\000\\000\\000\\000\\000\\000'"},
  };
  for (const auto& c : cases) {
    const fs::path layer = dir / (std::string("layer.") + c.name);
    ASSERT_EQ(std::system(("PATH=" + path + " " + c.command + " > " + layer.string()).c_str()), 0) << c.name;
    auto r = apply_layer(layer.string(), root.get(), limits, budget);
    ASSERT_FALSE(r) << c.name;
    EXPECT_NE(r.error().describe().find("not a tar, plain, gzip or zstd"), std::string::npos)
        << c.name << ": " << r.error().describe();
    EXPECT_EQ(r.error().describe().find('\n'), std::string::npos);
    EXPECT_FALSE(fs::exists(rootfs("f"))) << c.name;
  }
  ::setenv("PATH", path.c_str(), 1);
  EXPECT_FALSE(fs::exists(ran)) << "an external decompressor was started";
  // What images use still reads.
  for (auto c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) ASSERT_TRUE(apply({{"ok", AE_IFREG, "x"}}, c));
}

// A FIFO in a layer is made as a FIFO and never opened: applying the layer
// (and a later layer writing through and around it) cannot hang.
TEST_F(LayerTest, AFifoEntryIsMadeAndNeverOpened) {
  auto r = apply({{"run/", AE_IFDIR}, {"run/pipe", AE_IFIFO}, {"run/pipe2", AE_IFIFO, "", "", 04755}});
  ASSERT_TRUE(r) << r.error().describe();
  struct stat st {};
  ASSERT_EQ(::lstat(rootfs("run/pipe").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ASSERT_TRUE(apply({{"run/pipe", AE_IFREG, "now a file"}, {"run/.wh.pipe2", AE_IFREG}}));
  EXPECT_EQ(read_file(rootfs("run/pipe")), "now a file");
  EXPECT_FALSE(fs::exists(rootfs("run/pipe2")));
  // A FIFO where the layer itself should be is refused at once.
  ASSERT_EQ(::mkfifo((dir / "fifo.tar").c_str(), 0600), 0);
  auto fifo = apply_layer((dir / "fifo.tar").string(), root.get(), limits, budget);
  ASSERT_FALSE(fifo);
  EXPECT_NE(fifo.error().describe().find("not a regular file"), std::string::npos) << fifo.error().describe();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// 100 entries 2,000 levels deep took 23 s when every prefix of every path
// was resolved from the root (and a tree that deep crashes mkfs.ext4 -d):
// now refused at once at the depth limit, and 100 entries at that limit
// apply in well under a second.
TEST_F(LayerTest, DeepPathsResolveInLinearTimeAndNestNoDeeperThanTheLimit) {
  budget = 1ull << 30;
  std::string deep;
  for (int i = 0; i < 2000; ++i) deep += "a/";
  std::vector<Entry> entries;
  for (int i = 0; i < 100; ++i) entries.push_back({deep + "f" + std::to_string(i), AE_IFREG});
  auto t0 = std::chrono::steady_clock::now();
  auto r = apply(entries);
  EXPECT_LT(seconds_since(t0), 5.0);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().describe().find("deeper than 512 levels"), std::string::npos) << r.error().describe();

  std::string at_limit;
  for (int i = 0; i < 511; ++i) at_limit += "b/";
  entries.clear();
  for (int i = 0; i < 100; ++i) entries.push_back({at_limit + "f" + std::to_string(i), AE_IFREG, "x"});
  t0 = std::chrono::steady_clock::now();
  auto ok = apply(entries);
  EXPECT_LT(seconds_since(t0), 5.0);
  ASSERT_TRUE(ok) << ok.error().describe();
  EXPECT_EQ(read_file(rootfs(at_limit + "f99")), "x");
  // A symlink does not reach deeper: the directory made through it would
  // lie 513 levels down (c, at 512, is fine).
  auto through_link = apply({{"deep", AE_IFLNK, "", "/" + at_limit}, {"deep/c/d/f", AE_IFREG, "x"}});
  ASSERT_FALSE(through_link);
  EXPECT_NE(through_link.error().describe().find("deeper than 512 levels"), std::string::npos)
      << through_link.error().describe();
}

// 200,000 empty files in one directory (1.2 MB gzipped) cost mkfs.ext4 -d
// minutes (it scans a directory at every insertion): each entry costs the
// budget more the more entries its directory holds, so such a layer is
// refused quickly under the default --max-size.
TEST_F(LayerTest, HundredsOfThousandsOfEntriesInOneDirectoryAreRefusedQuickly) {
  budget = 8ull << 30;  // --max-size's default
  std::vector<Entry> entries;
  for (int i = 0; i < 200000; ++i) entries.push_back({"f" + std::to_string(i), AE_IFREG});
  const std::string layer = (dir / "many.tar.gz").string();
  write_layer(layer, entries, Compression::kGzip);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = apply_layer(layer, root.get(), limits, budget);
  EXPECT_LT(seconds_since(t0), 5.0);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().describe().find("--max-size"), std::string::npos) << r.error().describe();
  // The same entries spread over directories of 1,000 cost little.
  budget = 8ull << 30;
  entries.clear();
  for (int i = 0; i < 20000; ++i) entries.push_back({"d" + std::to_string(i / 1000) + "/f" + std::to_string(i), AE_IFREG});
  auto spread = apply(entries, Compression::kGzip);
  ASSERT_TRUE(spread) << spread.error().describe();
  EXPECT_GT(budget, 7ull << 30);
}

}  // namespace
}  // namespace snapvm::image
