// Container images as microVMs, end to end on the real KVM: the test image
// (tools/testhost/pack-image.sh: busybox httpd as user `app`, two layers,
// one whiteout), imported on the build host into GUEST_DIR/images, is run
// with its entrypoint, env, working dir and user honoured; baked into a
// warm snapshot (a second time from a cached base of the booted image);
// and served from a pool whose clones answer HTTP at once,
// each with its own entropy, under a burst of takes larger than the pool.
// Boots images: an image's first boot (its root, entrypoint, user) is what
// is tested.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "guest_env.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

std::string store() { return test::guest_dir() + "/images"; }

std::string guest_args() {
  return " --kernel " + test::guest_kernel() + " --initrd " + test::guest_initrd() + " --store " + store();
}

// GET / over plain TCP; the whole response, or "" when nothing answered.
std::string http_get(const std::string& address) {
  auto colon = address.rfind(':');
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr);
  timeval limit{30, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  std::string out;
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    std::string req = "GET / HTTP/1.0\r\nHost: test\r\n\r\n";
    (void)!::send(s, req.data(), req.size(), MSG_NOSIGNAL);
    char buf[4096];
    for (ssize_t n; (n = ::recv(s, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  }
  ::close(s);
  return out;
}

json pool_request(const std::string& socket, const std::string& op) {
  auto r = test::snapvm_cli("pool " + op + " --socket " + socket + (op == "take" || op == "status" ? " --json" : ""));
  if (op == "status" || op == "take") {
    json j = json::parse(r.out.substr(0, r.out.find('\n')), nullptr, false);
    if (r.rc == 0 && j.is_object()) return j;
  }
  return {{"rc", r.rc}, {"out", r.out}};
}

TEST(Image, RunHonoursTheImagesUserWorkdirAndEnvAndReturnsTheProgramsStatus) {
  ASSERT_TRUE(fs::exists(store() + "/web/rootfs.ext4")) << "tools/testhost/pack-image.sh makes it";
  auto r = test::snapvm_cli(
      "run --image web" + guest_args() + " --mem 256M -e EXTRA=given --entrypoint /bin/sh -- -c "
      "'echo user=$(id -u):$(id -g) groups=$(id -G) cwd=$(pwd) greeting=$GREETING extra=$EXTRA; "
      "touch /app/written && echo wrote; cat /etc/secret || echo secret-gone; cat /www/index.html; exit 7'");
  EXPECT_EQ(r.rc, 7) << r.out;
  EXPECT_NE(r.out.find("user=1000:1000 groups=1000 50 cwd=/app greeting=hello-from-the-image extra=given"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("wrote"), std::string::npos) << "the overlay's writable layer: " << r.out;
  EXPECT_NE(r.out.find("secret-gone"), std::string::npos) << "the second layer's whiteout: " << r.out;
  EXPECT_NE(r.out.find("hello from a snapvm image"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("SNAPVM-GUEST-READY"), std::string::npos) << "init's lines are not the program's: " << r.out;

  // A program that is not there: one line, a failing status.
  r = test::snapvm_cli("run --image web" + guest_args() + " --mem 256M --entrypoint /bin/nope");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("start /bin/nope: not found"), std::string::npos) << r.out;
  // An image that is not in the store.
  r = test::snapvm_cli("run --image absent" + guest_args());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("no image `absent`"), std::string::npos) << r.out;
}

TEST(Image, BakedSnapshotServesHttpFromPooledClonesEachWithItsOwnEntropy) {
  const std::string dir = "/tmp/snapvm-image-pool-" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string snap = dir + "/web.snap", socket = dir + "/pool.sock";
  // The first bake boots and keeps a base (the booted image); the second
  // restores that base instead of booting and writes a diff over it.
  const std::string base = " --base " + dir + "/web.base.snap";
  auto first = test::snapvm_cli("bake web " + dir + "/first.snap" + base + guest_args() + " --mem 256M --console " +
                                dir + "/bake.console");
  ASSERT_EQ(first.rc, 0) << first.out << test::read_text(dir + "/bake.console");
  EXPECT_NE(first.out.find("(the booted image) written"), std::string::npos) << first.out;
  auto bake = test::snapvm_cli("bake web " + snap + base + guest_args() + " --mem 256M --console " + dir +
                               "/bake.console");
  ASSERT_EQ(bake.rc, 0) << bake.out << test::read_text(dir + "/bake.console");
  EXPECT_NE(bake.out.find("ready"), std::string::npos) << bake.out;
  EXPECT_NE(bake.out.find("after the base's restore began"), std::string::npos) << bake.out;
  EXPECT_NE(bake.out.find("a diff over the base"), std::string::npos) << bake.out;

  pid_t pool = test::spawn_logged({test::snapvm_binary(), "pool", "serve", snap, "--socket", socket, "--size", "2",
                                   "--max", "3", "--port", "8080", "--allow-dir", store(), "--dir", dir + "/clones",
                                   "--take-wait", "120"},
                                  dir + "/pool.log");
  // A failed assertion returns early: the pool (and with it, by its death
  // signal, every clone) must not outlive the test, or the test host waits
  // for it until its timeout.
  struct KillOnReturn {
    pid_t pid;
    ~KillOnReturn() {
      if (pid > 0 && ::waitpid(pid, nullptr, WNOHANG) == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } pool_guard{pool};
  auto wait_status = [&](const std::function<bool(const json&)>& done) {
    json s;
    for (auto deadline = std::chrono::steady_clock::now() + 180s; std::chrono::steady_clock::now() < deadline;) {
      s = pool_request(socket, "status");
      if (s.contains("ready") && done(s)) return s;
      std::this_thread::sleep_for(200ms);
    }
    ADD_FAILURE() << "pool status: " << s.dump() << "\n" << test::read_text(dir + "/pool.log");
    return s;
  };
  wait_status([](const json& s) { return s["ready"] == 2; });

  // A burst of three takes on a pool of two: the third waits for the refill.
  std::vector<json> taken(3);
  std::vector<std::thread> takers;
  for (size_t i = 0; i < taken.size(); ++i) takers.emplace_back([&, i] { taken[i] = pool_request(socket, "take"); });
  for (auto& t : takers) t.join();
  std::vector<std::string> addresses;
  for (const auto& t : taken) {
    ASSERT_TRUE(t.contains("addresses")) << t.dump() << test::read_text(dir + "/pool.log");
    addresses.push_back(t["addresses"]["8080"].get<std::string>());
  }
  // Every clone answers, all at once.
  std::vector<std::string> pages(addresses.size());
  std::vector<std::thread> getters;
  for (size_t i = 0; i < addresses.size(); ++i) getters.emplace_back([&, i] { pages[i] = http_get(addresses[i]); });
  for (auto& g : getters) g.join();
  for (size_t i = 0; i < pages.size(); ++i) {
    EXPECT_NE(pages[i].find("hello from a snapvm image"), std::string::npos)
        << addresses[i] << ": " << pages[i] << test::read_text(taken[i]["console"].get<std::string>());
  }
  // Each clone's random generator was reseeded by the take.
  std::set<std::string> uuids;
  for (const auto& t : taken) {
    auto r = test::snapvm_cli("exec " + t["vsock"].get<std::string>() + " -- cat /proc/sys/kernel/random/uuid");
    EXPECT_EQ(r.rc, 0) << r.out;
    uuids.insert(r.out);
  }
  EXPECT_EQ(uuids.size(), taken.size());

  // All three the pool may run are taken: a fourth take fails with one line.
  auto refused = test::snapvm_cli("pool take --wait 2 --socket " + socket);
  EXPECT_NE(refused.rc, 0);
  EXPECT_NE(refused.out.find("all 3 clones the pool may run are taken"), std::string::npos) << refused.out;

  // A released clone makes room: the pool refills; a ready clone that
  // crashes is replaced.
  auto released = test::snapvm_cli("pool release --socket " + socket + " " + taken[0]["id"].get<std::string>());
  EXPECT_EQ(released.rc, 0) << released.out;
  json s = wait_status([](const json& s) { return s["ready"] == 1 && s["taken"] == 2; });
  pid_t victim = 0;
  for (const auto& c : s["clones"]) {
    if (c["phase"] == "ready") victim = c["pid"].get<pid_t>();
  }
  ASSERT_GT(victim, 0) << s.dump();
  ::kill(victim, SIGKILL);
  s = wait_status([](const json& s) { return s["replaced"] == 1 && s["ready"] == 1; });

  // Stop: every clone ends, the socket goes.
  std::vector<pid_t> clones;
  for (const auto& c : s["clones"]) clones.push_back(c["pid"].get<pid_t>());
  EXPECT_EQ(test::snapvm_cli("pool stop --socket " + socket).rc, 0);
  int status = 0;
  EXPECT_EQ(::waitpid(pool, &status, 0), pool);
  pool_guard.pid = 0;  // reaped
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << test::read_text(dir + "/pool.log");
  for (pid_t c : clones) EXPECT_NE(::kill(c, 0), 0) << "clone " << c << " outlived the pool";
  EXPECT_FALSE(fs::exists(socket));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace snapvm
