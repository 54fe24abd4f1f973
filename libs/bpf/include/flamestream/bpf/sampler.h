// CPU sampler: per-CPU cpu-clock perf events drive the BPF program in bpf/profile.bpf.c; a
// reader thread drains its ring buffer and hands decoded samples to a callback.
//
//   SamplerConfig cfg;
//   cfg.frequency_hz = 99;
//   cfg.pids = {1234};                       // empty: every process
//   FS_ASSIGN_OR_RETURN(auto sampler, Sampler::Create(cfg, [&](RawSample&& s) {
//     folded.Add(s);                          // runs on the sampler's dispatch thread
//   }));
//   FS_RETURN_IF_ERROR(sampler->Start());
//   ...
//   sampler->Stop();                          // joins both threads; the callback has returned
//   SamplerStats st = sampler->Stats();
//
// Threads: the reader polls the ring and pushes into a bounded queue; a dispatch thread pops
// and runs the callback. A slow callback therefore never stalls the ring (which would make the
// kernel drop samples we cannot count per process): when the queue is full the reader drops
// the sample and counts it in `queue_drops`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "flamestream/bpf/unwinder.h"
#include "flamestream/common/status.h"

namespace flamestream::bpf {

enum class EventKind : uint32_t {
  kSample = 1,
  kExec = 2,    // the process called execve(): mappings and comm changed
  kExit = 3,    // the process exited (its last thread)
  kOffCpu = 4,  // a thread ran again after blocking: value_ns off the CPU, the blocked stacks
};

// Flags from bpf/profile.h, repeated so users need not include the BPF header.
struct SampleFlags {
  static constexpr uint32_t kUserTruncated = 1u << 0;
  static constexpr uint32_t kKernelTruncated = 1u << 1;
  static constexpr uint32_t kUserReadFailed = 1u << 2;
  static constexpr uint32_t kInKernel = 1u << 3;
  static constexpr uint32_t kKernelThread = 1u << 4;
  static constexpr uint32_t kUserComplete = 1u << 5;  // the walk reached the outermost frame
  static constexpr uint32_t kUnwindNoProc = 1u << 6;  // no unwind tables for the process yet
};

// One decoded ring-buffer record.
struct RawSample {
  EventKind kind = EventKind::kSample;
  uint64_t monotonic_ns = 0;  // CLOCK_MONOTONIC; see ClockOffset for wall time
  uint32_t pid = 0;           // host tgid
  uint32_t tid = 0;           // host thread id
  uint32_t cpu = 0;
  uint32_t flags = 0;     // SampleFlags
  uint64_t value_ns = 0;  // kOffCpu: nanoseconds the thread was blocked; else 0
  std::string comm;
  std::vector<uint64_t> kernel_frames;  // leaf first
  // Leaf first. [0] is the interrupted pc; the others are return addresses (the call site is
  // at address - 1, which is what a symbolizer must look up).
  std::vector<uint64_t> user_frames;
};

// Decodes one ring record (struct fs_event_header + frames). Exposed for tests.
Result<RawSample> DecodeRecord(const void* data, size_t size);

struct SamplerConfig {
  // Samples per second per CPU (cpu-clock in frequency mode). 1..kMaxFrequencyHz.
  uint32_t frequency_hz = 19;
  // Frames the BPF unwinder follows, leaf included. 1..1024.
  uint32_t user_stack_depth = 512;
  bool kernel_stacks = true;
  bool user_stacks = true;
  // Host tgids to sample; empty means every process. Can change at run time (AddPid).
  std::vector<uint32_t> pids;
  // Capacity of the in-kernel pid filter.
  uint32_t max_pids = 4096;
  // Ring size in bytes, a power of two; 0 sizes it for 0.5 s of worst-case samples on all CPUs.
  uint64_t ring_bytes = 0;
  // Decoded samples waiting for the callback before the reader starts dropping.
  size_t queue_capacity = 16384;
  // Do not sample the agent's own process.
  bool exclude_self = true;
  // Report execve() and exit of sampled processes (kExec / kExit events).
  bool process_events = true;
  // Read BPF program run time (needs CAP_SYS_ADMIN; silently off without it).
  bool bpf_stats = true;
  // Unwinding with .eh_frame/.debug_frame tables (frame pointers as the per-frame fallback).
  // Off: frame pointers only.
  UnwinderConfig unwind;
  // Off-CPU events for blocks at least this long (stacks taken at sched_switch out while not
  // runnable, valued at the switch back in); 0 turns them off.
  uint64_t off_cpu_threshold_ns = 0;
  // Watched threads blocked at once whose stacks can wait for their switch-in (~3 KiB each,
  // allocated only while blocked); beyond it blocks are counted in off_cpu_drops.
  uint32_t off_cpu_max_threads = 16384;
};

inline constexpr uint32_t kMaxFrequencyHz = 10000;
inline constexpr uint32_t kMaxUserStackDepth = 1024;

struct SamplerStats {
  uint64_t samples = 0;         // written by BPF
  uint64_t ring_drops = 0;      // ring buffer full in BPF
  uint64_t queue_drops = 0;     // dispatch queue full in user space
  uint64_t decode_errors = 0;   // malformed records
  uint64_t filtered = 0;        // samples of processes not watched
  uint64_t idle = 0;            // samples of the idle task
  uint64_t user_truncated = 0;  // user stack deeper than user_stack_depth
  uint64_t kernel_truncated = 0;
  uint64_t user_read_failed = 0;
  uint64_t delivered = 0;  // callbacks run
  // BPF run-time stats of the sampling program; 0 when unavailable.
  uint64_t bpf_run_ns = 0;
  uint64_t bpf_run_count = 0;
  uint64_t ring_bytes = 0;
  // The BPF unwinder (all 0 with unwind.enabled = false).
  uint64_t cfi_frames = 0;          // user frames found through a table row
  uint64_t fp_frames = 0;           // user frames found through the frame pointer
  uint64_t unsupported_frames = 0;  // rows with a rule the table cannot express (fp used)
  uint64_t table_missing = 0;       // frames in a mapping whose table was evicted (fp used)
  uint64_t incomplete_stacks = 0;   // user stacks that ended before the outermost frame
  uint64_t no_proc = 0;             // samples of processes without tables yet
  uint64_t off_cpu_events = 0;      // off-CPU events written by BPF
  uint64_t off_cpu_short = 0;       // blocks under the threshold, not recorded
  uint64_t off_cpu_drops = 0;       // blocked threads beyond off_cpu_max_threads, not recorded
  UnwinderStats unwind;             // the table manager's counters
};

class Sampler {
 public:
  using Callback = std::function<void(RawSample&&)>;

  // Opens and loads the BPF program and the perf events (not yet enabled).
  static Result<std::unique_ptr<Sampler>> Create(const SamplerConfig& config, Callback callback);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // Attaches the programs to every CPU's perf event (and exec/exit tracepoints) without
  // starting a thread, so a caller can attach while privileged and single-threaded, then drop
  // capabilities (the samples wait in the ring until Start). Idempotent.
  Status Attach();
  // Attaches (if not yet) and starts the reader and dispatch threads.
  Status Start();
  // Detaches, drains what is already in the ring and queue, joins the threads. Idempotent.
  void Stop();

  // Changes the pid filter (only when the sampler was created with a non-empty pid list).
  Status AddPid(uint32_t pid);
  Status RemovePid(uint32_t pid);

  [[nodiscard]] SamplerStats Stats() const;
  [[nodiscard]] int num_cpus() const;
  // The table manager; null with unwind.enabled = false.
  [[nodiscard]] Unwinder* unwinder() const;

 private:
  class Impl;
  explicit Sampler(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flamestream::bpf
