#include "cli/image_describe.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace snapvm::cli {
namespace {

std::string mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / 1048576.0); }

// A word list as a person would type it, or what its absence means.
std::string words_or(const std::vector<std::string>& words, const char* none) {
  return words.empty() ? none : fmt::format("{}", fmt::join(words, " "));
}

std::string or_unknown(const std::string& s) { return s.empty() ? "(not recorded)" : s; }

}  // namespace

std::string describe_image_text(const image::StoredImage& i) {
  std::string out;
  auto line = [&out](const char* key, const std::string& value) { out += fmt::format("{:<13} {}\n", key, value); };
  line("name:", i.name);
  line("digest:", i.digest);
  line("architecture:", or_unknown(i.architecture));
  line("os:", or_unknown(i.os));
  line("created:", or_unknown(i.created));
  line("size:", fmt::format("{} of files, rootfs.ext4 {}", mib(i.content_bytes), mib(i.rootfs_bytes)));
  line("rootfs:", i.rootfs);
  line("layers:", std::to_string(i.layers));
  for (const auto& d : i.layer_digests) out += fmt::format("{:<13}   {}\n", "", d);
  line("entrypoint:", words_or(i.config.entrypoint, "(none)"));
  line("cmd:", words_or(i.config.cmd, "(none)"));
  if (i.config.env.empty()) line("env:", "(none)");
  for (size_t n = 0; n < i.config.env.size(); ++n) line(n == 0 ? "env:" : "", i.config.env[n]);
  line("workdir:", i.config.working_dir.empty() ? "/" : i.config.working_dir);
  line("user:", i.config.user.empty() ? "root" : i.config.user);
  std::vector<std::string> ports;
  for (uint16_t p : i.config.exposed_tcp_ports) ports.push_back(fmt::format("{}/tcp", p));
  line("ports:", words_or(ports, "(none)"));
  return out;
}

nlohmann::ordered_json describe_image_json(const image::StoredImage& i) {
  return {{"name", i.name},
          {"digest", i.digest},
          {"architecture", i.architecture},
          {"os", i.os},
          {"created", i.created},
          {"content_bytes", i.content_bytes},
          {"rootfs", i.rootfs},
          {"rootfs_bytes", i.rootfs_bytes},
          {"layers", i.layers},
          {"layer_digests", i.layer_digests},
          {"entrypoint", i.config.entrypoint},
          {"cmd", i.config.cmd},
          {"env", i.config.env},
          {"working_dir", i.config.working_dir},
          {"user", i.config.user},
          {"exposed_tcp_ports", i.config.exposed_tcp_ports}};
}

}  // namespace snapvm::cli
