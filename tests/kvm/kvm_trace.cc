#include "kvm_trace.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <deque>
#include <fstream>
#include <string>

namespace snapvm::test {
namespace {

constexpr const char* kTracefs = "/sys/kernel/tracing";

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

std::string event(const char* name) { return std::string(kTracefs) + "/events/kvm/" + name + "/"; }

}  // namespace

KvmShutdownTrace::KvmShutdownTrace() {
#if defined(__x86_64__)
  // Only in the emulated test host, which is ours: a user's machine running
  // the suite natively (SNAPVM_GUEST_DIR set, kvm-tests.sh) keeps its own
  // tracing untouched.
  if (std::getenv("SNAPVM_GUEST_DIR") != nullptr) return;
  if (::access((std::string(kTracefs) + "/trace").c_str(), F_OK) != 0) {
    ::mount("tracefs", kTracefs, "tracefs", 0, nullptr);
  }
  // 127 is SVM_EXIT_SHUTDOWN, 2 VMX's triple fault; the trigger needs the
  // event's fields, so it runs after the exit is recorded.
  const std::string shutdown = "exit_reason == 127 || exit_reason == 2";
  if (!write_file(event("kvm_exit") + "filter", shutdown)) return;
  if (!write_file(event("kvm_exit") + "trigger", "traceoff if " + shutdown)) return;
  write_file(std::string(kTracefs) + "/trace", "");
  for (const char* e : {"kvm_exit", "kvm_inj_virq", "kvm_inj_exception"}) {
    if (!write_file(event(e) + "enable", "1")) return;
  }
  active_ = write_file(std::string(kTracefs) + "/tracing_on", "1");
#endif
}

KvmShutdownTrace::~KvmShutdownTrace() {
  if (!active_) return;
  for (const char* e : {"kvm_exit", "kvm_inj_virq", "kvm_inj_exception"}) write_file(event(e) + "enable", "0");
  write_file(event("kvm_exit") + "trigger", "!traceoff");
  write_file(event("kvm_exit") + "filter", "0");
  write_file(std::string(kTracefs) + "/tracing_on", "1");
}

std::string KvmShutdownTrace::take(int lines) {
  if (!active_) return "";
  std::ifstream f(std::string(kTracefs) + "/trace");
  std::deque<std::string> last;
  for (std::string line; std::getline(f, line);) {
    if (!line.empty() && line[0] == '#') continue;
    last.push_back(line);
    if (static_cast<int>(last.size()) > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += l + "\n";
  write_file(std::string(kTracefs) + "/trace", "");
  write_file(std::string(kTracefs) + "/tracing_on", "1");
  return out;
}

}  // namespace snapvm::test
