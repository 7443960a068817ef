// How `snapvm image import` reads its SOURCE (skopeo's spellings), and the
// NAME it stores an image under when none is given.
#include <gtest/gtest.h>

#include "image/source_ref.h"

namespace snapvm::image {
namespace {

using Kind = SourceRef::Kind;

TEST(ImageSourceRef, SkopeosSpellingsAndPlainPaths) {
  auto oci = parse_source("oci:alpine:3.19");
  ASSERT_TRUE(oci) << oci.error().describe();
  EXPECT_EQ(oci->kind, Kind::kOciLayout);
  EXPECT_EQ(oci->path, "alpine");
  EXPECT_EQ(oci->tag, "3.19");

  auto untagged = parse_source("oci:/srv/images/layout");
  ASSERT_TRUE(untagged);
  EXPECT_EQ(untagged->path, "/srv/images/layout");
  EXPECT_EQ(untagged->tag, "");

  // A docker reference holds a ':' of its own: only the first one ends the path.
  auto docker = parse_source("docker-archive:/tmp/a.tar:docker.io/library/alpine:3.19");
  ASSERT_TRUE(docker);
  EXPECT_EQ(docker->kind, Kind::kDockerArchive);
  EXPECT_EQ(docker->path, "/tmp/a.tar");
  EXPECT_EQ(docker->tag, "docker.io/library/alpine:3.19");

  auto plain = parse_source("./saved.tar");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->kind, Kind::kPath);
  EXPECT_EQ(plain->path, "./saved.tar");
}

TEST(ImageSourceRef, MalformedAndRemoteSourcesAreRefusedWithAHint) {
  for (const char* bad : {"oci:", "oci::tag", "oci:dir:", "docker-archive:", ""}) {
    auto r = parse_source(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << bad;
  }
  auto remote = parse_source("docker://docker.io/library/alpine:3.19");
  ASSERT_FALSE(remote);
  EXPECT_NE(remote.error().describe().find("skopeo copy docker://docker.io/library/alpine:3.19 oci:DIR:TAG"),
            std::string::npos)
      << remote.error().describe();
  EXPECT_FALSE(parse_source("oci-archive:x.tar"));
  EXPECT_FALSE(parse_source(std::string("oci:d:") + std::string(300, 't'))) << "a tag is bounded";
}

TEST(ImageSourceRef, DefaultNamesComeFromTheTagOrTheFile) {
  auto name = [](const std::string& source) {
    auto ref = parse_source(source);
    EXPECT_TRUE(ref) << source;
    auto n = default_image_name(*ref);
    return n ? *n : "error: " + n.error().describe();
  };
  EXPECT_EQ(name("oci:alpine:3.19"), "alpine:3.19");
  EXPECT_EQ(name("oci:/srv/layouts/web/:latest"), "web:latest");
  EXPECT_EQ(name("oci:layout:docker.io/library/nginx:1.25"), "nginx:1.25");
  EXPECT_EQ(name("docker-archive:/tmp/a.tar:docker.io/library/alpine:3.19"), "alpine:3.19");
  EXPECT_EQ(name("docker-archive:/tmp/a.tar:myapp"), "myapp");
  EXPECT_EQ(name("docker-archive:/tmp/busybox.tar.gz"), "busybox");
  EXPECT_EQ(name("/tmp/saved.tar"), "saved");
  EXPECT_EQ(name("oci:/srv/layouts/web"), "web");
  EXPECT_NE(name("docker-archive:a.tar:alpine@sha256:0123").find("give one as NAME"), std::string::npos);
}

TEST(ImageSourceRef, DockerTagsCompareInEitherSpelling) {
  EXPECT_EQ(normalized_docker_tag("alpine"), "docker.io/library/alpine:latest");
  EXPECT_EQ(normalized_docker_tag("alpine:3.19"), "docker.io/library/alpine:3.19");
  EXPECT_EQ(normalized_docker_tag("docker.io/library/alpine:3.19"), "docker.io/library/alpine:3.19");
  EXPECT_EQ(normalized_docker_tag("index.docker.io/library/alpine:3.19"), "docker.io/library/alpine:3.19");
  EXPECT_EQ(normalized_docker_tag("me/app:v1"), "docker.io/me/app:v1");
  EXPECT_EQ(normalized_docker_tag("localhost:5000/app"), "localhost:5000/app:latest");
  EXPECT_EQ(normalized_docker_tag("quay.io/org/app:2"), "quay.io/org/app:2");
  EXPECT_NE(normalized_docker_tag("alpine:3.19"), normalized_docker_tag("alpine:3.18"));
}

}  // namespace
}  // namespace snapvm::image
