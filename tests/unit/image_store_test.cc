// `snapvm image import` end to end on the host: OCI layouts and docker
// archives built here become ext4 root filesystems (read back with
// debugfs, nothing mounted) with the image's run settings; the same image
// again is reused; every refusal leaves the store as it was.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "image/interrupt.h"
#include "image/oci.h"
#include "image/store.h"
#include "image_builder.h"

namespace snapvm::image {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;


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

  // A `docker save` tarball: manifest.json naming cfg.json and the given
  // layers, whose diff_ids the config lists (`diff_ids` overrides them).
  // `extra` entries are added first (links, FIFOs...).
  fs::path make_docker(const std::string& name, const std::vector<std::pair<std::string, std::string>>& layers,
                       std::vector<Entry> extra = {}, std::vector<std::string> diff_ids = {},
                       const std::string& config_path = "cfg.json") {
    std::string config = kConfig;
    config.replace(config.find("ARCH"), 4, host_architecture());
    json cfg = json::parse(config);
    json layer_paths = json::array();
    std::vector<Entry> entries = std::move(extra);
    for (size_t i = 0; i < layers.size(); ++i) {
      layer_paths.push_back(layers[i].first);
      if (i >= diff_ids.size()) {
        const fs::path tmp = dir / "diff.tmp";
        std::ofstream(tmp, std::ios::binary) << layers[i].second;
        diff_ids.push_back(*sha256_of_file(tmp.string()));
      }
      if (!layers[i].second.empty()) entries.push_back({layers[i].first, AE_IFREG, layers[i].second});
    }
    cfg["rootfs"] = {{"type", "layers"}, {"diff_ids", diff_ids}};
    if (config_path == "cfg.json") entries.push_back({"cfg.json", AE_IFREG, cfg.dump()});
    json manifest = json::array({{{"Config", config_path}, {"RepoTags", {name + ":latest"}}, {"Layers", layer_paths}}});
    entries.push_back({"manifest.json", AE_IFREG, manifest.dump()});
    const fs::path tarball = dir / (name + ".tar");
    write_layer(tarball.string(), entries);
    return tarball;
  }
  std::string layer_bytes(const std::vector<Entry>& entries) {
    write_layer((dir / "layer.tmp").string(), entries);
    return read_file(dir / "layer.tmp");
  }
  // Every regular file under the store, read: what a local user could find.
  std::string store_contents() const {
    std::string all;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(options.store, ec)) {
      if (e.is_regular_file()) all += read_file(e.path());
    }
    return all;
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
  const std::string layer = layer_bytes({{"hello.txt", AE_IFREG, "from docker\n"}});
  // Old docker save wrote a repeated layer as a link to its first copy:
  // links inside the archive still resolve, inside it.
  auto r = import_image(make_docker("saved", {{"abc/layer.tar", layer}, {"def/layer.tar", ""}},
                                    {{"abc/", AE_IFDIR}, {"def/", AE_IFDIR}, {"def/layer.tar", AE_IFLNK, "", "../abc/layer.tar"}},
                                    {*sha256_of_file((dir / "layer.tmp").string()), *sha256_of_file((dir / "layer.tmp").string())})
                            .string(),
                        "saved", options);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(ext4_cat(r->rootfs, "/hello.txt"), "from docker\n");
  EXPECT_EQ(r->digest.substr(0, 7), "sha256:");
  EXPECT_EQ(r->layers, 2u);
}

