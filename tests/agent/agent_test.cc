// The agent against real workloads with real BPF (label requires_root).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "flamestream/batch/batch.h"
#include "flamestream/bpf/capabilities.h"
#include "flamestream/bpf/clock_offset.h"
#include "flamestream/bpf/sampler.h"
#include "flamestream/common/strings.h"
#include "flamestream/proc/build_id.h"
#include "flamestream/proc/process.h"
#include "processor.h"
#include "raw_batch.h"
#include "test_util.h"

namespace flamestream::testing_agent {
namespace {

#define SKIP_UNLESS_PRIVILEGED()                                                               \
  if (!Privileged()) {                                                                         \
    GTEST_SKIP() << "needs root or CAP_BPF+CAP_PERFMON+CAP_SYS_PTRACE (set CI=true to force)"; \
  }

// comm is the first 15 bytes of the executable's name.
std::string Comm(const std::string& exe) { return exe.substr(0, 15); }

std::vector<std::string> AgentArgs(pid_t pid, const std::string& duration, uint32_t hz,
                                   std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {BinPath("flamestream-agent"), "--print", "--duration", duration,
                                   "--frequency", std::to_string(hz), "--pid", std::to_string(pid),
                                   // Offsets: the tests map them to functions themselves.
                                   "--set", "agent.print_symbolize=false", "--log-level", "warn"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// The bound: sample count within +-20% of frequency x on-CPU seconds of the busy
// threads. The CPU time is the scheduler's own (per-thread schedstat, exact ns) over the
// window the sampler was attached, so it stays right when the shared test machine is loaded
// (the workload then gets less than a CPU per thread and so do the samples).
constexpr double kRateTolerance = 0.2;

// Prints how the count compares with both expectations: the one asserted (CPU time) and the
// nominal frequency x wall seconds x busy threads (which only holds on an idle machine).
void ReportRate(const char* what, size_t samples, uint32_t hz, double cpu_s, double wall_s,
                int busy_threads) {
  const double expected = hz * cpu_s;
  const double nominal = hz * wall_s * busy_threads;
  std::printf(
      "%s: %zu samples at %u Hz; threads on CPU %.3f s -> expected %.0f (ratio %.3f); "
      "nominal %u Hz x %.2f s x %d threads = %.0f (ratio %.3f)\n",
      what, samples, hz, cpu_s, expected, static_cast<double>(samples) / expected, hz, wall_s,
      busy_threads, nominal, static_cast<double>(samples) / nominal);
}

// Workload frames of one stack, root first, as function names ("?" when in no function).
std::vector<std::string> WorkloadFunctions(const FoldedLine& line, const std::string& exe,
                                           const FunctionRanges& fns) {
  std::vector<std::string> out;
  for (size_t i = 1; i < line.frames.size(); ++i) {
    auto f = SplitFrame(line.frames[i]);
    if (!f || f->first != exe) continue;
    out.push_back(fns.At(f->second).value_or("?"));
  }
  return out;
}

TEST(AgentPrint, CallChainSamplesLandInExpectedFunctionsInCallerOrder) {
  SKIP_UNLESS_PRIVILEGED();
  const std::string exe = "fs-workload-callchain";
  FunctionRanges fns = FunctionRanges::Load(BinPath(exe));
  ASSERT_GT(fns.size(), 3u);
  Child w = Child::Spawn({BinPath(exe), "12"});
  const uint32_t hz = 99;
  // Workload CPU time between the agent's "sampling" (perf events attached) and "sampler
  // stopped" (detached) log lines: exactly the window samples can come from.
  double cpu_start = -1, cpu = -1;
  std::chrono::steady_clock::time_point t_start, t_end;
  std::vector<std::string> args = AgentArgs(w.pid(), "5s", hz);
  args.back() = "info";  // --log-level: we need the info lines
  std::string out = RunWatchingStderr(args, [&](const std::string& line) {
    if (line.find("msg=sampling ") != std::string::npos ||
        line.find("msg=\"sampling\"") != std::string::npos) {
      cpu_start = TaskCpuSeconds(w.pid());
      t_start = std::chrono::steady_clock::now();
    } else if (line.find("sampler stopped") != std::string::npos && cpu_start >= 0) {
      cpu = TaskCpuSeconds(w.pid()) - cpu_start;
      t_end = std::chrono::steady_clock::now();
    }
  });
  ASSERT_GE(cpu, 0) << "agent did not log the sampling window";
  std::vector<FoldedLine> lines = ParseFolded(out);
  ASSERT_FALSE(lines.empty()) << out;

  uint64_t total = 0, good = 0;
  for (const FoldedLine& l : lines) {
    total += l.count;
    EXPECT_EQ(l.frames[0], Comm(exe));
    std::vector<std::string> chain = WorkloadFunctions(l, exe, fns);
    // The unwinder follows libc's CFI past main to the binary's own _start.
    const std::vector<std::string> want = {"_start", "main", "outer", "middle", "leaf"};
    if (chain == want) {
      good += l.count;
    }
  }
  // One busy thread: frequency x seconds x 1 on an idle machine; frequency x the CPU time it
  // actually got while the sampler was attached in general.
  const double expected = hz * cpu;
  ReportRate("callchain", total, hz, cpu, std::chrono::duration<double>(t_end - t_start).count(),
             1);
  std::printf("callchain: %lu (%.1f%%) in _start>main>outer>middle>leaf\n",
              static_cast<unsigned long>(good), 100.0 * good / total);
  EXPECT_NEAR(static_cast<double>(total), expected, expected * kRateTolerance);
  EXPECT_GE(good * 100, total * 90) << out.substr(0, 4000);
}

TEST(AgentPrint, NamesUserFramesWithTheSymbolizerLibrary) {
  SKIP_UNLESS_PRIVILEGED();
  Child w = Child::Spawn({BinPath("fs-workload-callchain"), "10"});
  std::vector<std::string> args = AgentArgs(w.pid(), "3s", 99);
  args.insert(args.end(), {"--set", "agent.print_symbolize=true"});  // the later one wins
  std::string out = RunToCompletion(args);
  uint64_t total = 0, named = 0;
  for (const FoldedLine& l : ParseFolded(out)) {
    total += l.count;
    std::string joined;
    for (const std::string& f : l.frames) joined += f + ";";
    if (joined.find(";main;outer;middle;leaf;") != std::string::npos) named += l.count;
  }
  ASSERT_GT(total, 0u) << out;
  EXPECT_GE(named * 100, total * 90) << out.substr(0, 4000);
}

TEST(AgentPrint, SyscallHeavyWorkloadShowsKernelFrames) {
  SKIP_UNLESS_PRIVILEGED();
  const std::string exe = "fs-workload-syscalls";
  Child w = Child::Spawn({BinPath(exe), "10"});
  std::string out = RunToCompletion(AgentArgs(w.pid(), "3s", 99));
  uint64_t total = 0, with_kernel = 0, named_kernel = 0, with_user = 0;
  for (const FoldedLine& l : ParseFolded(out)) {
    total += l.count;
    bool k = false, named = false, u = false;
    for (size_t i = 1; i < l.frames.size(); ++i) {
      const std::string& f = l.frames[i];
      if (f.ends_with("_[k]")) {
        k = true;
        named = named || !f.starts_with("0x");
      } else if (f.starts_with(exe + "+0x")) {
        u = true;
      }
    }
    with_kernel += k ? l.count : 0;
    named_kernel += named ? l.count : 0;
    with_user += u ? l.count : 0;
  }
  std::printf("syscalls: %lu samples, %lu with kernel frames, %lu with user frames\n",
              static_cast<unsigned long>(total), static_cast<unsigned long>(with_kernel),
              static_cast<unsigned long>(with_user));
  ASSERT_GT(total, 50u);
  EXPECT_GE(with_kernel * 100, total * 50) << out.substr(0, 4000);
  EXPECT_EQ(named_kernel, with_kernel);  // kallsyms resolves them as root
  // In-kernel samples still get the user stack (from the task's saved user registers).
  EXPECT_GE(with_user * 100, total * 90);
}

TEST(AgentPrint, RecursionBeyondPerfMaxStackIsWalkedToDepth) {
  SKIP_UNLESS_PRIVILEGED();
  const std::string exe = "fs-workload-recursive";
  FunctionRanges fns = FunctionRanges::Load(BinPath(exe));
  Child w = Child::Spawn({BinPath(exe), "10", "600"});
  struct Case {
    const char* depth;
    size_t min_frames;
  };
  for (const Case& c : {Case{"1024", 600}, Case{"512", 512}}) {
    SCOPED_TRACE(c.depth);
    std::string out =
        RunToCompletion(AgentArgs(w.pid(), "3s", 99, {"--user-stack-depth", c.depth}));
    uint64_t total = 0, deep = 0;
    size_t max_depth = 0;
    for (const FoldedLine& l : ParseFolded(out)) {
      total += l.count;
      size_t user = 0;
      for (size_t i = 1; i < l.frames.size(); ++i) user += l.frames[i].ends_with("_[k]") ? 0 : 1;
      max_depth = std::max(max_depth, user);
      deep += user >= c.min_frames ? l.count : 0;
    }
    std::printf("recursive depth=%s: %lu samples, max %zu user frames\n", c.depth,
                static_cast<unsigned long>(total), max_depth);
    ASSERT_GT(total, 30u);
    EXPECT_GE(deep * 100, total * 90);
    EXPECT_LE(max_depth, static_cast<size_t>(std::stoul(c.depth)));
  }
}

// The library pipeline: sampler -> processor -> sink, checked on timestamps and build ids.
class CollectingWriter : public agent::SampleWriter {
 public:
  void OnProcess(const proc::ProcessInfo& p) override {
    std::lock_guard lock(mu);
    processes.push_back(p);
  }
  void OnSample(const agent::ResolvedSample& s, const proc::ProcessInfo&) override {
    std::lock_guard lock(mu);
    samples.push_back(s);
  }
  std::mutex mu;
  std::vector<proc::ProcessInfo> processes;
  std::vector<agent::ResolvedSample> samples;
};

uint64_t WallNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct SamplingRun {
  std::unique_ptr<bpf::ClockOffset> clock = std::make_unique<bpf::ClockOffset>();
  CollectingWriter sink;
  uint64_t wall_start = 0, wall_end = 0;
  double cpu_seconds = 0;  // CPU the target's threads used between Start() and Stop()
  std::map<uint32_t, double> thread_cpu;  // the same by tid
  double wall_seconds = 0;
  bpf::SamplerStats stats;
};

void Sample(SamplingRun& run, uint32_t pid, uint32_t hz, std::chrono::milliseconds d) {
  auto processor = agent::SampleProcessor::Create({}, run.clock.get(), &run.sink);
  ASSERT_TRUE(processor.ok());
  bpf::SamplerConfig cfg;
  cfg.frequency_hz = hz;
  cfg.pids = {pid};
  auto sampler =
      bpf::Sampler::Create(cfg, [&](bpf::RawSample&& s) { (*processor)->Handle(std::move(s)); });
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  run.wall_start = WallNowNs();
  ASSERT_TRUE((*sampler)->Start().ok());
  const auto cpu0 = ThreadCpuSeconds(static_cast<pid_t>(pid));
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(d);
  (*sampler)->Stop();
  run.thread_cpu = CpuBetween(cpu0, ThreadCpuSeconds(static_cast<pid_t>(pid)));
  run.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& [tid, s] : run.thread_cpu) run.cpu_seconds += s;
  run.wall_end = WallNowNs();
  run.stats = (*sampler)->Stats();
}

TEST(AgentLibrary, WallTimestampsBuildIdsAndRate) {
  SKIP_UNLESS_PRIVILEGED();
  const std::string exe = "fs-workload-callchain";
  Child w = Child::Spawn({BinPath(exe), "10"});
  SamplingRun run;
  Sample(run, static_cast<uint32_t>(w.pid()), 99, std::chrono::milliseconds(3000));
  std::lock_guard lock(run.sink.mu);
  // frequency x seconds x busy threads, with "seconds" the CPU time the workload got (the
  // test machine is shared; on an idle one this is ~3 s).
  const double expected = 99 * run.cpu_seconds;
  ReportRate("library", run.sink.samples.size(), 99, run.cpu_seconds, run.wall_seconds, 1);
  std::printf("library: ring drops %lu, queue drops %lu, bpf %lu ns/run\n",
              static_cast<unsigned long>(run.stats.ring_drops),
              static_cast<unsigned long>(run.stats.queue_drops),
              static_cast<unsigned long>(
                  run.stats.bpf_run_count ? run.stats.bpf_run_ns / run.stats.bpf_run_count : 0));
  EXPECT_NEAR(static_cast<double>(run.sink.samples.size()), expected, expected * kRateTolerance);
  EXPECT_EQ(run.stats.ring_drops, 0u);
  EXPECT_EQ(run.stats.queue_drops, 0u);
  Result<std::string> build_id = proc::ReadBuildId(BinPath(exe));
  ASSERT_TRUE(build_id.ok()) << build_id.status();
  size_t with_build_id = 0;
  for (const agent::ResolvedSample& s : run.sink.samples) {
    EXPECT_GE(s.wall_ns, run.wall_start);
    EXPECT_LE(s.wall_ns, run.wall_end);
    EXPECT_EQ(s.pid, static_cast<uint32_t>(w.pid()));
    ASSERT_FALSE(s.user.empty());
    EXPECT_FALSE(s.user[0].return_address);
    if (s.user[0].resolved && s.user[0].location.build_id == *build_id) ++with_build_id;
  }
  EXPECT_GE(with_build_id * 100, run.sink.samples.size() * 90);
  ASSERT_EQ(run.sink.processes.size(), 1u);
  EXPECT_EQ(run.sink.processes[0].comm, Comm(exe));
  EXPECT_NE(run.sink.processes[0].exe.find(exe), std::string::npos);
}

// Two busy threads named with pthread_setname_np: the count holds per thread and in total,
// and every sample (and the raw batch's thread table) names its thread, not the process.
TEST(AgentLibrary, NamedThreadsAreSampledByCpuTimeAndCarryTheirNames) {
  SKIP_UNLESS_PRIVILEGED();
  const std::string exe = "fs-workload-threads";
  Child w = Child::Spawn({BinPath(exe), "10", "2"});
  const auto pid = static_cast<uint32_t>(w.pid());
  std::map<uint32_t, std::string> names;  // tid -> name, as the kernel has it
  for (const auto& [tid, s] : ThreadCpuSeconds(w.pid())) names[tid] = ThreadName(w.pid(), tid);
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names.at(pid), Comm(exe));

  bpf::ClockOffset clock;
  agent::RawBatchEncoder enc(
      {.agent_id = "test/node/1", .cluster = "test", .node = "node", .frequency_hz = 99}, &clock,
      nullptr);
  std::mutex mu;
  std::map<uint32_t, size_t> per_thread;
  std::map<uint32_t, std::set<std::string>> comms;
  struct Tee : agent::SampleWriter {
    agent::SampleWriter* next;
    std::function<void(const agent::ResolvedSample&)> each;
    void OnProcess(const proc::ProcessInfo& p) override { next->OnProcess(p); }
    void OnSample(const agent::ResolvedSample& s, const proc::ProcessInfo& p) override {
      each(s);
      next->OnSample(s, p);
    }
  } tee;
  tee.next = &enc;
  tee.each = [&](const agent::ResolvedSample& s) {
    std::lock_guard lock(mu);
    ++per_thread[s.tid];
    comms[s.tid].insert(s.comm);
  };
  auto processor = agent::SampleProcessor::Create({}, &clock, &tee);
  ASSERT_TRUE(processor.ok());
  bpf::SamplerConfig cfg;
  cfg.frequency_hz = 99;
  cfg.pids = {pid};
  auto sampler =
      bpf::Sampler::Create(cfg, [&](bpf::RawSample&& s) { (*processor)->Handle(std::move(s)); });
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  ASSERT_TRUE((*sampler)->Start().ok());
  const auto cpu0 = ThreadCpuSeconds(w.pid());
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  (*sampler)->Stop();
  const auto cpu = CpuBetween(cpu0, ThreadCpuSeconds(w.pid()));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::optional<v1::SampleBatch> batch = enc.Flush();
  ASSERT_TRUE(batch.has_value());

  std::lock_guard lock(mu);
  size_t total = 0;
  double total_cpu = 0;
  for (const auto& [tid, name] : names) {
    SCOPED_TRACE(name);
    const size_t n = per_thread.count(tid) ? per_thread.at(tid) : 0;
    total += n;
    total_cpu += cpu.at(tid);
    if (tid == pid) {
      EXPECT_LE(n, 3u) << "the main thread only waits";
      continue;
    }
    ReportRate(name.c_str(), n, 99, cpu.at(tid), wall, 1);
    EXPECT_NEAR(static_cast<double>(n), 99 * cpu.at(tid), 99 * cpu.at(tid) * kRateTolerance);
    EXPECT_EQ(comms[tid], (std::set<std::string>{name}));
  }
  ReportRate("threads total", total, 99, total_cpu, wall, 2);
  EXPECT_NEAR(static_cast<double>(total), 99 * total_cpu, 99 * total_cpu * kRateTolerance);

  // The raw batch: the process under its /proc/<pid>/comm, each worker under its own name.
  ASSERT_TRUE(batch::Validate(*batch).ok()) << batch::Validate(*batch);
  ASSERT_EQ(batch->processes_size(), 1);
  EXPECT_EQ(batch->processes(0).comm(), Comm(exe));
  std::map<uint32_t, std::string> batch_names;
  for (const v1::Thread& t : batch->threads()) {
    EXPECT_EQ(t.pid(), pid);
    batch_names[t.tid()] = t.name();
  }
  for (const auto& [tid, name] : names) {
    if (tid == pid) continue;
    ASSERT_TRUE(batch_names.contains(tid)) << name;
    EXPECT_EQ(batch_names.at(tid), name);
    EXPECT_NE(batch_names.at(tid), batch->processes(0).comm());
  }
}

TEST(AgentLibrary, PidNamespaceProcessIsRecordedWithBothPids) {
  SKIP_UNLESS_PRIVILEGED();
  // --kill-child: the namespace's init (our workload) dies with unshare when the test ends.
  Child u = Child::Spawn({"/usr/bin/unshare", "--pid", "--fork", "--kill-child",
                          BinPath("fs-workload-callchain"), "10"});
  // The workload is unshare's only child.
  uint32_t child = 0;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(u.pid()) + "/task")) {
    std::ifstream in(task.path() / "children");
    if (in >> child) break;
  }
  ASSERT_NE(child, 0u);
  SamplingRun run;
  Sample(run, child, 99, std::chrono::milliseconds(1000));
  std::lock_guard lock(run.sink.mu);
  ASSERT_EQ(run.sink.processes.size(), 1u);
  const proc::ProcessInfo& p = run.sink.processes[0];
  EXPECT_EQ(p.pid, child);
  EXPECT_EQ(p.nspids, (std::vector<uint32_t>{child, 1}));
  EXPECT_EQ(p.ns_pid, 1u);
  ASSERT_FALSE(run.sink.samples.empty());
  EXPECT_EQ(run.sink.samples[0].pid, child);
}

