// The README's first command as a test: `flamestream up --duration 10s` while the call-chain
// workload runs leaves a pprof holding its symbolized frames and a flame-graph page, and a
// second run starts clean (no stale broker, redis or ports); Ctrl-C halfway through a longer run
// drains the real stages and leaves a consistent output.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "flamestream/testing/subprocess.h"

namespace flamestream {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string Bin(const std::string& name) {
  return std::string(std::getenv("FS_BIN_DIR")) + "/" + name;
}

bool MaySkip() {
  const char* ci = std::getenv("CI");
  return geteuid() != 0 && (ci == nullptr || std::string(ci) != "true");
}

using testing::RunCommand;

std::vector<std::string> UpArgs(const fs::path& out, pid_t pid, int base) {
  // Ports away from the defaults, so a local Collector or a parallel test does not clash.
  return {Bin("flamestream"),
          "up",
          "--duration",
          "10s",
          "--frequency",
          "99",
          "--pid",
          std::to_string(pid),
          "--out",
          out.string(),
          "--no-status-line",
          "--broker-port",
          std::to_string(base),
          "--otlp-grpc-port",
          std::to_string(base + 1),
          "--otlp-http-port",
          std::to_string(base + 2),
          "--admin-port-base",
          std::to_string(base + 3),
          "--bin-dir",
          std::getenv("FS_BIN_DIR")};
}

// Sums a folded file's values ("a;b;c 12" lines).
uint64_t FoldedTotal(const std::string& folded, uint64_t* chain) {
  uint64_t total = 0;
  std::istringstream in(folded);
  std::string line;
  while (std::getline(in, line)) {
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    const uint64_t v = std::stoull(line.substr(sp + 1));
    total += v;
    if (chain != nullptr && line.find("main;outer;middle;leaf") != std::string::npos) *chain += v;
  }
  return total;
}

TEST(FlamestreamUp, LeavesSymbolizedProfilesAndAPageThenRunsAgainCleanly) {
  if (MaySkip()) {
    GTEST_SKIP() << "needs root to load BPF (runs in CI, which is root)";
  }
  const fs::path out = fs::temp_directory_path() / ("fs-up-e2e-" + std::to_string(getpid()));
  fs::remove_all(out);
  for (int run = 0; run < 2; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    auto workload = testing::Subprocess::Start({.argv = {Bin("fs-workload-callchain"), "40"}});
    ASSERT_TRUE(workload.ok()) << workload.error();
    auto [code, text] = RunCommand(UpArgs(out, (*workload)->pid(), 29100), 180s);
    ASSERT_EQ(code, 0) << text;
    EXPECT_NE(text.find("flame graph: file://"), std::string::npos) << text;

    const fs::path series = out / "fs-workload-callchain";
    ASSERT_TRUE(fs::is_directory(series)) << text;
    EXPECT_TRUE(fs::exists(out / "fs-workload-callchain.html"));
    std::vector<std::string> argv = {Bin("flamestream"), "folded"};
    for (const auto& e : fs::directory_iterator(series)) argv.push_back(e.path().string());
    ASSERT_GT(argv.size(), 2u);
    auto [fcode, folded] = RunCommand(argv, 30s);
    ASSERT_EQ(fcode, 0) << folded;
    // Most samples carry the workload's symbolized chain, root first.
    uint64_t chain = 0;
    const uint64_t total = FoldedTotal(folded, &chain);
    EXPECT_GT(total, 0u) << folded;
    EXPECT_GE(chain * 10, total * 9) << folded;
  }
  fs::remove_all(out);
}

// Off-CPU through every stage: a workload that sleeps and waits on a pipe leaves its own
// "<service>.off_cpu" profile, symbolized, whose view weighs stacks in microseconds blocked.
TEST(FlamestreamUp, OffCpuProfileOfABlockingWorkloadReachesTheFileSink) {
  if (MaySkip()) {
    GTEST_SKIP() << "needs root to load BPF (runs in CI, which is root)";
  }
  const fs::path out = fs::temp_directory_path() / ("fs-up-offcpu-" + std::to_string(getpid()));
  fs::remove_all(out);
  auto workload = testing::Subprocess::Start({.argv = {Bin("fs-workload-offcpu"), "40"}});
  ASSERT_TRUE(workload.ok()) << workload.error();
  auto [code, text] = RunCommand(UpArgs(out, (*workload)->pid(), 29300), 180s);
  ASSERT_EQ(code, 0) << text;
  const fs::path series = out / "fs-workload-offcpu.off_cpu";
  ASSERT_TRUE(fs::is_directory(series)) << text;
  std::ifstream in(out / "fs-workload-offcpu.off_cpu.folded");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string folded = ss.str();
  uint64_t sleeper_us = 0, reader_us = 0;
  std::istringstream lines(folded);
  for (std::string line; std::getline(lines, line);) {
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    const uint64_t v = std::stoull(line.substr(sp + 1));
    // Symbolized user frames, then the kernel path the thread blocked in.
    if (line.find(";sleeper;") != std::string::npos &&
        line.find("do_nanosleep") != std::string::npos) {
      sleeper_us += v;
    }
    if (line.find(";pipe_reader;") != std::string::npos &&
        line.find("pipe_read") != std::string::npos) {
      reader_us += v;
    }
  }
  // The agent samples for most of the 10 s run; these threads are blocked all the time.
  EXPECT_GT(sleeper_us, 5'000'000u) << folded;
  EXPECT_LT(sleeper_us, 10'500'000u) << folded;
  EXPECT_GT(reader_us, 5'000'000u) << folded;
  EXPECT_LT(reader_us, 10'500'000u) << folded;
  (void)(*workload)->Signal(SIGKILL);
  fs::remove_all(out);
}

// Ctrl-C halfway through a 60 s run: `up` drains the real stages in pipeline order and exits 0;
// every window file decodes, no temporary file is left behind, and the views written last
// (<service>.folded) hold exactly what the window files hold.
TEST(FlamestreamUp, CtrlCHalfwayLeavesAConsistentOutput) {
  if (MaySkip()) {
    GTEST_SKIP() << "needs root to load BPF (runs in CI, which is root)";
  }
  const fs::path out = fs::temp_directory_path() / ("fs-up-sigint-" + std::to_string(getpid()));
  fs::remove_all(out);
  auto workload = testing::Subprocess::Start({.argv = {Bin("fs-workload-callchain"), "60"}});
  ASSERT_TRUE(workload.ok()) << workload.error();
  std::vector<std::string> argv = UpArgs(out, (*workload)->pid(), 29200);
  argv[3] = "60s";  // --duration
  auto up = testing::Subprocess::Start({.argv = argv, .capture_stderr = true});
  ASSERT_TRUE(up.ok()) << up.error();
  Result<std::string> running = (*up)->WaitForLine(
      [](std::string_view l) { return l.find("Ctrl-C stops") != std::string_view::npos; }, 120s);
  if (!running.ok()) {
    std::string seen;
    for (const std::string& l : (*up)->lines()) seen += l + "\n";
    FAIL() << running.error() << "\n" << seen;
  }
  std::this_thread::sleep_for(8s);  // a few windows' worth of samples
  ASSERT_TRUE((*up)->Signal(SIGINT).ok());
  std::string text;
  for (const std::string& l : (*up)->lines()) text += l + "\n";
  while (true) {
    Result<std::string> l = (*up)->ReadLine(120s);
    if (!l.ok()) break;
    text += *l + "\n";
  }
  Result<testing::ExitStatus> st = (*up)->Wait(10s);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, (testing::ExitStatus{.exited = true, .code = 0})) << text;
  EXPECT_NE(text.find("flame graph: file://"), std::string::npos) << text;
  (void)(*workload)->Signal(SIGKILL);

