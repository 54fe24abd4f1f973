// The README's first command as a test: `flamestream up --duration 10s` while the call-chain
// workload runs leaves a pprof holding its symbolized frames and a flame-graph page, and a
// second run starts clean (no stale broker, redis or ports).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "flamestream/testing/subprocess.h"

namespace flamestream {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string Bin(const std::string& name) { return std::string(std::getenv("FS_BIN_DIR")) + "/" + name; }

bool MaySkip() {
  const char* ci = std::getenv("CI");
  return geteuid() != 0 && (ci == nullptr || std::string(ci) != "true");
}

// Runs a command to completion; returns (exit code, output).
std::pair<int, std::string> RunCommand(std::vector<std::string> argv, std::chrono::seconds timeout) {
  auto proc = testing::Subprocess::Start({.argv = std::move(argv), .capture_stderr = true});
  EXPECT_TRUE(proc.ok()) << proc.error();
  if (!proc.ok()) return {-1, ""};
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto line = (*proc)->ReadLine(1s);
    if (line.ok()) {
      out += *line + "\n";
    } else if (line.error().code() == StatusCode::kNotFound) {
      break;
    }
  }
  auto st = (*proc)->Wait(10s);
  return {st.ok() && st->exited ? st->code : -1, out};
}

std::vector<std::string> UpArgs(const fs::path& out, pid_t pid, int base) {
  // Ports away from the defaults, so a local Collector or a parallel test does not clash.
  return {Bin("flamestream"), "up", "--duration", "10s", "--frequency", "99",
          "--pid", std::to_string(pid), "--out", out.string(), "--no-status-line",
          "--broker-port", std::to_string(base), "--otlp-grpc-port", std::to_string(base + 1),
          "--otlp-http-port", std::to_string(base + 2), "--admin-port-base",
          std::to_string(base + 3), "--bin-dir", std::getenv("FS_BIN_DIR")};
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
    uint64_t total = 0;
    std::istringstream in(folded);
    std::string line;
    while (std::getline(in, line)) {
      const size_t sp = line.rfind(' ');
      if (sp == std::string::npos) continue;
      const uint64_t v = std::stoull(line.substr(sp + 1));
      total += v;
      if (line.find("main;outer;middle;leaf") != std::string::npos) chain += v;
    }
    EXPECT_GT(total, 0u) << folded;
    EXPECT_GE(chain * 10, total * 9) << folded;
  }
  fs::remove_all(out);
}

}  // namespace
}  // namespace flamestream
