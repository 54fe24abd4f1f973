// The agent's per-sample pipeline between the sampler and a writer: wall-clock time, process
// metadata (once per process), comm filtering, and user frames resolved to mappings.
//
//   bpf::ClockOffset clock;
//   FoldedPrinter folded(&namer);                       // or, later, a Kafka Publisher
//   SampleProcessor processor({.comm = "^python"}, &clock, &folded);
//   auto sampler = bpf::Sampler::Create(cfg, [&](bpf::RawSample&& s) {
//     processor.Handle(std::move(s));                // the sampler's dispatch thread only
//   });
//
// Sinks see a process (OnProcess) before its first sample, so a publisher can emit the
// processes-topic record first; exec re-announces the process.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <unordered_map>
#include <vector>

#include "flamestream/bpf/clock_offset.h"
#include "flamestream/bpf/sampler.h"
#include "flamestream/proc/maps.h"
#include "flamestream/proc/process.h"
#include "frame_namer.h"

namespace flamestream::agent {

struct ResolvedSample {
  uint64_t monotonic_ns = 0;
  uint64_t wall_ns = 0;
  uint32_t pid = 0;
  uint32_t tid = 0;
  uint32_t cpu = 0;
  uint32_t flags = 0;     // bpf::SampleFlags
  bool off_cpu = false;   // an off-CPU event (the stacks a thread blocked in), not a CPU sample
  uint64_t value_ns = 0;  // off-CPU: nanoseconds blocked; CPU samples: 0 (the period)
  std::string comm;       // thread comm at sample time
  std::vector<UserFrame> user;   // leaf first
  std::vector<uint64_t> kernel;  // leaf first
};

// Where processed samples go: print mode's folded stacks, or the Kafka publisher.
class SampleWriter {
 public:
  virtual ~SampleWriter() = default;
  virtual void OnProcess(const proc::ProcessInfo& process) { (void)process; }
  virtual void OnSample(const ResolvedSample& sample, const proc::ProcessInfo& process) = 0;
  // An announced process exited (BPF exit event, or /proc/<pid> gone at a periodic check).
  // Called once per OnProcess; exec re-announces without an exit in between.
  virtual void OnExit(const proc::ProcessInfo& process) { (void)process; }
};

struct ProcessorOptions {
  std::string comm;  // ECMAScript regex on thread comm, process comm or exe; "" = all
  // Container ids (or unique prefixes, as `docker ps` prints them); empty = all. A process
  // must match every filter that is set.
  std::vector<std::string> container_ids;
  std::string cgroup;    // ECMAScript regex on the cgroup path; "" = all
  bool cmdline = false;  // read cmdlines into ProcessInfo (privacy: off by default)
  std::string proc_root = "/proc";
  // How often (in sample time) announced processes are checked against /proc, so a process
  // whose BPF exit event was lost (ring full) is still retired.
  std::chrono::nanoseconds exit_check_interval = std::chrono::seconds(10);
};

struct ProcessorStats {
  std::atomic<uint64_t> samples{0};                // handed to the writer
  std::atomic<uint64_t> filtered_by_comm{0};       // samples dropped by any process filter
  std::atomic<uint64_t> unknown_mappings{0};       // user frames in no mapping
  std::atomic<uint64_t> processes{0};              // processes announced
  std::atomic<uint64_t> process_read_failures{0};  // exited before we read /proc
  std::atomic<uint64_t> exits{0};                  // announced processes retired (OnExit)
  std::atomic<uint64_t> exits_found_by_check{0};   // of those, found gone by the /proc check
};

class SampleProcessor {
 public:
  // `clock` and `writer` must outlive the processor. Fails on a bad comm or cgroup regex.
  static Result<std::unique_ptr<SampleProcessor>> Create(ProcessorOptions options,
                                                         const bpf::ClockOffset* clock,
                                                         SampleWriter* writer);

  void Handle(bpf::RawSample&& raw);
  [[nodiscard]] const ProcessorStats& stats() const { return stats_; }
  [[nodiscard]] const proc::MapsCacheStats& maps_stats() const { return maps_.stats(); }

 private:
  struct Process {
    proc::ProcessInfo info;
    std::optional<bool> comm_match;     // cached comm/exe verdict
    std::optional<bool> process_match;  // cached container/cgroup verdict
    bool announced = false;             // OnProcess called
  };

  SampleProcessor(ProcessorOptions options, const bpf::ClockOffset* clock, SampleWriter* writer);
  Process& Lookup(uint32_t pid, const std::string& comm);
  bool Matches(Process& p, const std::string& thread_comm);
  // Forgets `pid`, telling the writer when it had been announced.
  void Retire(uint32_t pid);
  // Retires processes whose /proc entry is gone or belongs to a new process (pid reuse).
  void CheckExits();

  ProcessorOptions options_;
  std::optional<std::regex> comm_re_;
  std::optional<std::regex> cgroup_re_;
  const bpf::ClockOffset* clock_;
  SampleWriter* writer_;
  proc::MapsCache maps_;
  std::unordered_map<uint32_t, Process> processes_;
  ProcessorStats stats_;
  uint64_t next_exit_check_ns_ = 0;  // sample monotonic time of the next CheckExits()
};

}  // namespace flamestream::agent
