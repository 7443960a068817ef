// Choosing the image of a source that holds several: OCI layouts with tags
// (skopeo's oci:DIR:TAG), multi-platform indexes, docker archives with
// several RepoTags; refusing an image for another architecture; and the
// store's inspect and rm, through the library and the command line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "image/catalog.h"
#include "image/oci.h"
#include "image/remove.h"
#include "image/store.h"
#include "image_builder.h"

namespace snapvm::image {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// An architecture this host is not.
std::string other_arch() { return std::string(host_architecture()) == "arm64" ? "amd64" : "arm64"; }

class ImageSourcesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("snapvm-sources-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    options.store = (dir / "store").string();
  }
  void TearDown() override { fs::remove_all(dir); }

  // A layer whose /etc/which says `which`, as tar bytes (compressed as asked).
  std::string layer_saying(const std::string& which, Compression c = Compression::kNone) {
    write_layer((dir / "layer.tmp").string(), {{"etc/", AE_IFDIR}, {"etc/which", AE_IFREG, which + "\n"}}, c);
    return read_file(dir / "layer.tmp");
  }
  std::string digest_of(const std::string& bytes) {
    std::ofstream(dir / "digest.tmp", std::ios::binary | std::ios::trunc) << bytes;
    return *sha256_of_file((dir / "digest.tmp").string());
  }
  std::string config_for(const std::string& arch, const std::string& layer) {
    return json{{"architecture", arch},
                {"os", "linux"},
                {"created", "2024-01-27T00:00:00Z"},
                {"config", {{"Cmd", {"/bin/sh"}}, {"Env", {"PATH=/bin"}}, {"WorkingDir", "/srv"}}},
                {"rootfs", {{"type", "layers"}, {"diff_ids", {digest_of(layer)}}}}}
        .dump();
  }

  // A blob of the layout at `layout`; its descriptor.
  json blob(const fs::path& layout, const std::string& bytes, const std::string& media) {
    const std::string digest = digest_of(bytes);
    fs::create_directories(layout / "blobs/sha256");
    std::ofstream(layout / "blobs/sha256" / digest.substr(7), std::ios::binary) << bytes;
    return {{"mediaType", media}, {"digest", digest}, {"size", bytes.size()}};
  }
  // An image manifest for `arch` whose layer's /etc/which says `which`.
  json manifest(const fs::path& layout, const std::string& arch, const std::string& which) {
    const std::string layer = layer_saying(which);
    json m = {{"schemaVersion", 2},
              {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
              {"config", blob(layout, config_for(arch, layer), "application/vnd.oci.image.config.v1+json")},
              {"layers", {blob(layout, layer, "application/vnd.oci.image.layer.v1.tar")}}};
    json d = blob(layout, m.dump(), "application/vnd.oci.image.manifest.v1+json");
    d["platform"] = {{"os", "linux"}, {"architecture", arch}};
    return d;
  }
  // An index blob listing `manifests` (a multi-platform image).
  json nested_index(const fs::path& layout, const std::vector<json>& manifests) {
    return blob(layout, json{{"schemaVersion", 2}, {"manifests", manifests}}.dump(),
                "application/vnd.oci.image.index.v1+json");
  }
  static json tagged(json descriptor, const std::string& tag) {
    descriptor["annotations"] = {{"org.opencontainers.image.ref.name", tag}};
    descriptor.erase("platform");
    return descriptor;
  }
  // (A vector: a JSON initializer list of one element would be that element.)
  static void write_index(const fs::path& layout, const std::vector<json>& manifests) {
    std::ofstream(layout / "index.json", std::ios::trunc)
        << json{{"schemaVersion", 2}, {"manifests", manifests}}.dump();
    std::ofstream(layout / "oci-layout", std::ios::trunc) << R"({"imageLayoutVersion":"1.0.0"})";
  }

  // A layout as `skopeo copy ... oci:DIR:TAG` leaves it after two copies:
  // "3.19" says three-nineteen, "edge" says edge, "multi" is a
  // multi-platform image whose host manifest says host.
  fs::path tagged_layout() {
    const fs::path layout = dir / "alpine";
    fs::create_directories(layout);
    const json multi = nested_index(layout, {manifest(layout, "s390x", "s390x"),
                                             manifest(layout, host_architecture(), "host"),
                                             manifest(layout, other_arch(), "other")});
    write_index(layout, {tagged(manifest(layout, host_architecture(), "three-nineteen"), "3.19"),
                         tagged(manifest(layout, host_architecture(), "edge"), "edge"), tagged(multi, "multi")});
    return layout;
  }

  struct DockerImage {
    std::vector<std::string> tags;
    std::string arch, which;
  };
  // A `docker save` tarball of several images; `layer_paths` overrides the
  // path manifest.json names for image i's layer.
  // `c` compresses the layers and the tarball itself (`docker save | gzip`).
  fs::path docker_archive(const std::string& name, const std::vector<DockerImage>& images,
                          const std::map<size_t, std::string>& layer_paths = {}, Compression c = Compression::kNone) {
    std::vector<Entry> entries;
    json manifest = json::array();
    for (size_t i = 0; i < images.size(); ++i) {
      const std::string layer = layer_saying(images[i].which);  // what the diff_id names
      const std::string id = std::to_string(i);
      entries.push_back({id + "/", AE_IFDIR});
      entries.push_back({id + "/layer.tar", AE_IFREG, layer_saying(images[i].which, c)});
      entries.push_back({id + ".json", AE_IFREG, config_for(images[i].arch, layer)});
      auto path = layer_paths.find(i);
      manifest.push_back({{"Config", id + ".json"},
                          {"RepoTags", images[i].tags},
                          {"Layers", {path == layer_paths.end() ? id + "/layer.tar" : path->second}}});
    }
    entries.push_back({"manifest.json", AE_IFREG, manifest.dump()});
    const fs::path tarball = dir / name;
    write_layer(tarball.string(), entries, c);
    return tarball;
  }

  // The one-line refusal of importing `source`, which must leave no image.
  std::string refusal(const std::string& source, const std::string& name = "") {
    auto r = import_image(source, name, options);
    if (r) return "imported " + r->name;
    const std::string line = r.error().describe();
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(options.store, ec)) ADD_FAILURE() << "left: " << e.path();
    return line;
  }
  std::string which_of(const ImportResult& r) { return ext4_cat(r.rootfs, "/etc/which"); }

