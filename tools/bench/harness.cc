#include "tools/bench/harness.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace snapvm::bench {

namespace {
const auto program_start = std::chrono::steady_clock::now();
std::string program_name = "bench";
}  // namespace

void die(const std::string& program, const std::string& what) {
  fmt::print(stderr, "{}: {}\n", program, what);
  std::exit(1);
}

void die(const std::string& what) { die(program_name, what); }

Cli::Cli(std::string program, const std::string& description) : app_{program + ": " + description} {
  program_name = std::move(program);
}

Cli& Cli::guest(std::string& kernel, std::string& initrd, const std::string& kernel_help,
                const std::string& initrd_help) {
  app_.add_option("--kernel", kernel, kernel_help)->required();
  app_.add_option("--initrd", initrd, initrd_help)->required();
  return *this;
}

Cli& Cli::snapvm(std::string& path, const std::string& help) {
  app_.add_option("--snapvm", path, help);
  return *this;
}

Cli& Cli::sizes(std::vector<std::string>& sizes, const std::string& help) {
  app_.add_option("--sizes", sizes, help)->delimiter(',');
  return *this;
}

Cli& Cli::cpus(uint32_t& cpus, const std::string& help) {
  app_.add_option("--cpus", cpus, help);
  return *this;
}

Cli& Cli::reps(int& reps, const std::string& help) {
  app_.add_option("--reps", reps, help);
  return *this;
}

Cli& Cli::round_trips(int& n, const std::string& help) {
  app_.add_option("--round-trips", n, help);
  return *this;
}

Cli& Cli::dir(std::string& dir, const std::string& help) {
  app_.add_option("--dir", dir, help);
  return *this;
}

void Cli::parse(int argc, char** argv) {
  try {
    app_.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app_.exit(e));
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

uint64_t bytes_read_by(pid_t pid) {
  std::ifstream io(fmt::format("/proc/{}/io", pid));
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value) {
    if (key == "rchar:") return value;
  }
  return 0;
}

void drop_caches() {
  ::sync();
  if (FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w")) {
    std::fputs("3", f);
    std::fclose(f);
  }
}

void progress(const std::string& what) {
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - program_start).count();
  fmt::print(stderr, "[{:7.1f} s] {}\n", s, what);
}

StepWatchdog::StepWatchdog(std::string step, std::chrono::seconds limit) {
  thread_ = std::thread([this, step = std::move(step), limit] {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, limit, [&] { return done_; })) {
      progress(fmt::format("stuck: {} did not finish within {} s", step, limit.count()));
      std::_Exit(3);
    }
  });
}

StepWatchdog::~StepWatchdog() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::string verdict(double value, double limit) { return value <= limit ? "met" : "MISSED"; }

void limit_row(const std::string& what, const std::string& figure, const std::string& limit,
               const std::string& verdict) {
  fmt::print("  {:<34} {:>22}   {:<30} {}\n", what, figure, limit, verdict);
}

Table::Table(std::vector<int> widths, std::string separator)
    : widths_(std::move(widths)), separator_(std::move(separator)) {}

void Table::row(const std::vector<std::string>& cells, const std::string& tail) const {
  std::string line;
  for (size_t i = 0; i < cells.size() && i < widths_.size(); ++i) {
    if (i > 0) line += separator_;
    int w = widths_[i];
    line += w < 0 ? fmt::format("{:<{}}", cells[i], -w) : fmt::format("{:>{}}", cells[i], w);
  }
  fmt::print("{}{}\n", line, tail);
}

std::string fixed(double value, int decimals) { return fmt::format("{:.{}f}", value, decimals); }

std::optional<double> restored_in_ms(const std::string& output) {
  auto start = output.find(kRestoredLine);
  if (start == std::string::npos) return std::nullopt;
  auto end = output.find('\n', start);
  auto line = nlohmann::json::parse(output.substr(start, end == std::string::npos ? end : end - start), nullptr, false);
  auto total = line.is_object() ? line.find("total_ms") : line.end();
  if (total == line.end() || !total->is_number()) return std::nullopt;
  return total->get<double>();
}

}  // namespace snapvm::bench
