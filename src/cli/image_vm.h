// Running a container image as a microVM (snapvm run --image, snapvm bake):
// the image's root filesystem attached read-only as the first disk, the
// guest init told to mount it (overlay, writes in guest RAM), and the
// image's program started through the agent with its entrypoint, cmd, env,
// working dir and user; its TCP ports reached through guest relays.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/client.h"
#include "base/result.h"
#include "image/catalog.h"
#include "image/program_console.h"
#include "vmm/machine.h"

namespace snapvm::cli {

struct ImageRunOptions {
  std::string store = image::default_store();
  std::string name;
  std::vector<std::string> command;  // replaces the image's cmd (the entrypoint stays)
  std::optional<std::string> entrypoint;  // replaces the image's entrypoint ("": none)
  std::vector<std::string> env;      // NAME=VALUE, over the image's
  std::string user, workdir;         // over the image's
  bool publish_all = false;          // every exposed port on a free host port
};

struct ImageMachine {
  image::StoredImage image;
  agent::StartRequest start;
};

// Looks the image up and prepares `config` to run it: refuses an image of
// another architecture; the root filesystem becomes /dev/vda (read-only,
// before any --disk); every --publish in `config` names a TCP port of the
// program (relayed as vsock port kTcpRelayBase + port); publish_all adds
// the image's exposed ports on host ports the kernel picks.
Result<ImageMachine> prepare_image_machine(MachineConfig& config, const ImageRunOptions& options);

// "snapvm run --image" and "snapvm bake" share the way they wait for a
// program: until `probe` says ready (it runs in the guest through the
// agent) or `timeout` passes or `stopped` says the VM ended.
struct Readiness {
  std::optional<uint16_t> tcp_port;  // ready when 127.0.0.1:PORT accepts in the guest
  std::string command;               // ready when `sh -c COMMAND` exits 0
  bool in_image = true;              // the command runs in the image's root, as its user
};
Status wait_until_ready(const std::string& vsock, const Readiness& ready, const image::StoredImage& image,
                        std::chrono::milliseconds timeout, const std::function<bool()>& stopped);

}  // namespace snapvm::cli
