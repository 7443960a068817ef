#include "process_spec.h"

#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

extern char** environ;

namespace snapvm::guest {
namespace {

using nlohmann::json;

constexpr size_t kMaxArgs = 4096;

std::optional<uint32_t> number(const std::string& s) {
  uint32_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// The fields of each line of a colon-separated database (passwd, group).
std::vector<std::vector<std::string>> read_db(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(path);
  std::string line;
  while (rows.size() < 65536 && std::getline(in, line)) {
    std::vector<std::string> fields;
    std::stringstream ss(line);
    std::string f;
    while (std::getline(ss, f, ':')) fields.push_back(f);
    if (!line.empty() && line.back() == ':') fields.emplace_back();
    rows.push_back(std::move(fields));
  }
  return rows;
}

bool has_env(const std::vector<std::string>& env, const std::string& name) {
  for (const auto& e : env) {
    if (e.compare(0, name.size() + 1, name + "=") == 0) return true;
  }
  return false;
}

}  // namespace

std::optional<ProcessSpec> parse_process_spec(const json& req, std::string& error) {
  ProcessSpec spec;
  if (!req.contains("argv") || !req["argv"].is_array() || req["argv"].empty() || req["argv"].size() > kMaxArgs) {
    error = "argv is empty";
    return std::nullopt;
  }
  for (const auto& a : req["argv"]) {
    if (!a.is_string()) {
      error = "argv must be strings";
      return std::nullopt;
    }
    spec.argv.push_back(a.get<std::string>());
  }
  if (req.contains("env") && req["env"].is_object() && req["env"].size() <= kMaxArgs) {
    for (const auto& [k, v] : req["env"].items()) {
      if (v.is_string() && !k.empty() && k.find('=') == std::string::npos) spec.env.push_back(k + "=" + v.get<std::string>());
    }
  }
  auto text = [&](const char* key, std::string& out) {
    if (req.contains(key) && req[key].is_string() && !req[key].get<std::string>().empty()) out = req[key];
  };
  text("cwd", spec.cwd);
  text("root", spec.root);
  text("user", spec.user);
  return spec;
}

bool resolve_user(ProcessSpec& spec, std::string& error) {
  std::string user = spec.user, group;
  if (auto colon = user.find(':'); colon != std::string::npos) {
    group = user.substr(colon + 1);
    user = user.substr(0, colon);
  }
  std::string home = "/root";
  bool found_user = user.empty();
  if (user.empty()) user = std::string("0");  // (a temporary: GCC 12 -Wrestrict misfires on literals)
  const auto passwd = read_db(spec.root + "/etc/passwd");
  for (const auto& row : passwd) {  // name:x:uid:gid:gecos:home:shell
    if (row.size() < 6 || (row[0] != user && row[2] != user)) continue;
    auto uid = number(row[2]);
    auto gid = number(row[3]);
    if (!uid || !gid) continue;
    spec.uid = *uid;
    spec.gid = *gid;
    home = row[5];
    found_user = true;
    break;
  }
  if (!found_user) {
    auto uid = number(user);  // a numeric user need not be in passwd
    if (!uid) {
      error = "user `" + user + "` is not in the image's /etc/passwd";
      return false;
    }
    spec.uid = *uid;
    spec.gid = *uid;
    home = std::string("/");
  }
  const auto groups = read_db(spec.root + "/etc/group");
  if (!group.empty()) {
    bool found = false;
    for (const auto& row : groups) {  // name:x:gid:members
      if (row.size() >= 3 && (row[0] == group || row[2] == group) && number(row[2])) {
        spec.gid = *number(row[2]);
        found = true;
        break;
      }
    }
    if (!found) {
      auto gid = number(group);
      if (!gid) {
        error = "group `" + group + "` is not in the image's /etc/group";
        return false;
      }
      spec.gid = *gid;
    }
  }
  spec.groups = {spec.gid};
  for (const auto& row : groups) {  // supplementary groups the user is a member of
    if (row.size() < 4 || spec.groups.size() >= 64) continue;
    std::stringstream members(row[3]);
    for (std::string m; std::getline(members, m, ',');) {
      if (m == user && number(row[2]) && *number(row[2]) != spec.gid) spec.groups.push_back(*number(row[2]));
    }
  }
  if (!has_env(spec.env, "PATH")) spec.env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  if (!has_env(spec.env, "HOME")) spec.env.push_back("HOME=" + home);
  return true;
}

int enter_process(const ProcessSpec& spec) {
  if (!spec.root.empty() && (::chroot(spec.root.c_str()) != 0 || ::chdir("/") != 0)) return errno;
  if (::chdir(spec.cwd.c_str()) != 0) return errno;
  if (::setgroups(spec.groups.size(), spec.groups.data()) != 0) return errno;
  if (::setgid(spec.gid) != 0 || ::setuid(spec.uid) != 0) return errno;
  return 0;
}

void exec_process(ProcessSpec& spec) {
  std::vector<char*> av, ev;
  for (auto& a : spec.argv) av.push_back(a.data());
  av.push_back(nullptr);
  for (auto& e : spec.env) ev.push_back(e.data());
  ev.push_back(nullptr);
  // execvp searches the PATH of the calling process, not of envp: make the
  // program's environment ours first.
  environ = ev.data();
  ::execvp(av[0], av.data());
}

void run_process(ProcessSpec& spec, int in, int out, int err, int status_fd) {
  ::dup2(in, 0);
  ::dup2(out, 1);
  ::dup2(err, 2);
  ::signal(SIGPIPE, SIG_DFL);
  int e = enter_process(spec);
  if (e == 0) {
    exec_process(spec);
    e = errno;
  }
  (void)!::write(status_fd, &e, sizeof e);
  ::_exit(127);
}

}  // namespace snapvm::guest
