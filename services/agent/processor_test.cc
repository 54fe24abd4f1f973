// Process filters (comm/exe, container id, cgroup) against a fake /proc.
#include "processor.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace flamestream::agent {
namespace {

namespace fs = std::filesystem;

class CountingSpanWriter : public SampleWriter {
 public:
  void OnSample(const ResolvedSample& s, const proc::ProcessInfo&) override { pids.push_back(s.pid); }
  std::vector<uint32_t> pids;
};

constexpr const char* kDocker =
    "0::/system.slice/docker-3f1c2d4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d.scope\n";
constexpr const char* kPod =
    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_"
    "1e2f3a4b5c6d.slice/cri-containerd-"
    "aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899.scope\n";
constexpr const char* kHost = "0::/user.slice/user-0.slice/session-1.scope\n";

class ProcessFilters : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("fs_agent_filters_" + std::to_string(::getpid()));
    Add(101, "nginx", kDocker);
    Add(102, "java", kPod);
    Add(103, "bash", kHost);
  }
  void TearDown() override { fs::remove_all(root_); }

  void Add(uint32_t pid, const std::string& comm, const std::string& cgroup) {
    const fs::path d = root_ / std::to_string(pid);
    fs::create_directories(d);
    std::ofstream(d / "stat") << pid << " (" << comm
                              << ") S 1 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n";
    std::ofstream(d / "status") << "Name:\t" << comm << "\nTgid:\t" << pid << "\nPPid:\t1\nNStgid:\t"
                                << pid << "\nNSpid:\t" << pid << "\n";
    std::ofstream(d / "comm") << comm << "\n";
    std::ofstream(d / "cgroup") << cgroup;
    std::ofstream(d / "maps") << "";
  }

  std::vector<uint32_t> Run(ProcessorOptions options) {
    options.proc_root = root_.string();
    CountingSpanWriter sink;
    bpf::ClockOffset clock;
    auto p = SampleProcessor::Create(std::move(options), &clock, &sink);
    EXPECT_TRUE(p.ok()) << p.error();
    for (uint32_t pid : {101u, 102u, 103u, 101u}) {
      bpf::RawSample raw;
      raw.pid = pid;
      raw.tid = pid;
      raw.comm = "thread";
      (*p)->Handle(std::move(raw));
    }
    return sink.pids;
  }

  fs::path root_;
};

TEST_F(ProcessFilters, SelectByContainerIdPrefixCgroupRegexAndComm) {
  struct Case {
    const char* name;
    ProcessorOptions options;
    std::vector<uint32_t> want;
  };
  const std::vector<Case> kCases = {
      {"no filter", {}, {101, 102, 103, 101}},
      {"docker short id", {.container_ids = {"3f1c2d4e5a6b"}}, {101, 101}},
      {"full containerd id",
       {.container_ids = {"aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899"}},
       {102}},
      {"two containers", {.container_ids = {"3f1c", "aabb"}}, {101, 102, 101}},
      {"unknown container", {.container_ids = {"ffff"}}, {}},
      {"cgroup regex", {.cgroup = "kubepods"}, {102}},
      {"cgroup and comm both required", {.comm = "^nginx$", .cgroup = "docker-"}, {101, 101}},
      {"cgroup matches, comm does not", {.comm = "^java$", .cgroup = "user\\.slice"}, {}},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(Run(c.options), c.want);
  }
}

TEST_F(ProcessFilters, BadCgroupRegexIsAnError) {
  bpf::ClockOffset clock;
  CountingSpanWriter sink;
  auto p = SampleProcessor::Create({.cgroup = "("}, &clock, &sink);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message().find("cgroup filter \"(\""), std::string::npos);
}

// Records announcements and exits, in order: "+101" / "-101".
class LifecycleWriter : public SampleWriter {
 public:
  void OnProcess(const proc::ProcessInfo& p) override { events.push_back(fmt("+", p)); }
  void OnSample(const ResolvedSample&, const proc::ProcessInfo&) override {}
  void OnExit(const proc::ProcessInfo& p) override { events.push_back(fmt("-", p)); }
  static std::string fmt(const char* sign, const proc::ProcessInfo& p) {
    return sign + std::to_string(p.pid) + "@" + std::to_string(p.start_ticks);
  }
  std::vector<std::string> events;
};

bpf::RawSample Event(bpf::EventKind kind, uint32_t pid, uint64_t monotonic_ns = 1) {
  bpf::RawSample raw;
  raw.kind = kind;
  raw.pid = pid;
  raw.tid = pid;
  raw.monotonic_ns = monotonic_ns;
  raw.comm = "thread";
  return raw;
}

TEST_F(ProcessFilters, ExitEventRetiresAnAnnouncedProcessOnce) {
  bpf::ClockOffset clock;
  LifecycleWriter sink;
  auto p = SampleProcessor::Create({.comm = "^(nginx|bash)$", .proc_root = root_.string()},
                                   &clock, &sink);
  ASSERT_TRUE(p.ok());
  for (uint32_t pid : {101u, 102u, 103u}) (*p)->Handle(Event(bpf::EventKind::kSample, pid));
  (*p)->Handle(Event(bpf::EventKind::kExit, 101));
  (*p)->Handle(Event(bpf::EventKind::kExit, 101));  // again: nothing left to retire
  (*p)->Handle(Event(bpf::EventKind::kExit, 102));  // filtered out, never announced
  (*p)->Handle(Event(bpf::EventKind::kExec, 103));  // exec: announced again, no exit
  (*p)->Handle(Event(bpf::EventKind::kSample, 103));
  EXPECT_EQ(sink.events, (std::vector<std::string>{"+101@100", "+103@100", "-101@100",
                                                   "+103@100"}));
  EXPECT_EQ((*p)->stats().exits.load(), 1u);
}

TEST_F(ProcessFilters, ProcCheckRetiresVanishedAndReusedPids) {
  bpf::ClockOffset clock;
  LifecycleWriter sink;
  auto p = SampleProcessor::Create(
      {.proc_root = root_.string(), .exit_check_interval = std::chrono::seconds(10)}, &clock,
      &sink);
  ASSERT_TRUE(p.ok());
  constexpr uint64_t kSec = 1'000'000'000;
  for (uint32_t pid : {101u, 102u, 103u}) (*p)->Handle(Event(bpf::EventKind::kSample, pid, kSec));
  fs::remove_all(root_ / "101");  // exited, exit event lost
  std::ofstream(root_ / "102" / "stat")  // pid reused by a process started at tick 555
      << "102 (java) S 1 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 555 0 0\n";
  (*p)->Handle(Event(bpf::EventKind::kSample, 103, 5 * kSec));  // before the interval
  EXPECT_EQ(sink.events.size(), 3u);
  (*p)->Handle(Event(bpf::EventKind::kSample, 103, 11 * kSec));
  EXPECT_EQ(sink.events, (std::vector<std::string>{"+101@100", "+102@100", "+103@100",
                                                   "-101@100", "-102@100"}));
  EXPECT_EQ((*p)->stats().exits_found_by_check.load(), 2u);
  (*p)->Handle(Event(bpf::EventKind::kSample, 102, 12 * kSec));  // the new process
  EXPECT_EQ(sink.events.back(), "+102@555");
}

}  // namespace
}  // namespace flamestream::agent
