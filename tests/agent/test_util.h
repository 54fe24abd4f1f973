// Helpers for the agent integration tests: child processes, ELF symbol ranges, folded output.
//
//   Child w = Child::Spawn({BinPath("fs-workload-callchain"), "8"});   // waits for "ready"
//   std::string out = RunToCompletion({BinPath("flamestream-agent"), "--print", ...});
//   FunctionRanges fns = FunctionRanges::Load(BinPath("fs-workload-callchain"));
//   std::optional<std::string> f = fns.At(0x1139);                       // "leaf"
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace flamestream::testing_agent {

std::string BinPath(const std::string& name);
bool Privileged();  // capabilities present, or CI=true (then the test must run and fail loudly)

class Child {
 public:
  // Starts argv with stdout on a pipe and waits (up to 10 s) for a line "ready".
  static Child Spawn(const std::vector<std::string>& argv);
  Child(Child&& o) noexcept;
  ~Child();
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  Child() = default;
  pid_t pid_ = -1;
  int out_fd_ = -1;
};

// Runs argv to completion; returns its stdout. Fails the current test on a non-zero exit.
std::string RunToCompletion(const std::vector<std::string>& argv, int* exit_status = nullptr);

// Runs argv to completion like RunToCompletion, also reading its stderr line by line and
// calling on_stderr_line for each (used to catch the agent's "sampling" / "sampler stopped"
// log lines the moment they happen). Returns stdout.
std::string RunWatchingStderr(const std::vector<std::string>& argv,
                              const std::function<void(const std::string&)>& on_stderr_line);

// Function symbols of an ELF file as file-offset ranges (vaddr mapped through PT_LOAD).
class FunctionRanges {
 public:
  static FunctionRanges Load(const std::string& path);
  // The function whose [start, end] contains `file_offset` (end inclusive: a return address
  // of a call that ends a function points just past it).
  [[nodiscard]] std::optional<std::string> At(uint64_t file_offset) const;
  [[nodiscard]] size_t size() const { return fns_.size(); }

 private:
  struct Fn {
    std::string name;
    uint64_t start;
    uint64_t end;
  };
  std::vector<Fn> fns_;
};

struct FoldedLine {
  std::vector<std::string> frames;  // [0] is the comm
  uint64_t count = 0;
};
std::vector<FoldedLine> ParseFolded(const std::string& text);

// CPU time (user + system) a process has used so far, in seconds (from /proc/<pid>/stat).
double CpuSeconds(pid_t pid);

// On-CPU time of each live thread of `pid` so far, in seconds, by tid: the first field of
// /proc/<pid>/task/<tid>/schedstat (the scheduler's exact sum_exec_runtime, in ns).
std::map<uint32_t, double> ThreadCpuSeconds(pid_t pid);
// Sum of ThreadCpuSeconds(pid).
double TaskCpuSeconds(pid_t pid);
// Per-thread CPU used between two ThreadCpuSeconds() snapshots (threads in `end` only).
std::map<uint32_t, double> CpuBetween(const std::map<uint32_t, double>& start,
                                      const std::map<uint32_t, double>& end);

// Name of a thread (/proc/<pid>/task/<tid>/comm without the newline).
std::string ThreadName(pid_t pid, uint32_t tid);

// "name+0x1f" -> ("name", 0x1f); nullopt when the frame has no "+0x".
std::optional<std::pair<std::string, uint64_t>> SplitFrame(const std::string& frame);

}  // namespace flamestream::testing_agent
