#include "agent.h"

#include <cctype>
#include <memory>

#include "flamestream/bpf/capabilities.h"
#include "flamestream/bpf/clock_offset.h"
#include "flamestream/bpf/sampler.h"
#include "flamestream/common/identity.h"
#include "flamestream/common/strings.h"
#include "flamestream/log/log.h"
#include "flamestream/proc/kallsyms.h"
#include "flamestream/proc/process.h"
#include "flamestream_service_keys.h"
#include "folded_printer.h"
#include "processor.h"
#include "publisher.h"
#include "symbolizer_namer.h"

namespace flamestream::agent {
namespace {

// The BPF unwinder's and the off-CPU profile's counters on /metrics.
class StackMetrics {
 public:
  explicit StackMetrics(obs::Registry& m)
      : cfi_(m.Counter("fs_agent_unwound_frames_total", "user frames unwound, by method",
                       {{"method", "cfi"}})),
        fp_(m.Counter("fs_agent_unwound_frames_total", "user frames unwound, by method",
                      {{"method", "frame_pointer"}})),
        unsupported_(m.Counter("fs_agent_unwind_unsupported_frames_total",
                               "frames whose CFI rule the BPF unwinder cannot express (frame "
                               "pointer used)")),
        missing_(m.Counter("fs_agent_unwind_table_missing_frames_total",
                           "frames in a mapping whose table was evicted (frame pointer used)")),
        incomplete_(m.Counter("fs_agent_incomplete_stacks_total",
                              "user stacks that ended before _start/clone3/start_thread")),
        no_proc_(m.Counter("fs_agent_unwind_no_tables_samples_total",
                           "samples of processes whose tables were not loaded yet")),
        loaded_(m.Counter("fs_agent_unwind_tables_loaded_total", "unwind tables loaded")),
        evicted_(
            m.Counter("fs_agent_unwind_tables_evicted_total", "unwind tables evicted for room")),
        built_(m.Counter("fs_agent_unwind_tables_built_total", "unwind tables built from ELF")),
        failures_(m.Counter("fs_agent_unwind_build_failures_total",
                            "files whose unwind table could not be built")),
        cfi_errors_(m.Counter("fs_agent_unwind_cfi_errors_total",
                              "corrupt CFI ranges skipped while building tables")),
        scans_(m.Counter("fs_agent_unwind_scans_total", "process mappings scanned")),
        build_ns_(m.Counter("fs_agent_unwind_build_ns_total", "time spent building tables")),
        over_budget_(m.Counter("fs_agent_unwind_over_budget_total",
                               "tables that did not fit the memory budget")),
        resident_(m.Gauge("fs_agent_unwind_tables", "unwind tables resident in BPF maps")),
        bytes_(m.Gauge("fs_agent_unwind_table_bytes", "bytes of unwind rows resident")),
        capacity_(m.Gauge("fs_agent_unwind_table_capacity_bytes",
                          "unwind row pool size (agent.unwind.max_table_bytes)")),
        processes_(m.Gauge("fs_agent_unwind_processes", "processes with unwind tables")),
        off_cpu_(m.Counter("fs_agent_off_cpu_events_total",
                           "off-CPU events recorded (blocks at least agent.off_cpu.threshold)")),
        off_cpu_short_(m.Counter("fs_agent_off_cpu_short_blocks_total",
                                 "blocks shorter than agent.off_cpu.threshold, not recorded")),
        off_cpu_drops_(m.Counter("fs_agent_off_cpu_dropped_total",
                                 "blocks not recorded: more threads blocked than the BPF map "
                                 "holds")) {}

  void Update(const bpf::SamplerStats& st) {
    cfi_.Update(st.cfi_frames);
    fp_.Update(st.fp_frames);
    unsupported_.Update(st.unsupported_frames);
    missing_.Update(st.table_missing);
    incomplete_.Update(st.incomplete_stacks);
    no_proc_.Update(st.no_proc);
    loaded_.Update(st.unwind.tables_loaded);
    evicted_.Update(st.unwind.tables_evicted);
    built_.Update(st.unwind.tables_built);
    failures_.Update(st.unwind.build_failures);
    cfi_errors_.Update(st.unwind.cfi_errors);
    scans_.Update(st.unwind.scans);
    build_ns_.Update(st.unwind.build_ns);
    over_budget_.Update(st.unwind.over_budget);
    resident_.Set(static_cast<double>(st.unwind.tables_resident));
    bytes_.Set(static_cast<double>(st.unwind.table_bytes));
    capacity_.Set(static_cast<double>(st.unwind.table_capacity_bytes));
    processes_.Set(static_cast<double>(st.unwind.processes));
    off_cpu_.Update(st.off_cpu_events);
    off_cpu_short_.Update(st.off_cpu_short);
    off_cpu_drops_.Update(st.off_cpu_drops);
  }