TEST(AgentLibrary, RawBatchesFromRealSamplesValidateAndCarryBuildId) {
  SKIP_UNLESS_PRIVILEGED();
  const std::string exe = "fs-workload-callchain";
  Child w = Child::Spawn({BinPath(exe), "10"});
  bpf::ClockOffset clock;
  agent::RawBatchEncoder enc(
      {.agent_id = "test/node/1", .cluster = "test", .node = "node", .frequency_hz = 99}, &clock,
      nullptr);
  auto processor = agent::SampleProcessor::Create({}, &clock, &enc);
  ASSERT_TRUE(processor.ok());
  bpf::SamplerConfig cfg;
  cfg.frequency_hz = 99;
  cfg.pids = {static_cast<uint32_t>(w.pid())};
  auto sampler =
      bpf::Sampler::Create(cfg, [&](bpf::RawSample&& s) { (*processor)->Handle(std::move(s)); });
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  ASSERT_TRUE((*sampler)->Start().ok());
  // Two one-second batches, as the publisher would cut them.
  std::vector<v1::SampleBatch> batches;
  for (int i = 0; i < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    if (auto b = enc.Flush()) batches.push_back(std::move(*b));
  }
  (*sampler)->Stop();
  ASSERT_EQ(batches.size(), 2u);
  Result<std::string> build_id = proc::ReadBuildId(BinPath(exe));
  ASSERT_TRUE(build_id.ok());
  Result<std::string> raw_id = common::HexDecode(*build_id);
  ASSERT_TRUE(raw_id.ok());
  size_t samples = 0, bytes = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    const v1::SampleBatch& b = batches[i];
    ASSERT_TRUE(batch::Validate(b).ok()) << batch::Validate(b);
    EXPECT_EQ(b.id().sequence(), i);
    bool has_build_id = false;
    for (const v1::Mapping& m : b.mappings())
      has_build_id = has_build_id || m.build_id() == *raw_id;
    EXPECT_TRUE(has_build_id);
    ASSERT_EQ(b.processes_size(), 1);
    EXPECT_EQ(b.processes(0).host_pid(), static_cast<uint32_t>(w.pid()));
    samples += static_cast<size_t>(b.samples().stack_index_size());
    bytes += b.ByteSizeLong();
  }
  std::printf("raw batches: %zu samples, %zu bytes serialized (%.1f bytes/sample before zstd)\n",
              samples, bytes, static_cast<double>(bytes) / static_cast<double>(samples));
  EXPECT_GT(samples, 0u);
}