  fs::path dir;
  ImportOptions options;
};

TEST_F(ImageSourcesTest, ATagPicksItsManifestAndNamesTheImage) {
  const fs::path layout = tagged_layout();
  auto r = import_image("oci:" + layout.string() + ":3.19", "", options);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->name, "alpine:3.19");
  EXPECT_EQ(which_of(*r), "three-nineteen\n");
  auto edge = import_image("oci:" + layout.string() + ":edge", "mine", options);
  ASSERT_TRUE(edge) << edge.error().describe();
  EXPECT_EQ(edge->name, "mine");
  EXPECT_EQ(which_of(*edge), "edge\n");
  // What the import recorded beside the run settings.
  auto stored = find_image(options.store, "alpine:3.19");
  ASSERT_TRUE(stored) << stored.error().describe();
  EXPECT_EQ(stored->os, "linux");
  EXPECT_EQ(stored->created, "2024-01-27T00:00:00Z");
  EXPECT_EQ(stored->layers, 1u);
  ASSERT_EQ(stored->layer_digests.size(), 1u);
  EXPECT_EQ(stored->layer_digests[0], digest_of(layer_saying("three-nineteen")));
}

TEST_F(ImageSourcesTest, AMultiPlatformImageYieldsTheHostsManifest) {
  const fs::path layout = tagged_layout();
  auto r = import_image("oci:" + layout.string() + ":multi", "multi", options);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(which_of(*r), "host\n");
  EXPECT_EQ(find_image(options.store, "multi")->architecture, host_architecture());
  // An index with no manifest for this host says which platforms it has.
  const fs::path foreign = dir / "foreign";
  fs::create_directories(foreign);
  const json platforms = nested_index(foreign, {manifest(foreign, "s390x", "a"), manifest(foreign, "ppc64le", "b")});
  write_index(foreign, {tagged(platforms, "1")});
  fs::remove_all(options.store);
  EXPECT_EQ(refusal("oci:" + foreign.string() + ":1"),
            foreign.string() + ": no manifest for linux/" + host_architecture() +
                " (the index has linux/s390x, linux/ppc64le)");
}