  const fs::path series = out / "fs-workload-callchain";
  ASSERT_TRUE(fs::is_directory(series)) << text;
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << "left behind: " << e.path();
    if (e.path().parent_path() == series) files.push_back(e.path().string());
  }
  ASSERT_FALSE(files.empty()) << text;
  std::vector<std::string> fold = {Bin("flamestream"), "folded"};
  fold.insert(fold.end(), files.begin(), files.end());
  auto [fcode, folded] = RunCommand(fold, 30s);
  ASSERT_EQ(fcode, 0) << folded;  // every window file decodes
  uint64_t chain = 0;
  const uint64_t total = FoldedTotal(folded, &chain);
  // 8 s at 99 Hz of one busy thread, at least a few seconds' worth made it through the drain.
  EXPECT_GE(total, 99u * 3) << text;
  EXPECT_GE(chain * 10, total * 9) << folded;

  // The view files were rebuilt from the same windows: equal totals. (.folded counts samples;
  // the pprof's default type is cpu time, so compare against the samples sample type.)
  std::ifstream view(out / "fs-workload-callchain.folded");
  std::stringstream view_text;
  view_text << view.rdbuf();
  fold.insert(fold.begin() + 2, {"--sample-type", "samples"});
  auto [scode, sfolded] = RunCommand(fold, 30s);
  ASSERT_EQ(scode, 0) << sfolded;
  EXPECT_EQ(FoldedTotal(view_text.str(), nullptr), FoldedTotal(sfolded, nullptr));
  EXPECT_TRUE(fs::exists(out / "fs-workload-callchain.html"));
  fs::remove_all(out);
}

}  // namespace
}  // namespace flamestream
