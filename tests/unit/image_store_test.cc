// `snapvm image import` end to end on the host: OCI layouts and docker
// archives built here become ext4 root filesystems (read back with
// debugfs, nothing mounted) with the image's run settings; the same image
// again is reused; every refusal leaves the store as it was.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "image/oci.h"
#include "image/store.h"
#include "image_builder.h"

namespace snapvm::image {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;


// A command's stdout and stderr; its exit status in `rc`.
std::string shell(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = ::popen(("(" + cmd + ") 2>&1").c_str(), "r");
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  int status = ::pclose(p);
  if (rc != nullptr) *rc = WEXITSTATUS(status);
  return out;
}

// Reads a file out of an ext4 image without mounting it.
std::string ext4_cat(const std::string& image, const std::string& path) {
  return shell("debugfs -R 'cat " + path + "' " + image + " 2>/dev/null");
}

bool ext4_has(const std::string& image, const std::string& path) {
  std::string cmd = "debugfs -R 'stat " + path + "' " + image + " 2>&1 | grep -q 'File not found'";
  return std::system(cmd.c_str()) != 0;
}

const char* kConfig = R"({"architecture":"ARCH","os":"linux","config":{
  "Entrypoint":["/bin/httpd","-f"],"Cmd":["-p","8080"],"Env":["PATH=/bin","GREETING=hello"],
  "WorkingDir":"/srv","User":"1000:1000","ExposedPorts":{"8080/tcp":{},"53/udp":{}}}})";

class ImageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("snapvm-store-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    options.store = (dir / "store").string();
  }
  void TearDown() override { fs::remove_all(dir); }

  // Stores `path`'s bytes as a blob; returns its descriptor.
  json add_blob(const fs::path& layout, const fs::path& path, const std::string& media) {
    auto digest = sha256_of_file(path.string());
    EXPECT_TRUE(digest);
    fs::create_directories(layout / "blobs/sha256");
    fs::copy_file(path, layout / "blobs/sha256" / digest->substr(7), fs::copy_options::overwrite_existing);
    return {{"mediaType", media}, {"digest", *digest}, {"size", fs::file_size(path)}};
  }
  json add_text_blob(const fs::path& layout, const std::string& text, const std::string& media) {
    const fs::path tmp = dir / "blob.tmp";
    std::ofstream(tmp, std::ios::binary) << text;
    return add_blob(layout, tmp, media);
  }

  // An OCI layout: a busybox-like base and an app layer with whiteouts.
  fs::path make_oci(const std::string& name, std::string extra = "") {
    const fs::path layout = dir / name;
    fs::create_directories(layout);
    write_layer((dir / "l1.tar").string(),
                {{"bin/", AE_IFDIR},
                 {"bin/busybox", AE_IFREG, "#!busybox", "", 0755},
                 {"bin/sh", AE_IFLNK, "", "busybox"},
                 {"etc/", AE_IFDIR},
                 {"etc/hostname", AE_IFREG, "base\n"},
                 {"etc/old.conf", AE_IFREG, "old\n"}},
                Compression::kGzip);
    write_layer((dir / "l2.tar").string(),
                {{"etc/hostname", AE_IFREG, "app" + extra + "\n"},
                 {"etc/.wh.old.conf", AE_IFREG},
                 {"srv/", AE_IFDIR},
                 {"srv/index.html", AE_IFREG, "<h1>hi</h1>\n"}},
                Compression::kZstd);
    std::string config = kConfig;
    config.replace(config.find("ARCH"), 4, host_architecture());
    json manifest = {{"schemaVersion", 2},
                     {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                     {"config", add_text_blob(layout, config, "application/vnd.oci.image.config.v1+json")},
                     {"layers",
                      {add_blob(layout, dir / "l1.tar", "application/vnd.oci.image.layer.v1.tar+gzip"),
                       add_blob(layout, dir / "l2.tar", "application/vnd.oci.image.layer.v1.tar+zstd")}}};
    json index = {{"schemaVersion", 2},
                  {"manifests", {add_text_blob(layout, manifest.dump(), "application/vnd.oci.image.manifest.v1+json")}}};
    std::ofstream(layout / "index.json") << index.dump();
    std::ofstream(layout / "oci-layout") << R"({"imageLayoutVersion":"1.0.0"})";
    return layout;
  }

  std::set<std::string> store_listing() const {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(options.store, ec)) {
      out.insert(e.path().string() + ":" + (e.is_regular_file() ? std::to_string(fs::file_size(e.path())) : "d"));
    }
    return out;
  }

  fs::path dir;
  ImportOptions options;
};