TEST_F(ImageSourcesTest, AnUnknownTagOrSeveralTagsAndNoneAskedAreRefusedWithTheTags) {
  const std::string layout = tagged_layout().string();
  EXPECT_EQ(refusal("oci:" + layout + ":3.18"), layout + ": no image tagged `3.18` (its tags: 3.19, edge, multi)");
  EXPECT_EQ(refusal("oci:" + layout),
            layout + " holds 3 images (tags: 3.19, edge, multi); name one as oci:" + layout + ":TAG");
  EXPECT_EQ(refusal(layout, "x"), layout + " holds 3 images (tags: 3.19, edge, multi); name one as oci:" + layout +
                                      ":TAG")
      << "a plain path holds the same images";
  // oci: names a directory.
  const fs::path tarball = docker_archive("one.tar", {{{"a:1"}, host_architecture(), "a"}});
  EXPECT_NE(refusal("oci:" + tarball.string()).find("oci: names a layout directory"), std::string::npos);
}

TEST_F(ImageSourcesTest, AnImageForAnotherArchitectureIsRefusedUnlessAllowed) {
  const fs::path layout = dir / "foreign";
  fs::create_directories(layout);
  write_index(layout, {tagged(manifest(layout, other_arch(), "other"), "1")});
  const std::string source = "oci:" + layout.string() + ":1";
  EXPECT_EQ(refusal(source), fmt::format("image foreign:1 is for {}; this host runs {} (--allow-other-arch imports "
                                         "it anyway)", other_arch(), host_machine()));
  const fs::path tarball = docker_archive("foreign.tar", {{{"f:1"}, other_arch(), "other"}});
  EXPECT_EQ(refusal("docker-archive:" + tarball.string(), "f"),
            fmt::format("image f is for {}; this host runs {} (--allow-other-arch imports it anyway)", other_arch(),
                        host_machine()));
  options.allow_other_arch = true;
  auto r = import_image(source, "", options);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(which_of(*r), "other\n");
  EXPECT_EQ(find_image(options.store, "foreign:1")->architecture, other_arch());
}

TEST_F(ImageSourcesTest, ADockerArchiveTagPicksAmongItsRepoTagsInEitherSpelling) {
  const fs::path tarball =
      docker_archive("two.tar", {{{"a:1"}, host_architecture(), "a"},
                                 {{"docker.io/library/b:2", "b:latest"}, host_architecture(), "b"}});
  const std::string source = "docker-archive:" + tarball.string();
  auto b = import_image(source + ":b:2", "", options);
  ASSERT_TRUE(b) << b.error().describe();
  EXPECT_EQ(b->name, "b:2");
  EXPECT_EQ(which_of(*b), "b\n");
  auto a = import_image(source + ":docker.io/library/a:1", "", options);
  ASSERT_TRUE(a) << a.error().describe();
  EXPECT_EQ(a->name, "a:1");
  EXPECT_EQ(which_of(*a), "a\n");
  auto latest = import_image(source + ":b", "b", options);
  ASSERT_TRUE(latest) << latest.error().describe();
  EXPECT_EQ(which_of(*latest), "b\n");
  fs::remove_all(options.store);
  EXPECT_EQ(refusal(source + ":c:1"),
            tarball.string() + ": no image tagged `c:1` (its tags: a:1, docker.io/library/b:2, b:latest)");
  EXPECT_EQ(refusal(source), tarball.string() + " holds 2 images (tags: a:1, docker.io/library/b:2, b:latest); name "
                                                "one as docker-archive:" + tarball.string() + ":TAG");
  // One image needs no tag; its default name is the tarball's.
  auto one = import_image("docker-archive:" + docker_archive("solo.tar", {{{}, host_architecture(), "s"}}).string(),
                          "", options);
  ASSERT_TRUE(one) << one.error().describe();
  EXPECT_EQ(one->name, "solo");
}

TEST_F(ImageSourcesTest, AGzippedDockerArchiveWithGzippedLayersImports) {
  const fs::path tarball = docker_archive("zipped.tar.gz", {{{"z:1"}, host_architecture(), "zipped"}}, {},
                                          Compression::kGzip);
  ASSERT_EQ(read_file(tarball).substr(0, 2), "\x1f\x8b");
  auto r = import_image("docker-archive:" + tarball.string() + ":z:1", "", options);
  ASSERT_TRUE(r) << r.error().describe();
  EXPECT_EQ(r->name, "z:1");
  EXPECT_EQ(which_of(*r), "zipped\n");
  EXPECT_EQ(find_image(options.store, "z:1")->layer_digests,
            std::vector<std::string>{digest_of(layer_saying("zipped"))})
      << "the diff_id: the digest of the layer uncompressed";
}

