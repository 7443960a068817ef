// Many clones of one snapshot: they all run, each draws its own random
// numbers, and the guest RAM they map from the snapshot file is one set of
// page-cache pages, not a copy per clone.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "background_vm.h"
#include "guest_env.h"
#include "restored_vm.h"

namespace snapvm {
namespace {

constexpr int kClones = 8;

// The kB figures of one mapping in /proc/PID/smaps.
struct MappingUse {
  bool found = false;
  long rss_kb = 0, pss_kb = 0, shared_kb = 0, private_dirty_kb = 0;
};

MappingUse mapping_use(pid_t pid, const std::string& file) {
  std::ifstream smaps("/proc/" + std::to_string(pid) + "/smaps");
  MappingUse use;
  bool inside = false;
  std::string line;
  while (std::getline(smaps, line)) {
    bool header = !line.empty() && line.find(':') > line.find(' ');  // "addr-addr perms ..." has no "Key:" first
    if (header) {
      inside = line.size() >= file.size() && line.compare(line.size() - file.size(), file.size(), file) == 0;
      use.found |= inside;
      continue;
    }
    if (!inside) continue;
    std::istringstream in(line);
    std::string key;
    long kb = 0;
    in >> key >> kb;
    if (key == "Rss:") use.rss_kb += kb;
    if (key == "Pss:") use.pss_kb += kb;
    // Shared_Dirty too: a snapshot on tmpfs sits in always-dirty page cache.
    if (key == "Shared_Clean:" || key == "Shared_Dirty:") use.shared_kb += kb;
    if (key == "Private_Dirty:") use.private_dirty_kb += kb;
  }
  return use;
}

long mem_available_kb() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  long kb = 0;
  while (meminfo >> key >> kb) {
    if (key == "MemAvailable:") return kb;
    meminfo.ignore(64, '\n');
  }
  return -1;
}

TEST(Clones, EightRunConcurrentlyDrawOwnRandomNumbersAndShareRam) {
  const std::string snap = "/tmp/clones-base.snap";
  std::string fill_sum;
  {
    test::BackgroundVm vm("/tmp/clones-base.vsock");
    ASSERT_TRUE(vm.wait_ready()) << vm.error() << vm.console();
    // Touch a good part of RAM so sharing has something to show.
    auto fill = test::run("/tmp/clones-base.vsock", {"sh", "-c", "head -c 33554432 /dev/urandom > /tmp/fill && md5sum < /tmp/fill"});
    ASSERT_EQ(fill.result.exit_code, 0) << fill.error;
    fill_sum = fill.out;
    ASSERT_TRUE(vm.machine().pause());
    ASSERT_TRUE(vm.machine().snapshot(snap));
  }
  long available_before = mem_available_kb();
  std::vector<std::unique_ptr<test::RestoredVm>> clones;
  for (int i = 0; i < kClones; ++i) {
    std::string name = "/tmp/clone" + std::to_string(i);
    clones.push_back(std::make_unique<test::RestoredVm>(snap, name + ".vsock", name + ".log"));
  }
  std::set<std::string> randoms;
  for (auto& c : clones) {
    ASSERT_TRUE(c->wait_log("entropy reseeded")) << c->log();
    // Every clone reads the guest file the base wrote (RAM from the snapshot)
    // and draws random numbers.
    auto r = test::run_when_up(c->vsock(), {"sh", "-c", "md5sum < /tmp/fill; head -c 16 /dev/urandom | od -An -tx1"});
    ASSERT_TRUE(r.error.empty()) << r.error << "\nclone log:\n" << c->log();
    ASSERT_EQ(r.result.exit_code, 0) << r.err;
    auto digest_end = r.out.find('\n') + 1;
    EXPECT_EQ(r.out.substr(0, digest_end), fill_sum) << "a clone reads other RAM than the base wrote";
    randoms.insert(r.out.substr(digest_end));
  }
  EXPECT_EQ(randoms.size(), static_cast<size_t>(kClones)) << "clones drew the same random numbers";

  MappingUse total;
  for (auto& c : clones) {
    MappingUse u = mapping_use(c->pid(), snap);
    ASSERT_TRUE(u.found) << "clone " << c->pid() << " does not map guest RAM from " << snap;
    total.rss_kb += u.rss_kb;
    total.pss_kb += u.pss_kb;
    total.shared_kb += u.shared_kb;
    total.private_dirty_kb += u.private_dirty_kb;
  }
  long used_kb = available_before - mem_available_kb();
  std::printf("FIGURE %d clones, guest RAM mapped from the snapshot: Rss %ld MiB in all, Pss %ld MiB "
              "(shared %ld MiB, private copies %ld MiB); host MemAvailable fell by %ld MiB\n",
              kClones, total.rss_kb >> 10, total.pss_kb >> 10, total.shared_kb >> 10,
              total.private_dirty_kb >> 10, used_kb >> 10);
  // Each clone touched the 32 MiB file at least, so Rss counts it 8 times;
  // shared pages count once in Pss. A copy per clone would make them equal.
  EXPECT_GT(total.rss_kb, kClones * (32L << 10));
  EXPECT_LT(total.pss_kb * 2, total.rss_kb) << "guest RAM is not shared between clones";
  EXPECT_GT(total.shared_kb, total.private_dirty_kb);
  clones.clear();
  ::unlink(snap.c_str());  // on the test host's tmpfs, read holes take memory
}

}  // namespace
}  // namespace snapvm
