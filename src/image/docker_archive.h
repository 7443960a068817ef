// The image in an unpacked `docker save` / skopeo `docker-archive:`
// tarball: manifest.json lists images as {Config, RepoTags, Layers}, with
// paths inside the archive. Paths that climb out (`..`, absolute) are
// refused, links resolve only inside the archive, and each layer must
// hash to the config's rootfs.diff_ids entry before it is used.
#pragma once

#include <string>

#include "base/result.h"
#include "image/metadata.h"
#include "image/oci.h"

namespace snapvm::image {

// `dir` names the archive in messages. The choice's tag picks the image
// whose RepoTags hold it (either spelling: "alpine:3.19" or
// "docker.io/library/alpine:3.19"); with none the archive must hold one.
Result<ImageSource> read_docker_archive(int dir_fd, const std::string& dir, const ImageChoice& choice);

}  // namespace snapvm::image