// manifest.json is untrusted: a layer path that climbs out of the archive,
// or names a file that is not in it, is refused before anything is read.
TEST_F(ImageSourcesTest, ADockerManifestNamingALayerOutsideTheArchiveIsRefused) {
  std::ofstream(dir / "host-layer.tar", std::ios::binary) << layer_saying("HOST");
  for (const std::string& path :
       {std::string("../host-layer.tar"), std::string("0/../../host-layer.tar"), (dir / "host-layer.tar").string()}) {
    const fs::path tarball = docker_archive("evil.tar", {{{"e:1"}, host_architecture(), "e"}}, {{0, path}});
    EXPECT_EQ(refusal("docker-archive:" + tarball.string()),
              fmt::format("{}/manifest.json: layer 1: path `{}` leaves the image", tarball.string(), path));
  }
  const fs::path missing = docker_archive("missing.tar", {{{"e:1"}, host_architecture(), "e"}}, {{0, "9/layer.tar"}});
  EXPECT_EQ(refusal("docker-archive:" + missing.string()),
            fmt::format("{}/manifest.json: layer 1: `9/layer.tar` is not in the image", missing.string()));
}

TEST_F(ImageSourcesTest, RmFreesTheImageAndRefusesWhatIsNotOne) {
  const fs::path layout = tagged_layout();
  ASSERT_TRUE(import_image("oci:" + layout.string() + ":3.19", "keep", options));
  ASSERT_TRUE(import_image("oci:" + layout.string() + ":edge", "drop", options));
  auto removed = remove_image(options.store, "drop");
  ASSERT_TRUE(removed) << removed.error().describe();
  EXPECT_GT(removed->bytes, 0u);
  EXPECT_FALSE(fs::exists(fs::path(options.store) / "drop"));
  auto listed = list_images(options.store);
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "keep");
  EXPECT_EQ(which_of(ImportResult{"keep", "", (*listed)[0].rootfs}), "three-nineteen\n");
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(options.store)) ++entries;
  EXPECT_EQ(entries, 1u) << "nothing but the kept image: no scratch directory left";

  auto missing = remove_image(options.store, "drop");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().describe(), "no image `drop` in " + options.store);
  // A link in the store (to an image elsewhere) is not an image of it, and what it leads to stays.
  fs::create_directory_symlink(fs::path(options.store) / "keep", fs::path(options.store) / "link");
  EXPECT_FALSE(remove_image(options.store, "link"));
  EXPECT_TRUE(fs::exists(fs::path(options.store) / "keep/rootfs.ext4"));
  EXPECT_FALSE(remove_image(options.store, "../keep")) << "names are checked";
  EXPECT_FALSE(remove_image((dir / "nowhere").string(), "keep"));
  EXPECT_FALSE(fs::exists(dir / "nowhere")) << "rm makes no store";
}

// Through the command line: inspect's text and JSON, rm's exit statuses,
// the architecture refusal, and progress on a large layer in a log.
class ImageCliTest : public ImageSourcesTest {
 protected:
  std::string snapvm(const std::string& args, int* rc) {
    return shell(std::string(SNAPVM_BIN_DIR) + "/snapvm " + args + " --store " + options.store, rc);
  }
};

TEST_F(ImageCliTest, InspectShowsTheImageAsTextOrOneJsonObject) {
  int rc = -1;
  const std::string layout = tagged_layout().string();
  std::string out = snapvm("image import -q oci:" + layout + ":3.19", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "--quiet leaves the result line alone: " << out;
  out = snapvm("image inspect alpine:3.19 --json", &rc);
  ASSERT_EQ(rc, 0) << out;
  const json j = json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["name"], "alpine:3.19");
  EXPECT_EQ(j["digest"].get<std::string>().substr(0, 7), "sha256:");
  EXPECT_EQ(j["architecture"], host_architecture());
  EXPECT_EQ(j["os"], "linux");
  EXPECT_EQ(j["created"], "2024-01-27T00:00:00Z");
  EXPECT_EQ(j["layers"], 1);
  EXPECT_EQ(j["layer_digests"], json({digest_of(layer_saying("three-nineteen"))}));
  EXPECT_EQ(j["cmd"], json({"/bin/sh"}));
  EXPECT_EQ(j["entrypoint"], json::array());
  EXPECT_EQ(j["env"], json({"PATH=/bin"}));
  EXPECT_EQ(j["working_dir"], "/srv");
  EXPECT_GT(j["rootfs_bytes"].get<uint64_t>(), 0u);
  EXPECT_GT(j["content_bytes"].get<uint64_t>(), 0u);
  EXPECT_TRUE(fs::exists(j["rootfs"].get<std::string>()));

  out = snapvm("image inspect alpine:3.19", &rc);
  ASSERT_EQ(rc, 0) << out;
  for (const char* line : {"name:         alpine:3.19\n", "architecture: ", "os:           linux\n",
                           "created:      2024-01-27T00:00:00Z\n", "layers:       1\n", "cmd:          /bin/sh\n",
                           "env:          PATH=/bin\n", "workdir:      /srv\n", "entrypoint:   (none)\n"}) {
    EXPECT_NE(out.find(line), std::string::npos) << line << " in:\n" << out;
  }
  out = snapvm("image inspect nothing --json", &rc);
  EXPECT_EQ(rc, 1);
  const json error = json::parse(out, nullptr, false);
  ASSERT_TRUE(error.is_object()) << out;
  EXPECT_NE(error["error"].get<std::string>().find("no image `nothing`"), std::string::npos) << out;
  EXPECT_EQ(error["exit_code"], 1);
}

