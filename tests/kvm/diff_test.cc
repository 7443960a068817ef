// Diff snapshots from dirty-page tracking: they carry what changed (the
// guest's writes and the VMM's), turn zeroed pages into holes, chain, each
// restore standalone, and are refused against a base the VM did not come from.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <cstring>
#include <algorithm>
#include <thread>

#include "arch/platform.h"
#include "background_vm.h"
#include "guest_env.h"
#include "restored_vm.h"
#include "snapshot/writer.h"
#include "state/snapshot_state.h"

namespace snapvm {
namespace {

constexpr uint64_t kMiB = 1 << 20;

std::string sh_out(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[256];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

uint64_t allocated_bytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// The guest reads 1 MiB of its disk at 1 MiB through the page cache: the
// page-cache pages are filled by the VMM (virtio-blk), never written by a
// guest CPU, so KVM's log does not see them. Linux drops a block device's
// page cache when its last user closes it; a sleeper keeps /dev/vda open.
constexpr const char* kHoldDiskOpen = "setsid sleep 1000000 </dev/vda >/dev/null 2>&1 & ";
constexpr const char* kReadDiskRegion = "dd if=/dev/vda bs=4096 skip=256 count=256 2>/dev/null | md5sum";
constexpr const char* kPatternSum = "md5sum < /tmp/pattern";
// (md5sum: content checks only, and under emulation busybox's quickest
// digest: the test hashes 64 MiB four times.)

// Progress on the console, so a stall in the test host shows where it is.
void step(const char* what) {
  std::printf("diff test: %s\n", what);
  std::fflush(stdout);
}

// A snapshot of the running VM, which carries on afterwards.
Result<WriteStats> snapshot_now(test::BackgroundVm& vm, const std::string& path, const std::string& base = {}) {
  auto live = vm.machine().snapshot_live(path, base, /*resume=*/true);
  if (!live) return tl::unexpected(live.error());
  std::printf("FIGURE %s snapshot: guest paused %.1f ms of %.1f ms\n", base.empty() ? "full" : "diff", live->pause_ms,
              live->total_ms);
  return live->stats;
}

TEST(DiffSnapshots, CarryWhatChangedChainAndRestore) {
  // A disk with 1 MiB of random data at 1 MiB, and a zeroed one of the same
  // size for the restored clones: what they read of the region must come
  // from guest RAM, not from the disk.
  ASSERT_EQ(0, std::system("rm -f /tmp/diff-disk.img /tmp/zero-disk.img && truncate -s 4M /tmp/diff-disk.img "
                           "/tmp/zero-disk.img && head -c 1048576 /dev/urandom | dd of=/tmp/diff-disk.img bs=1048576 "
                           "seek=1 conv=notrunc 2>/dev/null"));
  std::string disk_sum = sh_out("dd if=/tmp/diff-disk.img bs=4096 skip=256 count=256 2>/dev/null | md5sum");
  const std::string s0 = "/tmp/diff-s0.snap", s1 = "/tmp/diff-s1.snap", s2 = "/tmp/diff-s2.snap";
  std::string pattern_sum;
  WriteStats full, d1, d2;
  {
    test::VmOptions o;
    o.mem_bytes = 512 * kMiB;
    o.disks = {{"/tmp/diff-disk.img", false}};
    o.track_dirty = true;
    // Debian's kernel zeroes every page it allocates, which would make the
    // guest CPU write the page-cache pages too and hide a missing VMM mark.
    o.extra_cmdline = "init_on_alloc=0";
    // Booted: the guest reads a disk that holds data (a warm restore needs
    // zeros), and tracking must hold from the first instruction.
    o.start = test::VmOptions::Start::kBoot;
    step("boot");
    test::BackgroundVm vm("/tmp/diff.vsock", o);
    ASSERT_TRUE(vm.wait_ready(std::chrono::seconds(120))) << vm.error() << vm.console();
    step("ready");
    EXPECT_TRUE(vm.machine().tracking_dirty());
    auto no_base = snapshot_now(vm, "/tmp/never.snap", s0);
    ASSERT_FALSE(no_base);
    EXPECT_NE(no_base.error().describe().find("take a full snapshot first"), std::string::npos);

    step("full snapshot");
    auto f = snapshot_now(vm, s0);
    ASSERT_TRUE(f) << f.error().describe();
    full = *f;
    EXPECT_EQ(vm.machine().dirty_base(), s0);

    step("write the pattern");
    // 64 MiB of known, non-zero data, and the disk region read via the page cache.
    auto w = test::run("/tmp/diff.vsock", {"sh", "-c", std::string(kHoldDiskOpen) + "yes snapvm-diff-pattern | head -c 67108864 > /tmp/pattern; " +
                                                          kPatternSum + "; " + kReadDiskRegion},
                     -1, std::chrono::seconds(300));
    // Every page the guest writes after the snapshot is a write-protection
    // fault, trapped and emulated in the test host: minutes on a loaded one.
    ASSERT_EQ(w.result.exit_code, 0) << w.error << w.err << (w.result.timed_out ? " (timed out after 300 s)" : "")
                                     << "\nconsole:\n" << vm.console();
    pattern_sum = w.out.substr(0, w.out.find('\n') + 1);
    ASSERT_EQ(w.out.substr(pattern_sum.size()), disk_sum) << "the guest reads its disk";

    step("diff 1");
    auto r1 = snapshot_now(vm, s1, s0);
    ASSERT_TRUE(r1) << r1.error().describe();
    d1 = *r1;
    EXPECT_EQ(vm.machine().dirty_base(), s1);

    // Zero the pattern in place (the same guest pages), and mark the generation.
    auto z = test::run("/tmp/diff.vsock", {"sh", "-c", "dd if=/dev/zero of=/tmp/pattern bs=1048576 count=64 conv=notrunc "
                                                       "2>/dev/null; echo gen2 > /tmp/gen"});
    ASSERT_EQ(z.result.exit_code, 0) << z.error << z.err;
    auto r2 = snapshot_now(vm, s2, s1);
    ASSERT_TRUE(r2) << r2.error().describe();
    d2 = *r2;

    // Refusals, each leaving no output file: an older snapshot of this VM,
    // a snapshot of another VM (another RAM size), a missing file.
    auto old_base = snapshot_now(vm, "/tmp/refused.snap", s0);
    ASSERT_FALSE(old_base);
    EXPECT_NE(old_base.error().describe().find("is not the snapshot this VM's dirty pages count from (" + s2 + ")"),
              std::string::npos)
        << old_base.error().describe();
    {
      state::SnapshotState other;
      other.arch = arch::snapshot_arch();
      other.machine.vcpu_count = 1;
      other.machine.memory.push_back({0x4000'0000, 64 << 10});
      other.vcpus.push_back({});
      std::vector<uint8_t> ram(64 << 10, 0);
      RamSource src{0x4000'0000, ram};
      ASSERT_TRUE(write_full("/tmp/other-vm.snap", state::to_contents(other), {&src, 1}));
    }
    auto other_vm = snapshot_now(vm, "/tmp/refused.snap", "/tmp/other-vm.snap");
    ASSERT_FALSE(other_vm);
    EXPECT_NE(other_vm.error().describe().find("is not the snapshot"), std::string::npos) << other_vm.error().describe();
    auto missing = snapshot_now(vm, "/tmp/refused.snap", "/tmp/no-such.snap");
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().describe().find("no-such.snap"), std::string::npos) << missing.error().describe();
    EXPECT_FALSE(exists("/tmp/refused.snap"));
    EXPECT_EQ(vm.machine().dirty_base(), s2) << "a refused diff changes nothing";
  }
  std::printf("FIGURE full snapshot: %llu MiB data written; diff 1 (64 MiB pattern written): %llu MiB written, "
              "base %s; diff 2 (pattern zeroed): %llu MiB written, %llu MiB punched into holes\n",
              static_cast<unsigned long long>(full.written_bytes / kMiB),
              static_cast<unsigned long long>(d1.written_bytes / kMiB), d1.reflinked ? "reflinked" : "copied",
              static_cast<unsigned long long>(d2.written_bytes / kMiB),
              static_cast<unsigned long long>(d2.holes_punched_bytes / kMiB));
  // About 64 MiB: the pattern plus what the guest kernel touched meanwhile,
  // far from the 512 MiB of RAM or the base's data.
  EXPECT_GE(d1.written_bytes, 64 * kMiB);
  EXPECT_LT(d1.written_bytes, 64 * kMiB + 48 * kMiB);
  EXPECT_GE(d2.holes_punched_bytes, 60 * kMiB) << "zeroed pages must become holes";
  EXPECT_LT(d2.written_bytes, 32 * kMiB);
  EXPECT_LT(allocated_bytes(s2) + 56 * kMiB, allocated_bytes(s1));

  // Each link restores standalone, to its own contents, with the zeroed disk.
  {
    test::RestoredVm vm(s1, "/tmp/diff-r1.vsock", "/tmp/diff-r1.log", {"--disk", "/tmp/zero-disk.img"});
    auto r = test::run_when_up(vm.vsock(), {"sh", "-c", std::string(kPatternSum) + "; " + kReadDiskRegion +
                                                           "; cat /tmp/gen 2>/dev/null || echo no-gen"});
    ASSERT_TRUE(r.error.empty()) << r.error << vm.log();
    EXPECT_EQ(r.out, pattern_sum + disk_sum + "no-gen\n")
        << "diff 1 lost the pattern or the pages only virtio-blk wrote";
  }
  {
    test::RestoredVm vm(s2, "/tmp/diff-r2.vsock", "/tmp/diff-r2.log", {"--disk", "/tmp/zero-disk.img"});
    auto r = test::run_when_up(vm.vsock(), {"sh", "-c", std::string(kPatternSum) + "; head -c 67108864 /dev/zero | md5sum; cat /tmp/gen"});
    ASSERT_TRUE(r.error.empty()) << r.error << vm.log();
    auto first = r.out.substr(0, r.out.find('\n') + 1);
    EXPECT_EQ(r.out, first + first + "gen2\n") << "diff 2: the pattern reads as zeros";
  }
  {
    test::RestoredVm vm(s0, "/tmp/diff-r0.vsock", "/tmp/diff-r0.log", {"--disk", "/tmp/zero-disk.img"});
    auto r = test::run_when_up(vm.vsock(), {"sh", "-c", "test -e /tmp/pattern && echo pattern || echo none"});
    ASSERT_TRUE(r.error.empty()) << r.error << vm.log();
    EXPECT_EQ(r.out, "none\n") << "the base is untouched by its diffs";
  }
}

TEST(DiffSnapshots, RestoredVmDiffsAgainstItsSnapshotThroughTheCli) {
  const std::string base = "/tmp/diff-s2.snap";
  ASSERT_TRUE(exists(base)) << "needs the snapshots of the previous test";
  {
    test::RestoredVm untracked(base, "/tmp/diff-u.vsock", "/tmp/diff-u.log",
                               {"--disk", "/tmp/zero-disk.img", "--api", "/tmp/diff-u.sock"});
    ASSERT_TRUE(test::run_when_up(untracked.vsock(), {"true"}).error.empty()) << untracked.log();
    auto refused = test::snapvm_cli("snapshot /tmp/diff-u.sock /tmp/diff-u.snap --diff-from " + base);
    EXPECT_EQ(refused.rc, 1);
    EXPECT_NE(refused.out.find("needs dirty-page tracking: start the VM with --track-dirty"), std::string::npos)
        << refused.out;
  }
  test::RestoredVm vm(base, "/tmp/diff-c.vsock", "/tmp/diff-c.log",
                      {"--disk", "/tmp/zero-disk.img", "--api", "/tmp/diff-c.sock", "--track-dirty"});
  auto w = test::run_when_up(vm.vsock(), {"sh", "-c", "echo third > /tmp/third"});
  ASSERT_TRUE(w.error.empty()) << w.error << vm.log();
  auto snap = test::snapvm_cli("snapshot /tmp/diff-c.sock /tmp/diff-s3.snap --diff-from " + base + " --resume");
  ASSERT_EQ(snap.rc, 0) << snap.out;
  EXPECT_NE(snap.out.find("diff,"), std::string::npos) << snap.out;
  EXPECT_NE(snap.out.find("now running"), std::string::npos) << snap.out;
  std::printf("FIGURE %s", snap.out.c_str());
  auto info = test::snapvm_cli("info --json /tmp/diff-c.sock");
  EXPECT_NE(info.out.find("\"dirty_base\": \"/tmp/diff-s3.snap\""), std::string::npos) << info.out;

  test::RestoredVm next("/tmp/diff-s3.snap", "/tmp/diff-d.vsock", "/tmp/diff-d.log", {"--disk", "/tmp/zero-disk.img"});
  auto r = test::run_when_up(next.vsock(), {"sh", "-c", "cat /tmp/gen /tmp/third"});
  ASSERT_TRUE(r.error.empty()) << r.error << next.log();
  EXPECT_EQ(r.out, "gen2\nthird\n");
  for (const char* f : {"/tmp/diff-s0.snap", "/tmp/diff-s1.snap", "/tmp/diff-s2.snap", "/tmp/diff-s3.snap",
                        "/tmp/other-vm.snap"}) {
    ::unlink(f);  // on the test host's tmpfs, read holes take memory
  }
}

}  // namespace
}  // namespace snapvm