TEST(AgentPrint, MissingCapabilitiesAreNamedInTheExitMessage) {
  SKIP_UNLESS_PRIVILEGED();
  int status = 0;
  // capsh drops the capabilities from the bounding set before running the agent.
  std::string out = RunToCompletion({"/usr/sbin/capsh", "--drop=cap_bpf,cap_perfmon", "--", "-c",
                                     BinPath("flamestream-agent") + " --print --duration 1s 2>&1"},
                                    &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("missing capabilities: CAP_BPF, CAP_PERFMON"), std::string::npos) << out;
  EXPECT_EQ(out.find("CAP_SYS_PTRACE"), std::string::npos) << out;
}

// The capabilities k8s/base/agent/daemonset.yaml grants instead of privileged: with only
// these in the bounding set (still uid 0, as in the pod), the agent samples a process and
// names its kernel frames. Keep this list and the manifest's `capabilities.add` the same.
constexpr const char* kAgentCapabilities[] = {"BPF",          "PERFMON", "SYS_PTRACE",
                                              "SYS_RESOURCE", "SYSLOG",  "DAC_READ_SEARCH"};

TEST(AgentPrint, SamplesWithOnlyTheCapabilitiesTheManifestGrants) {
  SKIP_UNLESS_PRIVILEGED();
  std::string bounding = "-all";
  for (const char* cap : kAgentCapabilities) bounding += ",+" + common::ToLower(cap);
  const std::string exe = "fs-workload-syscalls";
  Child w = Child::Spawn({BinPath(exe), "10"});
  std::vector<std::string> args = {"/usr/bin/setpriv", "--bounding-set", bounding, "--"};
  for (const std::string& a : AgentArgs(w.pid(), "3s", 99)) args.push_back(a);
  int status = -1;
  const std::string out = RunToCompletion(args, &status);
  EXPECT_EQ(status, 0) << out.substr(0, 2000);
  uint64_t total = 0, named_kernel = 0, user = 0;
  for (const FoldedLine& l : ParseFolded(out)) {
    total += l.count;
    bool k = false, u = false;
    for (size_t i = 1; i < l.frames.size(); ++i) {
      k = k || (l.frames[i].ends_with("_[k]") && !l.frames[i].starts_with("0x"));
      u = u || l.frames[i].starts_with(exe + "+0x");
    }
    named_kernel += k ? l.count : 0;
    user += u ? l.count : 0;
  }
  ASSERT_GT(total, 50u) << out.substr(0, 2000);
  EXPECT_GE(named_kernel * 100, total * 50);  // CAP_SYSLOG: kallsyms has real addresses
  EXPECT_GE(user * 100, total * 90);          // CAP_SYS_PTRACE: its maps are readable
  // And the manifest names exactly these.
  std::ifstream in(std::string(FS_SOURCE_DIR) + "/k8s/base/agent/daemonset.yaml");
  const std::string manifest((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  for (const char* cap : kAgentCapabilities) {
    EXPECT_NE(manifest.find(std::string("- ") + cap + "\n"), std::string::npos) << cap;
  }
  EXPECT_EQ(manifest.find("privileged: true"), std::string::npos);
}

// The hex value of `field` ("CapEff") in a /proc/<pid>/task/<tid>/status file.
uint64_t CapField(const std::string& status_path, const std::string& field) {
  std::ifstream in(status_path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field + ":"))
      return std::stoull(line.substr(field.size() + 1), nullptr, 16);
  }
  ADD_FAILURE() << field << " missing in " << status_path;
  return ~uint64_t{0};
}

