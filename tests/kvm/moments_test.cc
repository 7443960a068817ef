// Snapshots at random moments of a busy guest: four vCPUs hashing and
// checking their results, a disk and the entropy device in use, the agent
// streaming output to the host. Every snapshot must restore into a guest
// that is healthy: no wrong hash, every worker still making progress, disk,
// entropy and agent working.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>

#include "arch_facts.h"
#include "background_vm.h"
#include "guest_env.h"
#include "kvm_trace.h"
#include "restored_vm.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;

// Four workers hash the same data forever and log any wrong answer: a
// register or memory state broken by snapshot and restore shows up as a
// mismatch or a worker that stops counting. A fifth loop writes the disk and
// reads the entropy device.
constexpr const char* kWorkload = R"sh(
head -c 65536 /dev/urandom > /tmp/blob
want=$(sha256sum < /tmp/blob)
for i in 1 2 3 4; do
  setsid sh -c "n=0; while :; do [ \"\$(sha256sum < /tmp/blob)\" = \"$want\" ] || echo bad >> /tmp/bad; n=\$((n+1)); echo \$n > /tmp/count$i; done" </dev/null >/dev/null 2>&1 &
done
setsid sh -c 'n=0; while :; do dd if=/dev/hwrng of=/dev/vda bs=4096 count=4 seek=$((n % 100 * 4)) conv=fsync 2>/dev/null; n=$((n+1)); done' </dev/null >/dev/null 2>&1 &
echo started
)sh";

// Run in a restored guest: healthy means no wrong hash, every worker's count
// advances (within three minutes: a starved CI machine can stall a guest
// for tens of seconds), a block written to the disk reads back after the page cache is
// dropped, and the entropy device answers.
constexpr const char* kHealthCheck = R"sh(
[ ! -e /tmp/bad ] || { echo "wrong hash in a worker"; exit 1; }
for i in 1 2 3 4; do eval before$i=$(cat /tmp/count$i); done
tries=0
while :; do
  stalled=0
  for i in 1 2 3 4; do [ "$(cat /tmp/count$i)" != "$(eval echo \$before$i)" ] || stalled=$i; done
  [ $stalled = 0 ] && break
  tries=$((tries+1))
  [ $tries -lt 360 ] || { echo "worker $stalled stopped"; exit 1; }
  sleep 0.5
done
w=$(echo probe-$$ | dd of=/dev/vda bs=512 seek=6000 conv=fsync 2>&1) || { echo "disk write failed: $w"; exit 1; }
echo 3 > /proc/sys/vm/drop_caches
got=$(dd if=/dev/vda bs=512 skip=6000 count=1 2>/dev/null | head -n 1)
[ "$got" = probe-$$ ] || { echo "disk read-back failed: got '$got' for probe-$$"; dmesg | tail -n 5; exit 1; }
[ "$(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | wc -c | tr -d " ")" = 16 ] || { echo "no entropy"; exit 1; }
echo healthy
)sh";

int moments() {
  const char* n = std::getenv("SNAPVM_TEST_MOMENTS");
  // 12 in the CI gate (about 30 s each in the emulated host);
  // SNAPVM_TEST_MOMENTS=100 for a longer hunt.
  return n != nullptr ? std::atoi(n) : 12;
}

