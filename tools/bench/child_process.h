// A program a benchmark starts and times: its stdout and stderr go to a log
// file the benchmark can watch for a line; killed and reaped on destruction.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace snapvm::bench {

class ChildProcess {
 public:
  // Starts `args` (args[0] a path) with stdin from /dev/null and its output
  // appended to `log`; exits the program with one line if it cannot.
  ChildProcess(std::vector<std::string> args, std::string log);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Waits until the log holds `text`; false after `limit` or if the program
  // ended first.
  bool wait_for_output(const std::string& text, std::chrono::milliseconds limit);
  std::string output() const;
  // SIGTERM, then SIGKILL after `grace`; returns the wait status.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  bool running();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

std::string slurp(const std::string& path);

}  // namespace snapvm::bench