// The pid of this test's child named `comm` (the agent), or -1.
pid_t ChildNamed(const std::string& comm) {
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream stat(e.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const size_t close = text.rfind(')');
    if (close == std::string::npos || text.find('(' + comm + ')') == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == ::getpid()) return static_cast<pid_t>(std::stoi(name));
  }
  return -1;
}

TEST(AgentPrint, EveryThreadRunsWithOnlyTheRuntimeCapabilitiesAfterLoadingBpf) {
  SKIP_UNLESS_PRIVILEGED();
  uint64_t want = 0;
  for (bpf::Capability c : bpf::RuntimeCapabilities()) want |= uint64_t{1} << static_cast<int>(c);
  const std::string exe = "fs-workload-syscalls";
  Child w = Child::Spawn({BinPath(exe), "10"});
  std::vector<std::string> args = AgentArgs(w.pid(), "3s", 99);
  args.back() = "info";  // --log-level: the "sampling" line tells when every thread runs
  size_t threads = 0;
  std::vector<std::string> wrong;
  const std::string out = RunWatchingStderr(args, [&](const std::string& line) {
    if (line.find("msg=\"sampling\"") == std::string::npos) return;
    // "flamestream-agent" as the kernel's 15-character comm.
    const pid_t agent = ChildNamed("flamestream-age");
    ASSERT_GT(agent, 0);
    const std::string tasks = "/proc/" + std::to_string(agent) + "/task";
    for (const auto& t : std::filesystem::directory_iterator(tasks)) {
      ++threads;
      const std::string st = (t.path() / "status").string();
      for (const char* f : {"CapEff", "CapPrm", "CapBnd"}) {
        if (CapField(st, f) != want) wrong.push_back(t.path().filename().string() + " " + f);
      }
      for (const char* f : {"CapInh", "CapAmb"}) {
        if (CapField(st, f) != 0) wrong.push_back(t.path().filename().string() + " " + f);
      }
    }
  });
  // Main, signal watcher, watchdog, admin listener, sampler reader and dispatcher at least.
  EXPECT_GE(threads, 5u);
  EXPECT_TRUE(wrong.empty()) << common::Join(wrong, ", ");
  // And sampling still works without CAP_BPF/CAP_PERFMON/CAP_SYSLOG.
  uint64_t total = 0, user = 0, named_kernel = 0;
  for (const FoldedLine& l : ParseFolded(out)) {
    total += l.count;
    bool u = false, k = false;
    for (size_t i = 1; i < l.frames.size(); ++i) {
      u = u || l.frames[i].starts_with(exe + "+0x");
      k = k || (l.frames[i].ends_with("_[k]") && !l.frames[i].starts_with("0x"));
    }
    user += u ? l.count : 0;
    named_kernel += k ? l.count : 0;
  }
  ASSERT_GT(total, 50u) << out.substr(0, 2000);
  EXPECT_GE(user * 100, total * 90);          // /proc/<pid>/maps still readable
  EXPECT_GE(named_kernel * 100, total * 50);  // kallsyms read while privileged
}

