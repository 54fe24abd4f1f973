// The agent service: sampler -> processor -> sink, with metrics and drain on stop.
//
//   AgentConfig cfg;                        // in-class defaults
//   PrivilegedSetup setup;
//   service::Main(argc, argv, {.name = "agent",
//       .declare = [&](config::Schema& s) { cfg.Declare(s); },
//       .before_threads = [&] { return SetUpPrivileged(cfg, &setup); },
//       .run = [&](service::Context& ctx) { return RunAgent(cfg, setup, ctx, std::cout); }});
//
// Print mode (--print) aggregates folded stacks and writes them to `out` at exit. Kafka mode
// (the default) feeds a Publisher: batches to flamestream.samples.raw.v1, process records to
// flamestream.processes.v1, an on-disk spool while Kafka is unreachable.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "flamestream/bpf/sampler.h"
#include "flamestream/common/status.h"
#include "flamestream/config/config.h"
#include "flamestream/proc/kallsyms.h"
#include "flamestream/service/service.h"

namespace flamestream::agent {

struct AgentConfig {
  // Samples per second on each CPU (software cpu-clock event). 1..10000.
  uint32_t frequency_hz = 19;
  // Print folded stacks to stdout at exit instead of publishing to Kafka.
  bool print = false;
  bool print_symbolize = true;  // agent.print_symbolize
  // Host pids to sample; empty samples every process.
  std::vector<std::string> pids;
  // Regex on comm/exe; empty matches every process.
  std::string comm;
  // Container ids or prefixes, and a regex on the cgroup path; empty = all.
  std::vector<std::string> container_ids;
  std::string cgroup;
  // Deepest user stack the BPF frame-pointer walk follows (1..1024).
  uint32_t user_stack_depth = 512;
  bool kernel_stacks = true;
  // BPF ring size; 0 sizes it for half a second of worst-case samples.
  config::Bytes ring_size{0};
  bool unwind = true;  // CFI unwinding (else fp only)
  std::chrono::nanoseconds off_cpu_threshold = std::chrono::milliseconds(1);  // 0 = off
  std::string print_profile = "cpu";  // --print: cpu | off-cpu
  config::Bytes unwind_max_table_bytes{uint64_t{32} << 20};
  std::chrono::nanoseconds unwind_rescan_interval = std::chrono::milliseconds(250);
  // Decoded samples buffered for the processor before the reader drops.
  uint64_t queue_capacity = 16384;
  // Put process command lines in the metadata (may contain secrets; off by default).
  bool cmdline = false;
  // How often the sampler's counters are copied to /metrics.
  std::chrono::nanoseconds stats_interval = std::chrono::seconds(1);

  // Kafka mode.
  std::string cluster = "default";                // cluster.name
  std::string node = service::DefaultNodeName();  // node.name: NODE_NAME, else the host name
  std::map<std::string, std::string> kafka;       // kafka.* librdkafka properties
  std::chrono::nanoseconds batch_interval = std::chrono::seconds(1);
  uint64_t batch_max_samples = 10000;
  std::string batch_encoding = "compact";  // "compact" | "plain" (samples.proto)
  std::chrono::nanoseconds timestamp_unit = std::chrono::microseconds(1);
  uint64_t publish_queue = 16384;  // samples queued for the publisher thread before dropping
  std::string spool_dir = "/var/lib/flamestream/spool";
  config::Bytes spool_limit{256ull << 20};
  // On stop: how long to keep delivering before leaving the rest in the spool.
  std::chrono::nanoseconds drain_timeout = std::chrono::seconds(10);
  // After loading and attaching BPF, keep only bpf::RuntimeCapabilities().
  bool drop_capabilities = true;

  void Declare(config::Schema& schema);
};

class SampleProcessor;

// What the agent does while it is still privileged and has one thread (Spec::before_threads):
// reads kernel symbols (CAP_SYSLOG), loads the BPF programs and opens and attaches the per-CPU
// perf events (CAP_BPF, CAP_PERFMON), then drops every capability it no longer needs, so no
// thread the agent starts afterwards (admin listener, librdkafka, sampler) ever holds them.
struct PrivilegedSetup {
  std::optional<proc::KernelSymbols> ksyms;  // empty: kernel frames stay addresses
  std::unique_ptr<bpf::Sampler> sampler;     // attached, not started
  // The sampler's callback forwards here; RunAgent sets it before Sampler::Start.
  std::atomic<SampleProcessor*> processor{nullptr};
};
Status SetUpPrivileged(const AgentConfig& config, PrivilegedSetup* setup);

// The rest: processor, sink (publisher or folded print), metrics, drain. Uses `setup` as
// SetUpPrivileged left it.
Status RunAgent(const AgentConfig& config, PrivilegedSetup& setup, service::Context& ctx,
                std::ostream& out);

}  // namespace flamestream::agent
