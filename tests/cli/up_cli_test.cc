// `flamestream up` end to end with stand-in stages (tests/cli/standin_stage.py behind
// flamestream-{agent,symbolizer,correlator,exporter} symlinks), the real dev broker and a
// real redis-server: start and drain order, the keys each stage gets, crash restart,
// Ctrl-C, busy ports, the sudo hint, and a clean second run.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "cli_test_util.h"
#include "probe.h"

namespace flamestream::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using cli_test::CliRun;
using cli_test::RunCli;
using cli_test::TempDir;

struct Ports {
  int broker = 0;
  int grpc = 0;
  int http = 0;
  int admin_base = 0;  // four consecutive ports
};

Ports FreePorts() {
  Ports p;
  auto one = [] {
    Result<int> r = testing::FreePort();  // below the ephemeral range: parallel tests can't take it
    EXPECT_TRUE(r.ok());
    return r.value_or(0);
  };
  p.broker = one();
  p.grpc = one();
  p.http = one();
  for (int attempt = 0; attempt < 50; ++attempt) {
    const int base = one();
    if (base + 3 > 65535) continue;
    bool ok = true;
    for (int i = 0; i < 4; ++i) {
      ok = ok && CheckPortFree("127.0.0.1", base + i, "x").ok() && base + i != p.broker &&
           base + i != p.grpc && base + i != p.http;
    }
    if (ok) {
      p.admin_base = base;
      break;
    }
  }
  return p;
}

class UpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // FS_CLI_STANDIN: the script's path in the source tree, from CMake.
    const fs::path standin = FS_CLI_STANDIN;
    ASSERT_TRUE(fs::exists(standin)) << standin;
    fs::create_directories(bin_.path());
    for (const char* stage : {"agent", "symbolizer", "correlator", "exporter"}) {
      fs::create_symlink(standin, bin_.path() / (std::string("flamestream-") + stage));
    }
    Result<std::string> broker = testing::BinPath("flamestream-devbroker");
    ASSERT_TRUE(broker.ok());
    fs::create_symlink(*broker, bin_.path() / "flamestream-devbroker");
    ports_ = FreePorts();
    ASSERT_NE(ports_.admin_base, 0);
  }

  std::vector<std::string> Args(const std::string& duration) const {
    return {"up",
            "--duration", duration,
            "--out", work_ / "out",
            "--bin-dir", bin_.path().string(),
            "--broker-port", std::to_string(ports_.broker),
            "--otlp-grpc-port", std::to_string(ports_.grpc),
            "--otlp-http-port", std::to_string(ports_.http),
            "--admin-port-base", std::to_string(ports_.admin_base),
            "--no-status-line", "--skip-root-check"};
  }
  std::vector<std::pair<std::string, std::string>> Env(
      std::vector<std::pair<std::string, std::string>> extra = {}) const {
    extra.emplace_back("FS_STANDIN_LOG", StandinLog());
    return extra;
  }
  std::string StandinLog() const { return work_ / "standin.log"; }
  // "start agent", "stop agent", ... (arguments dropped).
  std::vector<std::string> StandinEvents() const {
    std::ifstream in(StandinLog());
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) {
      std::istringstream ss(l);
      std::string verb;
      std::string name;
      ss >> verb >> name;
      out.push_back(verb + " " + name);
    }
    return out;
  }
  std::string StandinArgs(const std::string& stage) const {
    std::ifstream in(StandinLog());
    for (std::string l; std::getline(in, l);) {
      if (l.starts_with("start " + stage + " ")) return l;
    }
    return "";
  }
  // Every port the run used (including its private redis) can be bound again.
  void ExpectPortsFree(const std::string& output) const {
    std::vector<int> ports = {ports_.broker, ports_.grpc, ports_.http};
    for (int i = 0; i < 4; ++i) ports.push_back(ports_.admin_base + i);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(output, m, std::regex("private redis 127.0.0.1:(\\d+)")))
        << output;
    ports.push_back(std::stoi(m[1]));
    for (int p : ports) {
      EXPECT_TRUE(CheckPortFree("127.0.0.1", p, "port").ok()) << "port " << p << " still bound";
    }
  }

  TempDir bin_;
  TempDir work_;
  Ports ports_;
};

const std::vector<std::string> kCleanRun = {
    "start symbolizer", "start correlator", "start exporter", "start agent",
    "stop agent",       "stop symbolizer",  "stop correlator", "stop exporter"};