// A docker archive's members are opened inside it: a layer or config that
// is a link to a host file (or lies under a directory link to one) brings
// nothing of that file into the store, where any user could read it.
TEST_F(ImageStoreTest, DockerArchiveMembersLinkedToHostFilesAreRefused) {
  const fs::path host = dir / "host";
  fs::create_directories(host);
  write_layer((host / "backup.tar").string(), {{"secret.txt", AE_IFREG, "TOPSECRET-LAYER"}});
  std::ofstream(host / "config.json") << R"({"config":{"Env":["TOPSECRET-CONFIG=1"]},"rootfs":{"diff_ids":[]}})";
  const std::string backup_diff_id = *sha256_of_file((host / "backup.tar").string());
  struct Case {
    const char* what;
    fs::path tarball;
  };
  const std::vector<Case> cases = {
      {"layer link", make_docker("l1", {{"l.tar", ""}}, {{"l.tar", AE_IFLNK, "", (host / "backup.tar").string()}},
                                 {backup_diff_id})},
      {"relative layer link", make_docker("l2", {{"l.tar", ""}},
                                          {{"l.tar", AE_IFLNK, "", "../../../../../../../../" + (host / "backup.tar").string()}},
                                          {backup_diff_id})},
      {"directory link", make_docker("l3", {{"hostdir/backup.tar", ""}}, {{"hostdir", AE_IFLNK, "", host.string()}},
                                     {backup_diff_id})},
      {"config link", make_docker("c1", {}, {{"cfg.json", AE_IFLNK, "", (host / "config.json").string()}}, {},
                                  "cfg-link.json")},
  };
  // (the config case's manifest names cfg-link.json; make it the link)
  write_layer(cases[3].tarball.string(),
              {{"cfg-link.json", AE_IFLNK, "", (host / "config.json").string()},
               {"manifest.json", AE_IFREG, R"([{"Config":"cfg-link.json","Layers":[]}])"}});
  for (const auto& c : cases) {
    auto r = import_image(c.tarball.string(), "victim", options);
    ASSERT_FALSE(r) << c.what;
    const std::string line = r.error().describe();
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
    EXPECT_TRUE(line.find("is not in the image") != std::string::npos ||
                line.find("is a symbolic link") != std::string::npos)
        << c.what << ": " << line;
    EXPECT_FALSE(fs::exists(fs::path(options.store) / "victim")) << c.what;
    EXPECT_EQ(store_contents().find("TOPSECRET"), std::string::npos) << c.what;
  }
}

TEST_F(ImageStoreTest, ADockerLayerThatDoesNotMatchItsDiffIdIsRefused) {
  layer_bytes({{"a", AE_IFREG, "good"}});
  const std::string good_id = *sha256_of_file((dir / "layer.tmp").string());
  const std::string evil = layer_bytes({{"a", AE_IFREG, "evil"}});
  auto r = import_image(make_docker("swapped", {{"l/layer.tar", evil}}, {}, {good_id}).string(), "swapped", options);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().describe().find("does not match the config's diff_id"), std::string::npos)
      << r.error().describe();
  // A config without diff_ids vouches for no layer.
  write_layer((dir / "noids.tar").string(),
              {{"l.tar", AE_IFREG, evil},
               {"cfg.json", AE_IFREG, R"({"config":{}})"},
               {"manifest.json", AE_IFREG, R"([{"Config":"cfg.json","Layers":["l.tar"]}])"}});
  auto noids = import_image((dir / "noids.tar").string(), "noids", options);
  ASSERT_FALSE(noids);
  EXPECT_NE(noids.error().describe().find("no rootfs.diff_ids"), std::string::npos) << noids.error().describe();
}

