// libFuzzer target: what an imported image hands snapvm. The first byte
// picks the parser:
//   0 (mod 6)  the image config JSON (must never throw);
//   1          a layer tar applied onto a scratch root (must never crash,
//              and nothing may appear outside the root whatever the
//              entries say);
//   2          a docker archive's manifest.json, read in a directory that
//              also holds a good config and layer, links to a host config
//              and a host layer, a directory link to the host, and a FIFO:
//              nothing of the host may be taken, and nothing may block;
//   3          a whole `docker save` tarball: unpacked as the import does,
//              then read as an image directory;
//   4          an OCI layout's index.json, after a first line naming the tag
//              asked for, read in a layout that holds manifests for this
//              host and another architecture, a multi-platform index, and
//              manifests whose layer is a link to a host file or a FIFO
//              (`@good`, `@other`, `@nested`, `@evil`, `@fifo` in the input
//              become those manifests' digests): nothing of the host may be
//              taken, and nothing may block;
//   5          a docker archive's manifest.json as in 2, after a first line
//              naming the tag (RepoTags) asked for.
// In 4 and 5 the first byte's next bit allows another architecture.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "base/unique_fd.h"
#include "image/digest.h"
#include "image/docker_archive.h"
#include "image/layer.h"
#include "image/oci.h"

namespace fs = std::filesystem;
using snapvm::UniqueFd;

namespace {

const fs::path& scratch() {
  static const fs::path dir = fs::temp_directory_path() / ("snapvm-fuzz-image-" + std::to_string(::getpid()));
  return dir;
}

constexpr const char* kHostSecret = "FUZZ-HOST-SECRET";

// The fixture of selector 2, made once: the host files live beside it.
struct DockerFixture {
  fs::path dir, host_layer;
  ino_t host_layer_ino = 0;
};

const DockerFixture& docker_fixture() {
  static const DockerFixture f = [] {
    DockerFixture d;
    const fs::path host = scratch() / "host";
    d.dir = scratch() / "docker";
    fs::create_directories(host);
    fs::create_directories(d.dir / "l");
    std::ofstream(host / "config.json") << R"({"config":{"Env":[")" << kHostSecret << R"("]},"rootfs":{"diff_ids":[]}})";
    // An empty tar (two zero blocks) serves as both the good and the host layer.
    const std::string empty_tar(1024, '\0');
    std::ofstream(host / "layer.tar", std::ios::binary) << empty_tar;
    std::ofstream(d.dir / "l/layer.tar", std::ios::binary) << empty_tar;
    d.host_layer = host / "layer.tar";
    struct stat st {};
    ::stat(d.host_layer.c_str(), &st);
    d.host_layer_ino = st.st_ino;
    UniqueFd layer(::open((d.dir / "l/layer.tar").c_str(), O_RDONLY | O_CLOEXEC));
    const std::string id = *snapvm::image::sha256_of_fd(layer.get(), "layer");
    std::ofstream(d.dir / "cfg.json") << R"({"config":{"Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":[")" << id
                                       << R"(",")" << id << R"("]}})";
    fs::create_symlink(host / "config.json", d.dir / "hostcfg.json");
    fs::create_symlink(host / "layer.tar", d.dir / "hostlayer.tar");
    fs::create_symlink(host, d.dir / "hostdir");
    fs::create_symlink("l/layer.tar", d.dir / "inside.tar");
    ::mkfifo((d.dir / "fifo").c_str(), 0600);
    return d;
  }();
  return f;
}

std::string sha256_of(const std::string& bytes) {
  snapvm::image::Sha256 h;
  h.update(bytes.data(), bytes.size());
  return h.finish();
}

// The fixture of selector 4: an OCI layout beside the docker fixture's host
// files, and the digests its aliases stand for.
struct OciFixture {
  fs::path dir;
  std::vector<std::pair<std::string, std::string>> aliases;  // "@good" -> "sha256:..."
};

