#include "cli/image_vm.h"

#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "agent/protocol.h"

namespace snapvm::cli {
namespace {

// NAME=VALUE entries into a map; later entries win.
void add_env(std::map<std::string, std::string>& env, const std::vector<std::string>& entries) {
  for (const auto& e : entries) {
    auto eq = e.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    env[e.substr(0, eq)] = e.substr(eq + 1);
  }
}

}  // namespace

Result<ImageMachine> prepare_image_machine(MachineConfig& c, const ImageRunOptions& o) {
  ImageMachine m;
  m.image = SNAPVM_TRY(image::find_image(o.store, o.name));
  if (!m.image.architecture.empty() && m.image.architecture != image::host_architecture()) {
    return make_error(ErrorCode::kUnsupported, "image `{}` is for {}; this host runs {}", o.name,
                      m.image.architecture, image::host_architecture());
  }
  c.disks.insert(c.disks.begin(), MachineConfig::Disk(m.image.rootfs, true, "rootfs"));
  c.cmdline += " snapvm.image=vda";

  const image::RunConfig& rc = m.image.config;
  m.start.argv = rc.entrypoint;
  if (o.entrypoint) m.start.argv = o.entrypoint->empty() ? std::vector<std::string>{} : std::vector{*o.entrypoint};
  const auto& cmd = o.command.empty() ? rc.cmd : o.command;
  m.start.argv.insert(m.start.argv.end(), cmd.begin(), cmd.end());
  if (m.start.argv.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "image `{}` names no entrypoint or cmd: give one after --", o.name);
  }
  add_env(m.start.env, rc.env);
  add_env(m.start.env, o.env);
  m.start.cwd = o.workdir.empty() ? rc.working_dir : o.workdir;
  m.start.user = o.user.empty() ? rc.user : o.user;
  m.start.root = agent::kImageRoot;
  m.start.poweroff_on_exit = true;

  // Ports the user published name the program's TCP ports.
  for (auto& f : c.publish) {
    if (f.guest_port == 0 || f.guest_port > 65535) {
      return make_error(ErrorCode::kInvalidArgument, "--publish {}: an image's port is a TCP port (1-65535)",
                        f.guest_port);
    }
    m.start.tcp_ports.push_back(static_cast<uint16_t>(f.guest_port));
    f.guest_port += agent::kTcpRelayBase;
  }
  if (o.publish_all) {
    for (uint16_t p : rc.exposed_tcp_ports) {
      state::PortForward f;
      f.host_address = "127.0.0.1";
      f.guest_port = agent::kTcpRelayBase + p;
      c.publish.push_back(f);
      m.start.tcp_ports.push_back(p);
    }
  }
  return m;
}

Status wait_until_ready(const std::string& vsock, const Readiness& ready, const image::StoredImage& image,
                        std::chrono::milliseconds timeout, const std::function<bool()>& stopped) {
  agent::ExecRequest probe;
  if (ready.tcp_port) {
    probe.argv = {"/bin/probe-tcp", std::to_string(*ready.tcp_port)};  // in the initramfs, not the image
  } else if (!ready.command.empty()) {
    probe.argv = {"/bin/sh", "-c", ready.command};
    if (ready.in_image) {
      probe.root = agent::kImageRoot;
      probe.user = image.config.user;
      probe.cwd = image.config.working_dir;
    }
  } else {
    return {};
  }
  probe.timeout = std::chrono::seconds(10);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  for (;;) {
    if (stopped()) return make_error(ErrorCode::kFailedPrecondition, "the VM ended before the program was ready");
    auto r = agent::exec(vsock, probe, {}, {});
    if (r && r->exit_code == 0) return {};
    last = r ? fmt::format("the probe exited with status {}", r->shell_status()) : r.error().describe();
    if (std::chrono::steady_clock::now() >= deadline) {
      return make_error(ErrorCode::kFailedPrecondition, "the program was not ready within {} s ({})",
                        timeout.count() / 1000, last);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace snapvm::cli