// An image stored before its layers were verified (no "layers_verified"
// in image.json, as docker archives were imported) is rebuilt, never
// reused for the same config digest.
TEST_F(ImageStoreTest, AnImageWhoseLayersWereNotVerifiedIsNeverReused) {
  const fs::path tarball = make_docker("app", {{"l/layer.tar", layer_bytes({{"a", AE_IFREG, "real"}})}});
  auto first = import_image(tarball.string(), "app", options);
  ASSERT_TRUE(first) << first.error().describe();
  const fs::path meta = fs::path(options.store) / "app/image.json";
  json j = json::parse(read_file(meta));
  EXPECT_EQ(j["layers_verified"], true);
  j.erase("layers_verified");
  fs::permissions(meta, fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(meta) << j.dump();
  auto again = import_image(tarball.string(), "app", options);
  ASSERT_TRUE(again) << again.error().describe();
  EXPECT_FALSE(again->reused);
  auto third = import_image(tarball.string(), "app", options);
  ASSERT_TRUE(third);
  EXPECT_TRUE(third->reused);
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// Whether the user nobody can see into `p` (run in a child that drops to it).
bool nobody_can_stat(const fs::path& p) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    struct stat st {};
    ::_exit(::stat(p.c_str(), &st) == 0 ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// The tree being built holds the image's set-user-ID files as the image
// owns them: no other user may reach it, nor the stored image unless
// shared.
TEST_F(ImageStoreTest, TheScratchTreeAndTheStoreAreTheImportersAlone) {
  ASSERT_EQ(::geteuid(), 0u) << "needs root to own files as the image says and to drop to nobody";
  const fs::path tarball = make_docker(
      "suid", {{"l/layer.tar", layer_bytes({{"bin/", AE_IFDIR}, {"bin/id", AE_IFREG, "#!/bin/sh\nid\n", "", 04755}})}});
  std::vector<std::string> seen;
  options.progress = [&](const std::string& line) {
    if (line.find("layer 1/1") == std::string::npos) return;
    for (const auto& e : fs::directory_iterator(options.store)) {
      if (!e.path().filename().string().starts_with(".importing-")) continue;
      seen.push_back(e.path().string());
      EXPECT_EQ(mode_of(e.path()), 0700u);
      const fs::path id = e.path() / "rootfs/bin/id";
      EXPECT_EQ(mode_of(id), 04755u) << "the guest's binary keeps its bits";
      EXPECT_FALSE(nobody_can_stat(id)) << "another user reaches a set-user-ID file being built";
    }
  };
  auto r = import_image(tarball.string(), "suid", options);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(seen.size(), 1u);
  EXPECT_EQ(mode_of(options.store), 0700u);
  EXPECT_EQ(mode_of(fs::path(options.store) / "suid"), 0700u);
  EXPECT_EQ(mode_of(fs::path(options.store) / "suid/rootfs.ext4"), 0600u);
  EXPECT_EQ(mode_of(fs::path(options.store) / "suid/image.json"), 0600u);
  for (const auto& p : seen) EXPECT_FALSE(fs::exists(p)) << "scratch left behind";
  // Shared on request: readable by all, still written by the importer only.
  options.progress = nullptr;
  options.shared = true;
  auto shared = import_image(make_oci("oci").string(), "pub", options);
  ASSERT_TRUE(shared) << shared.error().describe();
  EXPECT_EQ(mode_of(fs::path(options.store) / "pub"), 0755u);
  EXPECT_EQ(mode_of(fs::path(options.store) / "pub/rootfs.ext4"), 0644u);
  EXPECT_EQ(mode_of(fs::path(options.store) / "pub/image.json"), 0644u);
  // A store other users may write is refused.
  fs::permissions(options.store, fs::perms(0777));
  auto open_store = import_image(make_oci("oci2").string(), "x", options);
  ASSERT_FALSE(open_store);
  EXPECT_NE(open_store.error().describe().find("other users can change it"), std::string::npos);
}

// Runs `f` in a child process; false if it had not finished after `limit`.
template <typename F>
bool finishes_within(std::chrono::seconds limit, F f) {
  pid_t pid = ::fork();
  if (pid == 0) {
    f();
    ::_exit(0);
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// A FIFO where the import expects a file (manifest, config, layer, or the
// source itself) is refused at once; one inside a layer is made as a
// FIFO. Nothing waits for a writer.
TEST_F(ImageStoreTest, FifosNeverHoldTheImport) {
  const std::vector<fs::path> tarballs = {
      [&] {
        write_layer((dir / "m.tar").string(), {{"manifest.json", AE_IFIFO}});
        return dir / "m.tar";
      }(),
      make_docker("cfgfifo", {}, {{"fifo.json", AE_IFIFO}}, {}, "fifo.json"),
      make_docker("layerfifo", {{"l.tar", ""}}, {{"l.tar", AE_IFIFO}}, {std::string("sha256:") + std::string(64, '0')}),
      make_docker("inside", {{"l/layer.tar", layer_bytes({{"run/", AE_IFDIR}, {"run/fifo", AE_IFIFO}})}}),
  };
  ASSERT_EQ(::mkfifo((dir / "source.fifo").c_str(), 0600), 0);
  for (const auto& t : tarballs) {
    EXPECT_TRUE(finishes_within(std::chrono::seconds(20), [&] {
      auto r = import_image(t.string(), "f", options);
      if (t.filename() == "inside.tar") ::_exit(r ? 0 : 3);
      ::_exit(r ? 4 : 0);
    })) << t;
  }
  EXPECT_TRUE(finishes_within(std::chrono::seconds(20), [&] {
    ::_exit(import_image((dir / "source.fifo").string(), "f", options) ? 4 : 0);
  }));
  auto inside = import_image(tarballs[3].string(), "inside", options);
  ASSERT_TRUE(inside) << inside.error().describe();
  EXPECT_NE(shell("debugfs -R 'stat /run/fifo' " + inside->rootfs), "");
  EXPECT_NE(shell("debugfs -R 'stat /run/fifo' " + inside->rootfs).find("Type: FIFO"), std::string::npos);
}

// SIGTERM (or SIGINT, SIGHUP) during an import stops it at its next step
// and removes its scratch directory; the signal is reported, and the
// process's own handling of it is back once the import returns.
TEST_F(ImageStoreTest, AnInterruptedImportRemovesItsScratchDirectory) {
  struct sigaction before {};
  ::sigaction(SIGTERM, nullptr, &before);
  options.progress = [&](const std::string& line) {
    if (line.find("layer 1/") != std::string::npos) ::raise(SIGTERM);
  };
  auto r = import_image(make_oci("oci").string(), "web", options);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().describe().find("interrupted by SIGTERM"), std::string::npos) << r.error().describe();
  EXPECT_EQ(interrupting_signal(), SIGTERM);
  for (const auto& e : fs::directory_iterator(options.store)) ADD_FAILURE() << "left behind: " << e.path();
  struct sigaction after {};
  ::sigaction(SIGTERM, nullptr, &after);
  EXPECT_EQ(after.sa_handler, before.sa_handler);
}

// A killed importer's scratch directory (SIGKILL cannot be caught) goes at
// the next import; a running importer's stays.
TEST_F(ImageStoreTest, TheNextImportRemovesTheScratchOfADeadImporter) {
  fs::create_directories(options.store);
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const fs::path store(options.store);
  const fs::path stale = store / fmt::format(".importing-{}-12345-web", dead);
  const fs::path old_style = store / fmt::format(".import-web-{}", dead);
  const fs::path live = store / fmt::format(".importing-{}-1-other", ::getppid());  // a live PID, another start time
  const fs::path running = store / fmt::format(".importing-1-{}-other", [] {
    std::ifstream in("/proc/1/stat");
    std::string s;
    std::getline(in, s);
    std::istringstream fields(s.substr(s.rfind(')') + 2));
    std::string f;
    for (int i = 3; i <= 22; ++i) fields >> f;
    return f;
  }());
  for (const auto& p : {stale, old_style, live, running}) {
    fs::create_directories(p / "rootfs/bin/deep/er");
    std::ofstream(p / "rootfs/bin/id") << "x";
  }
  ASSERT_TRUE(import_image(make_oci("oci").string(), "web", options));
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(old_style));
  EXPECT_FALSE(fs::exists(live)) << "that PID runs, but started at another time: a reused PID";
  EXPECT_TRUE(fs::exists(running)) << "an importer still running";
  fs::remove_all(running);
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
  refuse(docker, "leaves the image");
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


// SIGTERM to `snapvm image import` while mkfs.ext4 runs (here a stand-in
// that never finishes): mkfs is stopped, the scratch directory removed,
// and the command ends by that signal.
TEST(ImageCli, SigtermStopsAnImportAndLeavesNoScratchDirectory) {
  const fs::path dir = fs::temp_directory_path() / ("snapvm-sigterm-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "bin");
  fs::create_directories(dir / "src/l");
  write_layer((dir / "src/l/layer.tar").string(), {{"hello", AE_IFREG, "hi"}});
  const std::string id = *sha256_of_file((dir / "src/l/layer.tar").string());
  std::ofstream(dir / "src/cfg.json") << R"({"config":{},"rootfs":{"type":"layers","diff_ids":[")" << id << R"("]}})";
  std::ofstream(dir / "src/manifest.json") << R"([{"Config":"cfg.json","Layers":["l/layer.tar"]}])";
  const fs::path pid_file = dir / "mkfs.pid";
  std::ofstream(dir / "bin/mkfs.ext4") << "#!/bin/sh\necho $$ > " << pid_file.string() << ".tmp\nmv "
                                      << pid_file.string() << ".tmp " << pid_file.string() << "\nexec sleep 60\n";
  fs::permissions(dir / "bin/mkfs.ext4", fs::perms(0755));
  const std::string snapvm = std::string(SNAPVM_BIN_DIR) + "/snapvm", path = dir.string() + "/bin:" + std::getenv("PATH");
  const std::string store = (dir / "store").string(), src = (dir / "src").string(), log = (dir / "log").string();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("PATH", path.c_str(), 1);
    if (::freopen(log.c_str(), "w", stderr) == nullptr) ::_exit(126);
    ::execl(snapvm.c_str(), "snapvm", "image", "import", src.c_str(), "app", "--store", store.c_str(), nullptr);
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(pid_file) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(fs::exists(pid_file)) << read_file(log);
  const pid_t mkfs = std::stoi(read_file(pid_file));
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status << ": " << read_file(log);
  EXPECT_NE(read_file(log).find("interrupted by SIGTERM"), std::string::npos) << read_file(log);
  EXPECT_NE(::kill(mkfs, 0), 0) << "mkfs.ext4 still runs";
  for (const auto& e : fs::directory_iterator(store)) ADD_FAILURE() << "left behind: " << e.path();
  ::kill(mkfs, SIGKILL);
  fs::remove_all(dir);
}

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
