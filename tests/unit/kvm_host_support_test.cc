// Telling a /dev/kvm that cannot boot a stock guest (the PVM backend) from
// one that can, from what /sys and /proc say, in trees made by the test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kvm/host_support.h"

namespace snapvm::kvm {
namespace {

namespace fs = std::filesystem;

class FakeHost {
 public:
  FakeHost() : root_(fs::path(::testing::TempDir()) / ("kvm-host-" + std::to_string(::getpid()) + "-" +
                                                      std::to_string(counter_++))) {
    fs::remove_all(root_);
    fs::create_directories(root_ / "sys/module/kvm");
    fs::create_directories(root_ / "proc");
  }
  ~FakeHost() { fs::remove_all(root_); }
  FakeHost& module(const char* name) {
    fs::create_directories(root_ / "sys/module" / name);
    return *this;
  }
  FakeHost& cpu_flags(const std::string& flags) {
    std::ofstream(root_ / "proc/cpuinfo") << "processor\t: 0\nflags\t\t: " << flags << "\n\nprocessor\t: 1\nflags\t\t: "
                                          << flags << "\n";
    return *this;
  }
  std::string root() const { return root_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path root_;
};

TEST(KvmHostSupport, ThePvmBackendIsNamedWithWhatToDo) {
  FakeHost h;
  h.module("kvm_pvm").cpu_flags("fpu vme sse sse2 hypervisor");  // a cloud VM without nested virtualization
  auto facts = read_host_facts(h.root());
  EXPECT_EQ(facts.pvm_loaded, true);
  EXPECT_EQ(facts.vendor_loaded, false);
  EXPECT_EQ(facts.cpu_has_vmx_svm, false);
  std::string why = x86_unusable_reason(facts);
  EXPECT_NE(why.find("PVM backend (kvm_pvm)"), std::string::npos) << why;
  EXPECT_NE(why.find("kvm_intel or kvm_amd"), std::string::npos) << why;
  EXPECT_NE(why.find("SNAPVM_ALLOW_ANY_KVM=1"), std::string::npos) << why;
}

TEST(KvmHostSupport, HardwareBackendsPass) {
  FakeHost intel;
  intel.module("kvm_intel").cpu_flags("fpu vme vmx sse2");
  EXPECT_EQ(x86_unusable_reason(read_host_facts(intel.root())), "");
  FakeHost amd;
  amd.module("kvm_amd").cpu_flags("fpu svm sse2");
  EXPECT_EQ(x86_unusable_reason(read_host_facts(amd.root())), "");
  // PVM loaded beside a hardware backend: /dev/kvm is the hardware one.
  FakeHost both;
  both.module("kvm_pvm").module("kvm_intel").cpu_flags("vmx");
  EXPECT_EQ(x86_unusable_reason(read_host_facts(both.root())), "");
}

TEST(KvmHostSupport, NoVirtualizationFlagAndNoVendorModuleIsNamed) {
  FakeHost h;
  h.cpu_flags("fpu vme vmxnot svm2 sse2");  // whole words only
  auto facts = read_host_facts(h.root());
  EXPECT_EQ(facts.cpu_has_vmx_svm, false);
  EXPECT_NE(x86_unusable_reason(facts).find("neither vmx nor svm"), std::string::npos);
}

TEST(KvmHostSupport, WhatCannotBeReadIsNotHeldAgainstTheHost) {
  // Inside a jail neither /sys nor /proc is there: nothing is known, so
  // nothing is refused (KVM itself answers then).
  const std::string empty = ::testing::TempDir() + "kvm-host-empty-" + std::to_string(::getpid());
  fs::create_directories(empty);
  auto facts = read_host_facts(empty);
  EXPECT_FALSE(facts.pvm_loaded.has_value());
  EXPECT_FALSE(facts.vendor_loaded.has_value());
  EXPECT_FALSE(facts.cpu_has_vmx_svm.has_value());
  EXPECT_EQ(x86_unusable_reason(facts), "");
  fs::remove_all(empty);
}

}  // namespace
}  // namespace snapvm::kvm
