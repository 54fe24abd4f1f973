// flamestream-agent in Kafka mode with real BPF against the dev broker (label requires_root):
// what lands on the raw and processes topics, and delivery through a full broker outage.
#include <gtest/gtest.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>
#include <string>
#include <thread>

#include "consume_util.h"
#include "flamestream/batch/batch.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/bpf/capabilities.h"
#include "flamestream/common/strings.h"
#include "flamestream/proc/build_id.h"
#include "flamestream/proc/process.h"
#include "flamestream/testing/dev_broker.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream::testing_agent_kafka {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::BinPath;
using testing::DevBroker;
using testing::Subprocess;

constexpr int kBrokers = 3;

// The repo's rule: skip only when not root and not in CI (CI must run these and fail loudly).
bool Privileged() {
  const char* ci = std::getenv("CI");
  return ::geteuid() == 0 || bpf::CheckSamplerCapabilities().ok() ||
         (ci != nullptr && std::string(ci) == "true");
}

#define SKIP_UNLESS_PRIVILEGED()                                                               \
  if (!Privileged()) {                                                                         \
    GTEST_SKIP() << "needs root or CAP_BPF+CAP_PERFMON+CAP_SYS_PTRACE (set CI=true to force)"; \
  }

int64_t WallNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::string Bin(std::string_view name) {
  Result<std::string> p = BinPath(name);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : std::string(name);
}

// The workload, started and waited for ("ready" on stdout).
std::unique_ptr<Subprocess> StartWorkload(int seconds) {
  Result<std::unique_ptr<Subprocess>> w =
      Subprocess::Start({.argv = {Bin("fs-workload-callchain"), std::to_string(seconds)}});
  EXPECT_TRUE(w.ok()) << w.status();
  if (!w.ok()) return nullptr;
  Result<std::string> ready =
      (*w)->WaitForLine([](std::string_view l) { return l == "ready"; }, 10s);
  EXPECT_TRUE(ready.ok()) << ready.status();
  return std::move(*w);
}

struct AgentRun {
  std::vector<std::string> lines;  // stdout + stderr (logfmt)
  int exit_code = -1;
  std::map<std::string, uint64_t> stopped;  // fields of the "publisher stopped" line
};

