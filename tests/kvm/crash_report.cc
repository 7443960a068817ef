// A crash inside the test host leaves only "Bus error" on its console; this
// prints the faulting address, the signal code and a backtrace first (to
// symbolize with addr2line on build-aarch64/bin/snapvm_kvm_tests), then lets
// the signal end the process as before.
#include <execinfo.h>
#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <initializer_list>

namespace {

unsigned long long pc_of(const ucontext_t* uc) {
#if defined(__aarch64__)
  return uc->uc_mcontext.pc;
#else
  return static_cast<unsigned long long>(uc->uc_mcontext.gregs[REG_RIP]);
#endif
}

void report(int sig, siginfo_t* si, void* context) {
  char line[160];
  auto* uc = static_cast<ucontext_t*>(context);
  int n = std::snprintf(line, sizeof line, "snapvm_kvm_tests: signal %d at address %p (code %d), pc %#llx, thread %d\n",
                        sig, si->si_addr, si->si_code, pc_of(uc),
                        static_cast<int>(::gettid()));
  (void)!::write(STDERR_FILENO, line, static_cast<size_t>(n));
  void* frames[32];
  ::backtrace_symbols_fd(frames, ::backtrace(frames, 32), STDERR_FILENO);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

[[maybe_unused]] const bool installed = [] {
  struct sigaction sa {};
  sa.sa_sigaction = report;
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
  for (int sig : {SIGBUS, SIGSEGV, SIGILL, SIGFPE}) ::sigaction(sig, &sa, nullptr);
  return true;
}();

}  // namespace