TEST_F(UpTest, StartsAndDrainsInPipelineOrderAndRunsCleanlyTwice) {
  for (int run = 1; run <= 2; ++run) {
    SCOPED_TRACE(fmt::format("run {}", run));
    fs::remove(StandinLog());
    CliRun r = RunCli(Args("2s"), /*merge_stderr=*/true, Env());
    EXPECT_EQ(r.exit, 0) << r.output;
    EXPECT_EQ(StandinEvents(), kCleanRun) << r.output;
    EXPECT_NE(r.output.find("no flame graph page"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("0 pprof files in " + work_ / "out"), std::string::npos) << r.output;
    ExpectPortsFree(r.output);
  }
  // The keys each stage was given (the table in up.h).
  const std::string bootstrap = fmt::format("kafka.bootstrap.servers=127.0.0.1:{}", ports_.broker);
  const std::string agent = StandinArgs("agent");
  EXPECT_NE(agent.find(fmt::format("--admin-listen 127.0.0.1:{}", ports_.admin_base)),
            std::string::npos) << agent;
  EXPECT_NE(agent.find("--set " + bootstrap), std::string::npos) << agent;
  EXPECT_NE(agent.find("--set agent.frequency=99"), std::string::npos) << agent;
  const std::string correlator = StandinArgs("correlator");
  EXPECT_NE(correlator.find(fmt::format("--set correlator.otlp.grpc.listen=127.0.0.1:{}",
                                        ports_.grpc)),
            std::string::npos) << correlator;
  EXPECT_NE(correlator.find("--set correlator.lateness=2s"), std::string::npos) << correlator;
  const std::string exporter = StandinArgs("exporter");
  EXPECT_NE(exporter.find("--set exporter.sinks=file"), std::string::npos) << exporter;
  EXPECT_NE(exporter.find("--set exporter.file.out=" + work_ / "out"), std::string::npos)
      << exporter;
  EXPECT_NE(StandinArgs("symbolizer").find("--set symbolizer.redis.address=127.0.0.1:"),
            std::string::npos);
  // Each stage's output went to its log file.
  for (const char* stage : {"broker", "redis", "symbolizer", "correlator", "exporter", "agent"}) {
    EXPECT_TRUE(fs::exists(work_.path() / "out/logs" / (std::string(stage) + ".log"))) << stage;
  }
}

TEST_F(UpTest, RestartsACrashedStageAndReportsIt) {
  CliRun r = RunCli(Args("4s"), /*merge_stderr=*/true,
                    Env({{"FS_STANDIN_CRASH_ONCE", "symbolizer"}}));
  EXPECT_EQ(r.exit, 0) << r.output;
  EXPECT_NE(r.output.find("symbolizer exited (exit 3)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("symbolizer restarting (in 500ms)"), std::string::npos) << r.output;
  const std::vector<std::string> events = StandinEvents();
  EXPECT_EQ(std::count(events.begin(), events.end(), "start symbolizer"), 2) << r.output;
  EXPECT_EQ(std::count(events.begin(), events.end(), "stop symbolizer"), 1) << r.output;
  EXPECT_EQ(events.back(), "stop exporter");
}

TEST_F(UpTest, CtrlCDrainsInOrder) {
  Result<std::string> bin = testing::BinPath("flamestream");
  ASSERT_TRUE(bin.ok());
  std::vector<std::string> argv = {*bin};
  for (const std::string& a : Args("0")) argv.push_back(a);
  auto proc = testing::Subprocess::Start({.argv = argv, .env = Env(), .capture_stderr = true});
  ASSERT_TRUE(proc.ok()) << proc.error();
  Result<std::string> running = (*proc)->WaitForLine(
      [](std::string_view l) { return l.find("running; Ctrl-C stops") != std::string_view::npos; },
      60s);
  if (!running.ok()) {
    std::string seen;
    for (const std::string& l : (*proc)->lines()) seen += l + "\n";
    FAIL() << running.error() << "\nflamestream up printed:\n" << seen;
  }
  ASSERT_TRUE((*proc)->Signal(SIGINT).ok());
  std::string output;
  for (const std::string& l : (*proc)->lines()) output += l + "\n";
  while (true) {
    Result<std::string> l = (*proc)->ReadLine(60s);
    if (!l.ok()) break;
    output += *l + "\n";
  }
  Result<testing::ExitStatus> st = (*proc)->Wait(10s);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, (testing::ExitStatus{.exited = true, .code = 0})) << output;
  // Only the supervisor saw the Ctrl-C (stages run in their own process groups).
  EXPECT_EQ(StandinEvents(), kCleanRun) << output;
  ExpectPortsFree(output);
}

TEST_F(UpTest, BusyPortIsAnErrorNamingTheFlag) {
  // Something already listens on the OTLP gRPC port (say, a local Collector).
  auto holder = testing::Subprocess::Start(
      {.argv = {"python3", "-c",
                fmt::format("import socket,time; s=socket.socket(); "
                            "s.bind(('127.0.0.1',{})); s.listen(); print('ok', flush=True); "
                            "time.sleep(60)",
                            ports_.grpc)}});
  ASSERT_TRUE(holder.ok());
  ASSERT_TRUE((*holder)->WaitForLine([](std::string_view l) { return l == "ok"; }, 10s).ok());
  CliRun r = RunCli(Args("2s"), /*merge_stderr=*/true, Env());
  EXPECT_EQ(r.exit, 2);
  EXPECT_NE(r.output.find(fmt::format("port {} (--otlp-grpc-port) is already in use",
                                      ports_.grpc)),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(StandinEvents().empty()) << "nothing may start when a port is busy";
}

TEST_F(UpTest, WithoutRootSaysToRerunWithSudo) {
  std::vector<std::string> args = Args("2s");
  args.pop_back();  // no --skip-root-check
  std::vector<std::string> prefix;
  if (geteuid() == 0) {
    // As root, run the binary as nobody to see what a normal user sees.
    prefix = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
  }
  Result<std::string> bin = testing::BinPath("flamestream");
  ASSERT_TRUE(bin.ok());
  std::vector<std::string> argv = prefix;
  argv.push_back(*bin);
  argv.insert(argv.end(), args.begin(), args.end());
  auto proc = testing::Subprocess::Start({.argv = argv, .capture_stderr = true});
  ASSERT_TRUE(proc.ok());
  std::string output;
  while (true) {
    Result<std::string> l = (*proc)->ReadLine(20s);
    if (!l.ok()) break;
    output += *l + "\n";
  }
  Result<testing::ExitStatus> st = (*proc)->Wait(10s);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->code, 2);
  EXPECT_NE(output.find("needs root; rerun with sudo:\n  sudo " + *bin + " up"), std::string::npos)
      << output;
}

}  // namespace
}  // namespace flamestream::cli