TEST_F(ImageCliTest, RmRemovesWhatExistsAndSaysWhatDoesNotInOneLine) {
  int rc = -1;
  const std::string layout = tagged_layout().string();
  std::string out = snapvm("image import -q oci:" + layout + ":edge", &rc);
  ASSERT_EQ(rc, 0) << out;
  out = snapvm("image rm nothing", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(out, "snapvm: image rm: no image `nothing` in " + options.store + "\n");
  out = snapvm("image rm alpine:edge nothing", &rc);
  EXPECT_EQ(rc, 1) << "one name was missing: " << out;
  EXPECT_NE(out.find("alpine:edge: removed ("), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(fs::path(options.store) / "alpine:edge"));
  out = snapvm("image rm ../etc", &rc);
  EXPECT_EQ(rc, 2) << "a malformed name is a usage error: " << out;
  out = snapvm("image rm", &rc);
  EXPECT_EQ(rc, 2) << out;
}

TEST_F(ImageCliTest, TheArchitectureRefusalIsOneLineAndTheFlagOverridesIt) {
  const fs::path layout = dir / "foreign";
  fs::create_directories(layout);
  write_index(layout, {tagged(manifest(layout, other_arch(), "other"), "1")});
  int rc = -1;
  std::string out = snapvm("image import oci:" + layout.string() + ":1", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(out, fmt::format("snapvm image import: image foreign:1 is for {}; this host runs {} (--allow-other-arch "
                             "imports it anyway)\n", other_arch(), host_machine()));
  out = snapvm("image import --allow-other-arch oci:" + layout.string() + ":1", &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("foreign:1: imported 1 layer(s)"), std::string::npos) << out;
}

// Into a pipe (no terminal) a large layer and the filesystem build each
// say how far they are at each quarter; --quiet says nothing.
TEST_F(ImageCliTest, LargeStepsReportTheirBytesInALog) {
  const fs::path layout = dir / "big";
  fs::create_directories(layout);
  write_layer((dir / "big.tar").string(), {{"big", AE_IFREG, std::string(12 << 20, 'x')}});
  const std::string layer = read_file(dir / "big.tar");
  json m = {{"schemaVersion", 2},
            {"config",
             blob(layout, config_for(host_architecture(), layer), "application/vnd.oci.image.config.v1+json")},
            {"layers", {blob(layout, layer, "application/vnd.oci.image.layer.v1.tar")}}};
  write_index(layout, {blob(layout, m.dump(), "application/vnd.oci.image.manifest.v1+json")});
  int rc = -1;
  std::string out = snapvm("image import oci:" + layout.string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  for (const char* line : {"layer 1/1: 25% (", "layer 1/1: 50% (", "layer 1/1: 100% (12.0 MiB of 12.0 MiB",
                           "rootfs.ext4: 100% ("}) {
    EXPECT_NE(out.find(line), std::string::npos) << line << " in:\n" << out;
  }
  EXPECT_EQ(out.find("\r"), std::string::npos) << "no in-place redraws into a pipe";
  const size_t hundred = out.find("layer 1/1: 100%");
  EXPECT_EQ(out.find("layer 1/1: 100%", hundred + 1), std::string::npos) << "once: " << out;
  options.store += "2";
  out = snapvm("image import -q oci:" + layout.string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find('%'), std::string::npos) << out;
}

}  // namespace
}  // namespace snapvm::image