TEST_F(ImageStoreTest, AnOciLayoutBecomesAnExt4RootfsWithTheImagesRunSettings) {
  auto r = import_image(make_oci("oci").string(), "web", options);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_FALSE(r->reused);
  EXPECT_EQ(r->layers, 2u);
  EXPECT_EQ(ext4_cat(r->rootfs, "/etc/hostname"), "app\n") << "the upper layer wins";
  EXPECT_EQ(ext4_cat(r->rootfs, "/srv/index.html"), "<h1>hi</h1>\n");
  EXPECT_TRUE(ext4_has(r->rootfs, "/bin/sh"));
  EXPECT_FALSE(ext4_has(r->rootfs, "/etc/old.conf")) << "whited out";
  EXPECT_FALSE(ext4_has(r->rootfs, "/etc/.wh.old.conf"));
  auto stored = find_image(options.store, "web");
  ASSERT_TRUE(stored) << stored.error().describe();
  EXPECT_EQ(stored->digest, r->digest);
  EXPECT_EQ(stored->architecture, host_architecture());
  EXPECT_EQ(stored->config.entrypoint, (std::vector<std::string>{"/bin/httpd", "-f"}));
  EXPECT_EQ(stored->config.cmd, (std::vector<std::string>{"-p", "8080"}));
  EXPECT_EQ(stored->config.env, (std::vector<std::string>{"PATH=/bin", "GREETING=hello"}));
  EXPECT_EQ(stored->config.working_dir, "/srv");
  EXPECT_EQ(stored->config.user, "1000:1000");
  EXPECT_EQ(stored->config.exposed_tcp_ports, (std::vector<uint16_t>{8080})) << "udp ports are not forwarded";

  // The same image again: nothing rebuilt.
  const auto before = fs::last_write_time(r->rootfs);
  auto again = import_image((dir / "oci").string(), "web", options);
  ASSERT_TRUE(again) << again.error().describe();
  EXPECT_TRUE(again->reused);
  EXPECT_EQ(fs::last_write_time(r->rootfs), before);
  // Another image under that name replaces it.
  auto other = import_image(make_oci("oci2", "2").string(), "web", options);
  ASSERT_TRUE(other) << other.error().describe();
  EXPECT_FALSE(other->reused);
  EXPECT_EQ(ext4_cat(other->rootfs, "/etc/hostname"), "app2\n");
  auto listed = list_images(options.store);
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "web");
}

TEST_F(ImageStoreTest, ADockerSaveTarballImports) {
  const fs::path staging = dir / "docker";
  fs::create_directories(staging / "abc");
  write_layer((staging / "abc/layer.tar").string(), {{"hello.txt", AE_IFREG, "from docker\n"}});
  std::string config = kConfig;
  config.replace(config.find("ARCH"), 4, host_architecture());
  std::ofstream(staging / "cfg.json") << config;
  json manifest = json::array({{{"Config", "cfg.json"}, {"RepoTags", {"web:latest"}}, {"Layers", {"abc/layer.tar"}}}});
  std::ofstream(staging / "manifest.json") << manifest.dump();
  write_layer((dir / "saved.tar").string(),
              {{"manifest.json", AE_IFREG, read_file(staging / "manifest.json")},
               {"cfg.json", AE_IFREG, read_file(staging / "cfg.json")},
               {"abc/", AE_IFDIR},
               {"abc/layer.tar", AE_IFREG, read_file(staging / "abc/layer.tar")}});
  auto r = import_image((dir / "saved.tar").string(), "saved", options);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(ext4_cat(r->rootfs, "/hello.txt"), "from docker\n");
  EXPECT_EQ(r->digest.substr(0, 7), "sha256:");
}