// Starts the agent; `during` runs while it samples (after its "sampling" line).
AgentRun RunAgent(const std::vector<std::string>& extra, const std::function<void()>& during) {
  std::vector<std::string> argv = {Bin("flamestream-agent"), "--log-level", "info"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  AgentRun run;
  Result<std::unique_ptr<Subprocess>> agent =
      Subprocess::Start({.argv = argv, .capture_stderr = true});
  EXPECT_TRUE(agent.ok()) << agent.status();
  if (!agent.ok()) return run;
  Result<std::string> sampling = (*agent)->WaitForLine(
      [](std::string_view l) {
        return l.find("msg=sampling") != std::string_view::npos ||
               l.find("msg=\"sampling\"") != std::string_view::npos;
      },
      30s);
  EXPECT_TRUE(sampling.ok()) << sampling.status() << "\n" << common::Join((*agent)->lines(), "\n");
  if (sampling.ok() && during) during();
  while ((*agent)->ReadLine(60s).ok()) {
  }
  Result<testing::ExitStatus> st = (*agent)->Wait(30s);
  EXPECT_TRUE(st.ok()) << st.status();
  if (st.ok()) run.exit_code = st->exited ? st->code : 128 + st->signal;
  run.lines = (*agent)->lines();
  static const std::regex kField(R"(([a-z_]+)=(\d+))");
  for (const std::string& l : run.lines) {
    if (l.find("publisher stopped") == std::string::npos) continue;
    std::printf("agent: %s\n", l.c_str());
    for (std::sregex_iterator it(l.begin(), l.end(), kField), end; it != end; ++it) {
      run.stopped[(*it)[1]] = std::stoull((*it)[2]);
    }
  }
  return run;
}

class AgentKafka : public ::testing::Test {
 protected:
  void SetUp() override {
    spool_dir_ = fs::temp_directory_path() /
                 fmt::format("fs-agent-kafka-{}-{}", ::getpid(),
                             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(spool_dir_);
  }
  void TearDown() override { fs::remove_all(spool_dir_); }

  std::vector<std::string> AgentArgs(const DevBroker& broker, pid_t pid, const char* duration) {
    return {"--duration",  duration,
            "--frequency", "99",
            "--pid",       std::to_string(pid),
            "--set",       "kafka.bootstrap.servers=" + broker.bootstrap(),
            "--set",       "cluster.name=CI",
            "--set",       "node.name=Node-T",
            "--set",       "agent.spool.dir=" + spool_dir_.string(),
            "--set",       "agent.batch.interval=500ms"};
  }

  fs::path spool_dir_;
};

TEST_F(AgentKafka, PublishesWorkloadSamplesWithBuildIdAndItsProcessRecord) {
  SKIP_UNLESS_PRIVILEGED();
  Result<std::unique_ptr<DevBroker>> broker = DevBroker::Start({.brokers = kBrokers});
  ASSERT_TRUE(broker.ok()) << broker.status();
  std::unique_ptr<Subprocess> w = StartWorkload(20);
  ASSERT_NE(w, nullptr);
  const uint32_t pid = static_cast<uint32_t>(w->pid());
  Result<std::string> build_id_hex = proc::ReadBuildId(Bin("fs-workload-callchain"));
  ASSERT_TRUE(build_id_hex.ok()) << build_id_hex.status();
  Result<std::string> build_id = common::HexDecode(*build_id_hex);
  ASSERT_TRUE(build_id.ok());
  Result<proc::ProcessInfo> info = proc::ReadProcessInfo(pid);
  ASSERT_TRUE(info.ok()) << info.status();

  const int64_t t0 = WallNs();
  AgentRun run = RunAgent(AgentArgs(**broker, w->pid(), "5s"), nullptr);
  const int64_t t1 = WallNs();
  ASSERT_EQ(run.exit_code, 0) << common::Join(run.lines, "\n");
  ASSERT_TRUE(run.stopped.contains("published")) << common::Join(run.lines, "\n");
  const uint64_t published = run.stopped["published"];
  EXPECT_GE(published, 5u);  // 5 s at 500 ms per batch, give or take the edges
  EXPECT_EQ(run.stopped["dropped"], 0u);
  EXPECT_EQ(run.stopped["spool_batches"], 0u);

  const std::string pkey = fmt::format("ci/node-t/{}/{}", pid, info->start_ticks);
  Published got = ConsumeUntil((*broker)->bootstrap(),
                               [&](const Published& p) {
                                 return p.batches.size() >= published && p.processes.contains(pkey);
                               },
                               30s);
  EXPECT_EQ(got.undecodable, 0);
  ASSERT_EQ(got.batches.size(), published);

  uint64_t workload_samples = 0;
  uint64_t with_build_id = 0;
  for (const RawRecord& r : got.batches) {
    SCOPED_TRACE(batch::BatchIdString(r.batch.id()));
    EXPECT_EQ(r.key, "ci/node-t");
    EXPECT_EQ(r.batch.stage(), v1::STAGE_RAW);
    EXPECT_EQ(r.batch.cluster(), "ci");
    EXPECT_EQ(r.batch.node(), "node-t");
    EXPECT_TRUE(r.batch.id().agent_id().starts_with("ci/node-t/")) << r.batch.id().agent_id();
    for (const batch::SampleRow& row : batch::DecodeSamples(r.batch)) {
      EXPECT_GE(row.timestamp_ns, t0);
      EXPECT_LE(row.timestamp_ns, t1);
      if (row.pid != pid) continue;
      ++workload_samples;
      bool found = false;
      for (uint32_t li : r.batch.stacks(static_cast<int>(row.stack_index)).location_indices()) {
        const v1::Mapping* m = batch::MappingOf(r.batch, r.batch.locations(static_cast<int>(li)));
        if (m != nullptr && m->build_id() == *build_id) found = true;
      }
      with_build_id += found ? 1 : 0;
    }
  }
  // 99 Hz x ~5 s of one busy thread; the exact rate is tests/agent's business.
  std::printf("workload samples: %llu, with its build id: %llu\n",
              static_cast<unsigned long long>(workload_samples),
              static_cast<unsigned long long>(with_build_id));
  EXPECT_GE(workload_samples, 200u);
  EXPECT_GE(with_build_id * 10, workload_samples * 9)
      << with_build_id << " of " << workload_samples << " samples carry the workload build id";

  ASSERT_TRUE(got.processes.contains(pkey)) << "no ProcessRecord under " << pkey;
  const v1::ProcessRecord& rec = got.processes.at(pkey);
  EXPECT_EQ(rec.host_pid(), pid);
  EXPECT_EQ(rec.ns_pid(), pid);
  EXPECT_EQ(rec.comm(), "fs-workload-cal");
  EXPECT_EQ(fs::path(rec.exe()).filename(), "fs-workload-callchain");
  EXPECT_EQ(rec.exe_build_id(), *build_id);
  EXPECT_EQ(rec.start_time_ticks(), info->start_ticks);
  EXPECT_EQ(rec.cluster(), "ci");
  EXPECT_EQ(rec.node(), "node-t");
  EXPECT_TRUE(rec.cmdline().empty()) << "agent.cmdline is off";
  EXPECT_FALSE(rec.cgroup_path().empty());
}

// A workload with two named threads exits while the agent runs: its batches name each thread
// apart from the process, and its processes-topic key gets a tombstone after the record.
TEST_F(AgentKafka, NamesThreadsAndTombstonesAnExitedProcess) {
  SKIP_UNLESS_PRIVILEGED();
  Result<std::unique_ptr<DevBroker>> broker = DevBroker::Start({.brokers = kBrokers});
  ASSERT_TRUE(broker.ok()) << broker.status();
  Result<std::unique_ptr<Subprocess>> started =
      Subprocess::Start({.argv = {Bin("fs-workload-threads"), "3", "2"}});
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<Subprocess> w = std::move(*started);
  ASSERT_TRUE(w->WaitForLine([](std::string_view l) { return l == "ready"; }, 10s).ok());
  const uint32_t pid = static_cast<uint32_t>(w->pid());
  Result<proc::ProcessInfo> info = proc::ReadProcessInfo(pid);
  ASSERT_TRUE(info.ok()) << info.status();
  std::map<uint32_t, std::string> want_names;  // workers: tid -> name from /proc
  for (const auto& task : fs::directory_iterator(fmt::format("/proc/{}/task", pid))) {
    const uint32_t tid = static_cast<uint32_t>(std::stoul(task.path().filename().string()));
    Result<std::string> name = proc::ReadProcFile(task.path().string() + "/comm");
    ASSERT_TRUE(name.ok());
    if (tid != pid) want_names[tid] = std::string(common::Trim(*name));
  }
  ASSERT_EQ(want_names.size(), 2u);

  // The workload exits ~3 s into the agent's 6 s.
  AgentRun run = RunAgent(AgentArgs(**broker, w->pid(), "6s"), nullptr);
  ASSERT_EQ(run.exit_code, 0) << common::Join(run.lines, "\n");
  EXPECT_GE(run.stopped["process_tombstones"], 1u) << common::Join(run.lines, "\n");

  const std::string pkey = fmt::format("ci/node-t/{}/{}", pid, info->start_ticks);
  const uint64_t published = run.stopped["published"];
  Published got = ConsumeUntil((*broker)->bootstrap(),
                               [&](const Published& p) {
                                 auto h = p.process_history.find(pkey);
                                 return p.batches.size() >= published &&
                                        h != p.process_history.end() && !h->second.empty() &&
                                        !h->second.back();
                               },
                               30s);
  EXPECT_EQ(got.undecodable, 0);
  ASSERT_TRUE(got.process_history.contains(pkey)) << "nothing on the processes topic for " << pkey;
  EXPECT_EQ(got.process_history.at(pkey), (std::vector<bool>{true, false}))
      << "want the record, then its tombstone";
  EXPECT_FALSE(got.processes.contains(pkey)) << "compaction view: the process is retired";

  std::map<uint32_t, std::string> names;  // from the batches' thread tables
  uint64_t samples = 0;
  for (const RawRecord& r : got.batches) {
    for (const v1::Process& p : r.batch.processes()) {
      if (p.host_pid() == pid) {
        EXPECT_EQ(p.comm(), "fs-workload-thr");
      }
    }
    for (const v1::Thread& t : r.batch.threads()) {
      if (t.pid() == pid) names[t.tid()] = t.name();
    }
    for (const batch::SampleRow& row : batch::DecodeSamples(r.batch)) samples += row.pid == pid;
  }
  std::printf("threads workload: %llu samples\n", static_cast<unsigned long long>(samples));
  EXPECT_GE(samples, 100u);  // 2 threads x 3 s x 99 Hz, give or take a loaded machine
  for (const auto& [tid, name] : want_names) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(names.contains(tid));
    EXPECT_EQ(names.at(tid), name);
    EXPECT_TRUE(name.starts_with("fs-worker-"));
  }
}

TEST_F(AgentKafka, EveryBatchDeliveredInOrderThroughABrokerOutage) {
  SKIP_UNLESS_PRIVILEGED();
  Result<std::unique_ptr<DevBroker>> broker = DevBroker::Start({.brokers = kBrokers});
  ASSERT_TRUE(broker.ok()) << broker.status();
  std::unique_ptr<Subprocess> w = StartWorkload(30);
  ASSERT_NE(w, nullptr);
  std::vector<std::string> args = AgentArgs(**broker, w->pid(), "12s");
  args.insert(args.end(), {"--set", "agent.batch.interval=250ms"});
  AgentRun run = RunAgent(args, [&] {
    std::this_thread::sleep_for(2s);
    for (int i = 1; i <= kBrokers; ++i) {
      EXPECT_TRUE((*broker)->Command(fmt::format("broker {} down", i)).ok());
    }
    std::this_thread::sleep_for(4s);
    for (int i = 1; i <= kBrokers; ++i) {
      EXPECT_TRUE((*broker)->Command(fmt::format("broker {} up", i)).ok());
    }
  });
  ASSERT_EQ(run.exit_code, 0) << common::Join(run.lines, "\n");
  ASSERT_TRUE(run.stopped.contains("published")) << common::Join(run.lines, "\n");
  const uint64_t first = run.stopped["first_sequence"];
  const uint64_t next = run.stopped["next_sequence"];
  EXPECT_GE(run.stopped["spooled"], 8u) << "4 s down at 250 ms per batch should spool";
  EXPECT_EQ(run.stopped["dropped"], 0u);
  EXPECT_EQ(run.stopped["spool_batches"], 0u) << "everything drained after the outage";
  EXPECT_EQ(run.stopped["published"], next - first);

  Published got =
      ConsumeUntil((*broker)->bootstrap(),
                   [&](const Published& p) { return p.batches.size() >= next - first; }, 30s);
  std::vector<uint64_t> want;
  for (uint64_t s = first; s < next; ++s) want.push_back(s);
  EXPECT_EQ(Sequences(got), want);  // all of them, once each, strictly increasing
  for (const RawRecord& r : got.batches) {
    EXPECT_EQ(r.key, "ci/node-t");
    EXPECT_EQ(r.partition, got.batches.front().partition);
  }
}

}  // namespace
}  // namespace flamestream::testing_agent_kafka
