// What `snapvm image import SOURCE` names, in the spelling skopeo uses for
// the same places (so `skopeo copy ... oci:alpine:3.19` is imported as
// `oci:alpine:3.19`):
//
//   oci:DIR[:TAG]              an OCI image layout directory; TAG picks the
//                              manifest whose org.opencontainers.image.ref.name
//                              it is (DIR cannot hold a ':', as for skopeo)
//   docker-archive:PATH[:TAG]  a `docker save` / skopeo docker-archive tarball
//                              (or its unpacked directory); TAG picks among
//                              the RepoTags ("alpine:3.19", "docker.io/library/
//                              alpine:3.19" alike)
//   PATH                       either of them, told apart by its contents,
//                              with no tag (what earlier versions took)
//
// Sources that need the network (docker://, ...) are refused with a hint:
// the import reads local files only.
#pragma once

#include <string>

#include "base/result.h"

namespace snapvm::image {

struct SourceRef {
  enum class Kind { kPath, kOciLayout, kDockerArchive };
  Kind kind = Kind::kPath;
  std::string path;
  std::string tag;  // "" for none
};

Result<SourceRef> parse_source(const std::string& source);

// The name an import stores the image under when none is given: the tag's
// last repository component with its tag ("alpine:3.19" from
// oci:images/alpine:3.19 or docker-archive:a.tar:docker.io/library/alpine:3.19),
// else the directory's or tarball's name without .tar, .tar.gz, .tgz.
// An error asks for a NAME when that makes no valid image name.
Result<std::string> default_image_name(const SourceRef& source);

// A docker reference in one spelling: "alpine" and "docker.io/library/alpine:latest"
// are both "docker.io/library/alpine:latest".
std::string normalized_docker_tag(const std::string& tag);

}  // namespace snapvm::image