TEST_F(ImageStoreTest, RefusalsSayWhyInOneLineAndLeaveTheStoreAsItWas) {
  ASSERT_TRUE(import_image(make_oci("good").string(), "web", options));
  const auto before = store_listing();
  auto refuse = [&](const fs::path& source, const std::string& says, const std::string& name = "other") {
    auto r = import_image(source.string(), name, options);
    ASSERT_FALSE(r) << source;
    const std::string line = r.error().describe();
    EXPECT_NE(line.find(says), std::string::npos) << line;
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
    EXPECT_EQ(store_listing(), before) << "after: " << line;
  };
  // A layer blob altered after its digest was taken.
  const fs::path tampered = make_oci("tampered");
  json index = json::parse(read_file(tampered / "index.json"));
  json manifest = json::parse(read_file(tampered / "blobs/sha256" / index["manifests"][0]["digest"].get<std::string>().substr(7)));
  std::ofstream(tampered / "blobs/sha256" / manifest["layers"][1]["digest"].get<std::string>().substr(7),
                std::ios::app) << "x";
  refuse(tampered, "does not match its digest");
  // A layer that climbs out of the root.
  const fs::path climbing = dir / "climbing";
  fs::create_directories(climbing);
  write_layer((dir / "evil.tar").string(), {{"../../evil", AE_IFREG, "x"}});
  json evil_manifest = {{"config", add_text_blob(climbing, R"({"config":{}})", "c")},
                        {"layers", {add_blob(climbing, dir / "evil.tar", "l")}}};
  std::ofstream(climbing / "index.json") << json({{"manifests", {add_text_blob(climbing, evil_manifest.dump(), "m")}}}).dump();
  refuse(climbing, "climbs out of the root");
  // Metadata of the wrong shapes, and digests that name other files.
  const fs::path shapes = dir / "shapes";
  fs::create_directories(shapes);
  std::ofstream(shapes / "index.json") << R"({"manifests":[5]})";
  refuse(shapes, "malformed image metadata");
  std::ofstream(shapes / "index.json") << R"({"manifests":[{"digest":"sha256:../../../../etc/passwd"}]})";
  refuse(shapes, "is not a sha256 digest");
  // A docker archive whose manifest points outside it.
  const fs::path docker = dir / "docker-evil";
  fs::create_directories(docker);
  std::ofstream(docker / "manifest.json") << R"([{"Config":"../../etc/passwd","Layers":[]}])";
  refuse(docker, "leaves the archive");
  // Neither kind of image, a bad name, and a tarball with a device in it.
  fs::create_directories(dir / "empty");
  refuse(dir / "empty", "neither an OCI image layout");
  refuse(make_oci("fine"), "image name", "../web");
  write_layer((dir / "dev.tar").string(), {{"dev/sda", AE_IFBLK}});
  refuse(dir / "dev.tar", "device node");
  // And the stored image is still whole.
  auto stored = find_image(options.store, "web");
  ASSERT_TRUE(stored);
  EXPECT_EQ(ext4_cat(stored->rootfs, "/etc/hostname"), "app\n");
}

}  // namespace
}  // namespace snapvm::image

namespace snapvm::image {
namespace {


// An image made by Debian's umoci (two layers, the second deleting a file
// of the first), imported and listed through the command line.
TEST(ImageCli, AnImageBuiltWithUmociImportsAndListsThroughTheCli) {
  const fs::path dir = fs::temp_directory_path() / ("snapvm-umoci-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string d = dir.string(), snapvm = std::string(SNAPVM_BIN_DIR) + "/snapvm";
  int rc = 0;
  const std::string built = shell(
      "set -e; cd " + d + "; umoci init --layout L; umoci new --image L:latest; "
      "umoci unpack --image L:latest b >/dev/null; mkdir -p b/rootfs/bin b/rootfs/etc b/rootfs/srv; "
      "printf one > b/rootfs/etc/motd; printf hi > b/rootfs/srv/index.html; ln -s busybox b/rootfs/bin/sh; "
      "umoci repack --image L:latest b; rm -rf b; umoci unpack --image L:latest b >/dev/null; "
      "rm b/rootfs/etc/motd; printf two > b/rootfs/srv/extra; umoci repack --image L:latest b; "
      "umoci config --image L:latest --config.entrypoint /bin/httpd --config.cmd -f --config.workingdir /srv "
      "--config.exposedports 8080/tcp",
      &rc);
  ASSERT_EQ(rc, 0) << "umoci (tools/setup.sh installs it): " << built;
  const std::string store = " --store " + d + "/store";
  std::string out = shell(snapvm + " image import " + d + "/L app" + store, &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("app: imported 2 layer(s)"), std::string::npos) << out;
  EXPECT_NE(out.find("layer 2/2: 1 files,"), std::string::npos) << out;
  EXPECT_NE(out.find("links, 1 whiteouts"), std::string::npos) << "umoci's whiteout for the deleted file: " << out;
  out = shell(snapvm + " image import " + d + "/L app" + store, &rc);
  EXPECT_NE(out.find("app: already imported"), std::string::npos) << out;
  out = shell(snapvm + " image list" + store, &rc);
  EXPECT_NE(out.find("/bin/httpd -f"), std::string::npos) << out;
  const std::string rootfs = d + "/store/app/rootfs.ext4";
  EXPECT_EQ(ext4_cat(rootfs, "/srv/extra"), "two");
  EXPECT_FALSE(ext4_has(rootfs, "/etc/motd"));
  out = shell(snapvm + " image import " + d + "/nowhere other" + store, &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line: " << out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace snapvm::image