 private:
  obs::TotalMirror cfi_, fp_, unsupported_, missing_, incomplete_, no_proc_, loaded_, evicted_,
      built_, failures_, cfi_errors_, scans_, build_ns_, over_budget_;
  obs::Gauge& resident_;
  obs::Gauge& bytes_;
  obs::Gauge& capacity_;
  obs::Gauge& processes_;
  obs::TotalMirror off_cpu_, off_cpu_short_, off_cpu_drops_;
};

}  // namespace

void AgentConfig::Declare(config::Schema& s) {
  s.Add(keys::agent::kFrequency, &frequency_hz, "samples per second per CPU (1..10000)",
        "--frequency");
  s.Require(
      keys::agent::kFrequency,
      [this] { return frequency_hz >= 1 && frequency_hz <= bpf::kMaxFrequencyHz; }, "1..10000");
  s.Add("agent.print", &print, "print folded stacks to stdout at exit instead of publishing",
        "--print");
  s.Add("agent.print_symbolize", &print_symbolize,
        "in print mode, name user frames with the symbolizer library (functions, inlined "
        "calls); false: basename+0xoffset");
  s.Add(keys::agent::kPids, &pids, "host pids to sample (repeatable); empty = all", "--pid");
  s.Require(
      keys::agent::kPids,
      [this] {
        for (const std::string& p : pids) {
          if (!common::ParseInt<uint32_t>(p).ok()) return false;
        }
        return true;
      },
      "a list of process ids");
  s.Add(keys::agent::kComm, &comm, "regex on comm or exe name; empty = all", "--comm");
  s.Add("agent.container_ids", &container_ids,
        "sample only processes in these containers (ids or unique prefixes); empty = all",
        "--container");
  s.Add("agent.cgroup", &cgroup, "regex on the process's cgroup path; empty = all", "--cgroup");
  s.Add("agent.user_stack_depth", &user_stack_depth, "user frames followed per sample (1..1024)",
        "--user-stack-depth");
  s.Require(
      "agent.user_stack_depth",
      [this] { return user_stack_depth >= 1 && user_stack_depth <= bpf::kMaxUserStackDepth; },
      "1..1024");
  s.Add("agent.kernel_stacks", &kernel_stacks, "record kernel stacks");
  s.Add("agent.off_cpu.threshold", &off_cpu_threshold,
        "record off-CPU time of threads blocked at least this long (sched_switch out while "
        "not runnable, finish_task_switch back in), with the stacks they blocked in; 0 turns "
        "the off-CPU profile off");
  s.AddChoice("agent.print_profile", &print_profile, {"cpu", "off-cpu"},
              "print mode: which profile to write: cpu (sample counts) or off-cpu "
              "(microseconds blocked)",
              "--profile");
  s.Add("agent.unwind.enabled", &unwind,
        "unwind user stacks with .eh_frame/.debug_frame tables in BPF (frame pointers where no "
        "table covers a frame); false: frame pointers only");
  s.Add("agent.unwind.max_table_bytes", &unwind_max_table_bytes,
        "memory for unwind tables in BPF maps, allocated at start; least recently sampled "
        "tables are evicted beyond it (a whole Debian machine's running binaries need ~28MiB)");
  s.Require(
      "agent.unwind.max_table_bytes", [this] { return unwind_max_table_bytes.value >= (1u << 20); },
      "at least 1MiB");
  s.Add("agent.unwind.rescan_interval", &unwind_rescan_interval,
        "minimum time between two /proc/<pid>/maps rescans of a process whose samples run in "
        "code no table covers yet (dlopen, JIT)");
  s.Add("agent.ring_size", &ring_size, "BPF ring buffer size (power of two; 0 = auto)");
  s.Add("agent.queue_capacity", &queue_capacity, "decoded samples buffered before dropping");
  s.Add("agent.cmdline", &cmdline, "include command lines in process metadata");
  s.Add("agent.stats_interval", &stats_interval, "how often sampler counters reach /metrics");

  s.Add("cluster.name", &cluster, "cluster name in record keys (lower-cased)");
  s.Require(
      "cluster.name", [this] { return !cluster.empty() && cluster.find('/') == std::string::npos; },
      "non-empty, without '/'");
  s.Add("node.name", &node, "node name in record keys (default NODE_NAME, else the host name)");
  s.Require(
      "node.name", [this] { return !node.empty() && node.find('/') == std::string::npos; },
      "non-empty, without '/'");
  s.AddPassthrough("kafka", &kafka, "librdkafka properties, e.g. kafka.bootstrap.servers");
  s.Add("agent.batch.interval", &batch_interval, "publish a raw batch at least this often");
  s.Require(
      "agent.batch.interval", [this] { return batch_interval.count() > 0; }, "positive");
  s.Add("agent.batch.max_samples", &batch_max_samples,
        "publish a batch when it has this many samples");
  s.Require(
      "agent.batch.max_samples", [this] { return batch_max_samples > 0; }, "1 or more");
  s.AddChoice("agent.batch.encoding", &batch_encoding, {"compact", "plain"},
              "raw batch sample columns: compact (thread index, per-CPU tick timestamps; "
              "smallest) or plain (pid/tid and ns deltas, for decoders older than compact)");
  s.Add("agent.batch.timestamp_unit", &timestamp_unit,
        "compact encoding: sample times are rounded down to this (1ns = exact; the sampling "
        "timer's own jitter is tens of microseconds)");
  s.Require(
      "agent.batch.timestamp_unit",
      [this] {
        return timestamp_unit.count() >= 1 && timestamp_unit <= std::chrono::milliseconds(1);
      },
      "1ns..1ms");
  s.Add("agent.publish_queue", &publish_queue,
        "samples queued for the publisher thread before dropping");
  s.Add("agent.spool.dir", &spool_dir, "where batches wait while Kafka is unreachable");
  s.Add("agent.spool.limit", &spool_limit,
        "spool size limit; the oldest batches are dropped beyond it");
  s.Add("agent.drain_timeout", &drain_timeout,
        "on stop, how long to keep delivering before leaving batches in the spool");
  s.Add("agent.drop_capabilities", &drop_capabilities,
        "after loading BPF keep only CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (and CAP_BPF on "
        "kernels before 6.5), dropping the rest from every set including the bounding set");
}

namespace {

// "<cluster>/<node>/<first 8 hex of the boot id>": stable while the node is up, new after a
// reboot (batch sequences continue through the spool dir across agent restarts).
std::string AgentId(const std::string& cluster, const std::string& node) {
  std::string boot = "0";
  if (Result<std::string> id = proc::ReadProcFile("/proc/sys/kernel/random/boot_id"); id.ok()) {
    std::string hex;
    for (char c : *id) {
      if (std::isxdigit(static_cast<unsigned char>(c))) hex += c;
    }
    if (!hex.empty()) boot = hex.substr(0, 8);
  }
  return common::NodeKey::Of(cluster, node).str() + "/" + boot;
}

}  // namespace

Status SetUpPrivileged(const AgentConfig& config, PrivilegedSetup* setup) {
  if (!config.print && !config.kafka.contains("bootstrap.servers")) {
    return InvalidArgument("set kafka.bootstrap.servers (or use --print)");
  }
  FS_RETURN_IF_ERROR(bpf::CheckSamplerCapabilities());
  if (Result<proc::KernelSymbols> ks = proc::KernelSymbols::Load(); ks.ok()) {
    setup->ksyms = std::move(*ks);
  } else {
    log::Warn("kernel frames stay addresses", {{"reason", ks.status()}});
  }

  bpf::SamplerConfig sc;
  sc.frequency_hz = config.frequency_hz;
  sc.user_stack_depth = config.user_stack_depth;
  sc.kernel_stacks = config.kernel_stacks;
  sc.ring_bytes = config.ring_size.value;
  sc.unwind.enabled = config.unwind;
  sc.off_cpu_threshold_ns = static_cast<uint64_t>(config.off_cpu_threshold.count());
  if (config.print && config.print_profile == "off-cpu" && sc.off_cpu_threshold_ns == 0) {
    return InvalidArgument("--profile off-cpu needs agent.off_cpu.threshold > 0");
  }
  sc.unwind.max_table_bytes = config.unwind_max_table_bytes.value;
  sc.unwind.rescan_interval =
      std::chrono::duration_cast<std::chrono::milliseconds>(config.unwind_rescan_interval);
  sc.queue_capacity = config.queue_capacity;
  for (const std::string& p : config.pids) {
    sc.pids.push_back(*common::ParseInt<uint32_t>(p));
  }
  FS_ASSIGN_OR_RETURN(setup->sampler, bpf::Sampler::Create(sc, [setup](bpf::RawSample&& s) {
                        // Set before Start, which starts the only thread that calls this.
                        setup->processor.load(std::memory_order_acquire)->Handle(std::move(s));
                      }));
  FS_RETURN_IF_ERROR(setup->sampler->Attach());
  if (!config.drop_capabilities) return OkStatus();
  FS_ASSIGN_OR_RETURN(bpf::CapabilityDrop drop,
                      bpf::KeepOnlyCapabilities(bpf::RuntimeCapabilities()));
  log::Info("capabilities dropped after loading BPF",
            {{"kept", common::Join(drop.kept, ",")},
             {"dropped", common::Join(drop.dropped, ",")},
             {"bounding_set_dropped", drop.bounding_dropped}});
  return OkStatus();
}

Status RunAgent(const AgentConfig& config, PrivilegedSetup& setup, service::Context& ctx,
                std::ostream& out) {
  if (setup.sampler == nullptr) return FailedPrecondition("SetUpPrivileged did not run");
  const proc::KernelSymbols* ksyms = setup.ksyms ? &*setup.ksyms : nullptr;

  bpf::ClockOffset clock;
  FS_RETURN_IF_ERROR(clock.StartWatching());

  OffsetFrameNamer namer(ksyms);
  std::unique_ptr<FoldedPrinter> folded;
  std::unique_ptr<Publisher> publisher;
  SampleWriter* sink = nullptr;
  std::unique_ptr<SymbolizerFrameNamer> symbolizing_namer;
  if (config.print && config.print_symbolize) {
    auto created = SymbolizerFrameNamer::Create(ksyms);
    if (created.ok()) {
      symbolizing_namer = std::move(*created);
    } else {
      log::Warn("user frames stay offsets", {{"reason", created.error()}});
    }
  }
  if (config.print) {
    folded = std::make_unique<FoldedPrinter>(
        symbolizing_namer != nullptr ? static_cast<FrameNamer*>(symbolizing_namer.get()) : &namer,
        config.print_profile == "off-cpu" ? FoldedPrinter::Profile::kOffCpu
                                          : FoldedPrinter::Profile::kCpu);
    sink = folded.get();
  } else {
    FS_ASSIGN_OR_RETURN(
        publisher, Publisher::Create(
                       {.cluster = config.cluster,
                        .node = config.node,
                        .agent_id = AgentId(config.cluster, config.node),
                        .frequency_hz = config.frequency_hz,
                        .batch_interval = config.batch_interval,
                        .batch_max_samples = config.batch_max_samples,
                        .encoding = {.compact = config.batch_encoding == "compact",
                                     .timestamp_unit_ns = config.timestamp_unit.count(),
                                     .sort_locations = true},
                        .queue_capacity = config.publish_queue,
                        .spool = {.dir = config.spool_dir, .limit_bytes = config.spool_limit.value},
                        .kafka = config.kafka},
                       &clock, ksyms, &ctx.metrics));
    sink = publisher.get();
  }
  FS_ASSIGN_OR_RETURN(std::unique_ptr<SampleProcessor> processor,
                      SampleProcessor::Create({.comm = config.comm,
                                               .container_ids = config.container_ids,
                                               .cgroup = config.cgroup,
                                               .cmdline = config.cmdline},
                                              &clock, sink));

  bpf::Sampler* sampler = setup.sampler.get();
  setup.processor.store(processor.get(), std::memory_order_release);
  // The processor dies with this scope: no callback may run after it (Stop is idempotent).
  struct StopOnExit {
    bpf::Sampler* sampler;
    ~StopOnExit() { sampler->Stop(); }
  } stop_on_exit{sampler};
  FS_RETURN_IF_ERROR(sampler->Start());
  log::Info("sampling", {{"frequency_hz", config.frequency_hz},
                         {"cpus", sampler->num_cpus()},
                         {"pids", common::Join(config.pids, ",")},
                         {"ring_bytes", sampler->Stats().ring_bytes}});
  ctx.set_ready(true);

  obs::Registry& m = ctx.metrics;
  obs::TotalMirror samples(m.Counter("fs_agent_samples_total", "samples written by BPF"));
  obs::TotalMirror processed(
      m.Counter("fs_agent_samples_processed_total", "samples handed to the sink"));
  obs::TotalMirror ring_drops(
      m.Counter("fs_agent_dropped_samples_total", "samples dropped", {{"where", "ring"}}));
  obs::TotalMirror queue_drops(
      m.Counter("fs_agent_dropped_samples_total", "samples dropped", {{"where", "queue"}}));
  obs::TotalMirror user_trunc(m.Counter("fs_agent_truncated_stacks_total",
                                        "stacks cut at the depth limit", {{"kind", "user"}}));
  obs::TotalMirror kernel_trunc(m.Counter("fs_agent_truncated_stacks_total",
                                          "stacks cut at the depth limit", {{"kind", "kernel"}}));
  obs::TotalMirror unknown(
      m.Counter("fs_agent_unknown_mappings_total", "user frames in no mapping"));
  obs::TotalMirror bpf_ns(
      m.Counter("fs_agent_bpf_run_time_ns_total", "BPF program run time (BPF stats)"));
  obs::TotalMirror bpf_runs(m.Counter("fs_agent_bpf_runs_total", "BPF program runs (BPF stats)"));
  obs::Gauge& offset = m.Gauge("fs_agent_clock_offset_ns", "realtime minus monotonic");
  StackMetrics stack_metrics(m);
  auto update = [&] {
    const bpf::SamplerStats st = sampler->Stats();
    samples.Update(st.samples);
    processed.Update(processor->stats().samples.load());
    ring_drops.Update(st.ring_drops);
    queue_drops.Update(st.queue_drops);
    user_trunc.Update(st.user_truncated);
    kernel_trunc.Update(st.kernel_truncated);
    unknown.Update(processor->stats().unknown_mappings.load());
    bpf_ns.Update(st.bpf_run_ns);
    bpf_runs.Update(st.bpf_run_count);
    offset.Set(static_cast<double>(clock.offset_ns()));
    stack_metrics.Update(st);
    return st;
  };
  while (!ctx.WaitForStop(config.stats_interval)) {
    update();
  }
  ctx.set_ready(false);
  sampler->Stop();  // drains ring and queue: every sample taken reaches the sink
  const bpf::SamplerStats st = update();
  log::Info("sampler stopped",
            {{"samples", st.samples},
             {"delivered", st.delivered},
             {"ring_drops", st.ring_drops},
             {"queue_drops", st.queue_drops},
             {"user_truncated", st.user_truncated},
             {"user_read_failed", st.user_read_failed},
             {"filtered_by_comm", processor->stats().filtered_by_comm.load()},
             {"unknown_mappings", processor->stats().unknown_mappings.load()},
             {"bpf_ns_per_run", st.bpf_run_count ? st.bpf_run_ns / st.bpf_run_count : 0},
             {"bpf_ns_per_sample", st.samples ? st.bpf_run_ns / st.samples : 0},
             {"off_cpu_events", st.off_cpu_events},
             {"off_cpu_short", st.off_cpu_short},
             {"cfi_frames", st.cfi_frames},
             {"fp_frames", st.fp_frames},
             {"unsupported_frames", st.unsupported_frames},
             {"incomplete_stacks", st.incomplete_stacks},
             {"unwind_tables", st.unwind.tables_resident},
             {"unwind_table_bytes", st.unwind.table_bytes},
             {"unwind_tables_evicted", st.unwind.tables_evicted},
             {"unwind_cfi_errors", st.unwind.cfi_errors},
             {"unwind_build_failures", st.unwind.build_failures},
             {"unwind_build_ms", st.unwind.build_ns / 1000000}});
  if (publisher) {
    publisher->Stop(config.drain_timeout);  // last batch, bounded delivery, rest spooled
  } else {
    folded->Write(out);
    out.flush();
  }
  return OkStatus();
}

}  // namespace flamestream::agent