TEST(AgentPrint, KeepsEveryCapabilityWhenToldNotToDrop) {
  SKIP_UNLESS_PRIVILEGED();
  const uint64_t before = CapField("/proc/self/status", "CapEff");
  Child w = Child::Spawn({BinPath("fs-workload-syscalls"), "10"});
  std::vector<std::string> args =
      AgentArgs(w.pid(), "2s", 49, {"--set", "agent.drop_capabilities=false"});
  args[args.size() - 3] = "info";  // --log-level
  uint64_t eff = 0;
  RunWatchingStderr(args, [&](const std::string& line) {
    if (line.find("msg=\"sampling\"") == std::string::npos) return;
    const pid_t agent = ChildNamed("flamestream-age");
    ASSERT_GT(agent, 0);
    eff = CapField("/proc/" + std::to_string(agent) + "/status", "CapEff");
  });
  EXPECT_EQ(eff, before);
}

TEST(AgentPrint, BadFlagsExitWithStatus2) {
  int status = 0;
  RunToCompletion({BinPath("flamestream-agent"), "--print", "--frequency", "0"}, &status);
  EXPECT_EQ(status, 2);
  RunToCompletion({BinPath("flamestream-agent"), "--print", "--pid", "abc"}, &status);
  EXPECT_EQ(status, 2);
}

}  // namespace
}  // namespace flamestream::testing_agent