TEST(SnapshotUnderLoad, RandomMomentsAllRestoreHealthy) {
  ASSERT_EQ(0, std::system("rm -f /tmp/moments.img && truncate -s 4M /tmp/moments.img"));
  test::VmOptions options;
  options.disks = {{"/tmp/moments.img", false}};
  options.vcpus = 4;
  test::BackgroundVm vm("/tmp/moments.vsock", options);
  ASSERT_TRUE(vm.wait_ready()) << vm.error() << vm.console();
  auto start = test::run("/tmp/moments.vsock", {"sh", "-c", kWorkload});
  ASSERT_EQ(start.out, "started\n") << start.error << start.err;
  // Where a clone that resets was (x86_64: see kvm_trace.h). Its RIP is in
  // the guest kernel, which every clone shares with this VM: its base here.
  test::KvmShutdownTrace trace;
  if (trace.active()) {
    auto text = test::run("/tmp/moments.vsock", {"sh", "-c", "grep -w -e _text -e _etext /proc/kallsyms"});
    std::printf("kvm events traced until a shutdown exit; guest kernel text:\n%s", text.out.c_str());
  }

  // The agent streams output to the host the whole time, so snapshots also
  // catch vsock connections with data in flight.
  std::atomic<bool> streaming{true};
  std::atomic<int> streams{0};
  std::thread stream([&] {
    while (streaming) {
      auto r = test::run("/tmp/moments.vsock", {"sh", "-c", "od -An -tx1 /tmp/blob | head -c 100000"});
      if (r.error.empty() && r.out.size() == 100000) ++streams;
    }
  });

  std::random_device seed_source;
  unsigned seed = seed_source();
  std::printf("random moments seed %u\n", seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> gap_ms(100, 1500);
  int healthy = 0;
  const int count = moments();
  for (int i = 0; i < count; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms(rng)));
    std::string snap = "/tmp/moment.snap";
    std::string disk = "/tmp/moment-disk.img";
    ASSERT_TRUE(vm.machine().pause()) << "moment " << i;
    // The clone gets the disk as it is at this moment, like the RAM.
    ASSERT_EQ(0, std::system(("cp /tmp/moments.img " + disk).c_str()));
    auto stats = vm.machine().snapshot(snap);
    ASSERT_TRUE(stats) << "moment " << i << ": " << stats.error().describe();
    bool this_one_healthy = false;
    {
      test::RestoredVm clone(snap, "/tmp/moment-clone.vsock", "/tmp/moment-clone.log", {"--disk", disk});
      auto check = test::run_when_up(clone.vsock(), {"sh", "-c", kHealthCheck});
      this_one_healthy = check.out == "healthy\n";
      if (this_one_healthy) {
        ++healthy;
      } else {
        // Reported in full either way; whether it fails the test is decided
        // below against the architecture's known-defect allowance.
        std::printf("UNHEALTHY moment %d, seed %u: %s %s\n%s\n", i + 1, seed, check.error.c_str(), check.err.c_str(),
                    clone.log().c_str());
        if (trace.active()) std::printf("KVM's last events:\n%s\n", trace.take(60).c_str());
      }
    }
    if (!this_one_healthy) {
      // The same file restored once more tells a snapshot that is wrong
      // (fails again) from a restore that went wrong once (healthy now). The
      // original is still paused, so its disk is still this moment's.
      const std::string disk_again = "/tmp/moment-disk-again.img";
      ASSERT_EQ(0, std::system(("cp /tmp/moments.img " + disk_again).c_str()));
      test::RestoredVm again(snap, "/tmp/moment-again.vsock", "/tmp/moment-again.log", {"--disk", disk_again});
      auto check = test::run_when_up(again.vsock(), {"sh", "-c", kHealthCheck});
      std::printf("moment %d restored again from the same snapshot: %s\n", i + 1,
                  check.out == "healthy\n" ? "healthy" : ("NOT healthy: " + check.error + check.out).c_str());
      if (check.out != "healthy\n") std::printf("%s\n", again.log().c_str());
    }
    std::printf("moment %d of %d: snapshot %llu MiB data, clone %s\n", i + 1, count,
                static_cast<unsigned long long>(stats->data_bytes >> 20), this_one_healthy ? "healthy" : "NOT healthy");
    std::fflush(stdout);
    ASSERT_TRUE(vm.machine().resume());
  }
  streaming = false;
  stream.join();
  // The original guest is still healthy too.
  auto original = test::run("/tmp/moments.vsock", {"sh", "-c", kHealthCheck});
  EXPECT_EQ(original.out, "healthy\n") << original.error << original.err;
  std::printf("FIGURE %d of %d snapshots taken at random moments under load restored healthy; "
              "%d complete 100 kB agent streams ran alongside\n",
              healthy, count, streams.load());
  // Every clone healthy, on both architectures. (x86_64 once allowed one
  // reset per run: clones that reset under the emulated host's nested
  // paging, which its x86_64 test host no longer uses; docs/benchmarks.md,
  // "x86_64 in the gate".)
  EXPECT_EQ(healthy, count) << "seed " << seed;
  EXPECT_GT(streams.load(), 0);
  ::unlink("/tmp/moment.snap");
  ::unlink("/tmp/moment-disk.img");
  ::unlink("/tmp/moment-disk-again.img");
}

}  // namespace
}  // namespace snapvm