const OciFixture& oci_fixture() {
  static const OciFixture f = [] {
    const DockerFixture& docker = docker_fixture();
    OciFixture o;
    o.dir = scratch() / "oci";
    fs::create_directories(o.dir / "blobs/sha256");
    std::ofstream(o.dir / "oci-layout") << R"({"imageLayoutVersion":"1.0.0"})";
    auto blob = [&](const std::string& bytes) {
      const std::string digest = sha256_of(bytes);
      std::ofstream(o.dir / "blobs/sha256" / digest.substr(7), std::ios::binary) << bytes;
      return digest;
    };
    auto descriptor = [](const std::string& digest, const std::string& extra = "") {
      return R"({"digest":")" + digest + R"(")" + extra + "}";
    };
    auto manifest = [&](const std::string& config, const std::string& layer) {
      return blob(R"({"schemaVersion":2,"config":)" + descriptor(config) + R"(,"layers":[)" + descriptor(layer) + "]}");
    };
    // Its own empty tar (four zero blocks), unlike the host's two.
    const std::string layer = blob(std::string(2048, '\0'));
    const std::string good_config = blob(std::string(R"({"architecture":")") + snapvm::image::host_architecture() +
                                         R"(","config":{"Env":["A=1"]}})");
    const std::string good = manifest(good_config, layer);
    const std::string other = manifest(blob(R"({"architecture":"s390x","config":{"Env":["B=1"]}})"), layer);
    const std::string nested = blob(R"({"manifests":[)" + descriptor(other, R"(,"platform":{"architecture":"s390x"})") +
                                    "," +
                                    descriptor(good, std::string(R"(,"platform":{"architecture":")") +
                                                         snapvm::image::host_architecture() + R"("})") +
                                    "]}");
    // A blob that is a link to the host's layer, under the name of its digest.
    UniqueFd host(::open(docker.host_layer.c_str(), O_RDONLY | O_CLOEXEC));
    const std::string host_digest = *snapvm::image::sha256_of_fd(host.get(), "host layer");
    fs::create_symlink(docker.host_layer, o.dir / "blobs/sha256" / host_digest.substr(7));
    const std::string evil = manifest(good_config, host_digest);
    const std::string fifo_digest = sha256_of("fifo");
    ::mkfifo((o.dir / "blobs/sha256" / fifo_digest.substr(7)).c_str(), 0600);
    const std::string fifo = manifest(good_config, fifo_digest);
    o.aliases = {{"@good", good}, {"@other", other}, {"@nested", nested}, {"@evil", evil}, {"@fifo", fifo}};
    return o;
  }();
  return f;
}

// The input's first line (the tag asked for, at most 256 bytes) and the rest.
std::pair<std::string, std::string> tag_and_rest(const std::string& input) {
  const size_t nl = input.find('\n');
  if (nl == std::string::npos) return {"", input};
  return {input.substr(0, std::min<size_t>(nl, 256)), input.substr(nl + 1)};
}

// Traps if an accepted image took anything from the host.
void check_source(const snapvm::Result<snapvm::image::ImageSource>& src, ino_t host_layer_ino) {
  if (!src) return;
  for (const auto& e : src->config.env) {
    if (e.find(kHostSecret) != std::string::npos) __builtin_trap();
  }
  for (const auto& layer : src->layers) {
    struct stat st {};
    if (::fstat(layer.fd.get(), &st) == 0 && host_layer_ino != 0 && st.st_ino == host_layer_ino) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0:
      (void)snapvm::image::parse_run_config(rest);
      return 0;
    case 2: {
      const DockerFixture& f = docker_fixture();
      std::ofstream(f.dir / "manifest.json", std::ios::binary | std::ios::trunc) << rest;
      check_source(snapvm::image::read_image_dir(f.dir.string()), f.host_layer_ino);
      return 0;
    }
    case 4: {
      const OciFixture& o = oci_fixture();
      auto [tag, index] = tag_and_rest(rest);
      for (const auto& [alias, digest] : o.aliases) {
        for (size_t at = 0; (at = index.find(alias, at)) != std::string::npos; at += digest.size()) {
          index.replace(at, alias.size(), digest);
        }
      }
      std::ofstream(o.dir / "index.json", std::ios::binary | std::ios::trunc) << index;
      const snapvm::image::ImageChoice choice{tag, (data[0] / 6) % 2 == 1, "fuzz"};
      check_source(snapvm::image::read_image_dir(o.dir.string(), choice), docker_fixture().host_layer_ino);
      return 0;
    }
    case 5: {
      const DockerFixture& f = docker_fixture();
      auto [tag, manifest] = tag_and_rest(rest);
      std::ofstream(f.dir / "manifest.json", std::ios::binary | std::ios::trunc) << manifest;
      UniqueFd dir_fd(::open(f.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      const snapvm::image::ImageChoice choice{tag, (data[0] / 6) % 2 == 1, "fuzz"};
      check_source(snapvm::image::read_docker_archive(dir_fd.get(), f.dir.string(), choice), f.host_layer_ino);
      return 0;
    }
    default:
      break;
  }
  const fs::path work = scratch() / "layer";
  fs::remove_all(work);
  fs::create_directories(work / "root");
  std::ofstream(work / "layer.tar", std::ios::binary) << rest;
  UniqueFd root(::open((work / "root").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  uint64_t budget = 1 << 20;
  snapvm::image::LayerLimits limits;
  limits.max_entries = 1000;
  auto applied = snapvm::image::apply_layer((work / "layer.tar").string(), root.get(), limits, budget);
  size_t beside_root = 0;
  for (const auto& e : fs::directory_iterator(work)) beside_root += e.path().filename() != "root";
  if (beside_root != 1) __builtin_trap();  // only layer.tar may be next to the root
  if (data[0] % 6 == 3 && applied) {
    // A host file the archive might link to: its inode must never come back as a layer.
    const DockerFixture& f = docker_fixture();
    check_source(snapvm::image::read_image_dir((work / "root").string()), f.host_layer_ino);
  }
  return 0;
}
