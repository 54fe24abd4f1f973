// `flamestream replay` without Kafka: the stage commands it builds (replay keys, one epoch,
// --set routing, debug directories) and its argument errors, which name the bad argument.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include "cli_test_util.h"
#include "replay_cmd.h"
#include "up.h"

namespace flamestream::cli {
namespace {

namespace fs = std::filesystem;
using cli_test::RunCli;
using cli_test::TempDir;

constexpr int64_t kNow = 1'763'900'000'000'000'000;  // 2025-11-23T12:13:20Z

// The values of every `--set` in a stage's arguments.
std::vector<std::string> Sets(const StageSpec& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i + 1 < s.args.size(); ++i) {
    if (s.args[i] == "--set") out.push_back(s.args[i + 1]);
  }
  return out;
}

bool Has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

ReplayOptions Base() {
  ReplayOptions o;
  o.from = "-10m";
  o.to = "now";
  o.brokers = "kafka:9092";
  o.bin_dir = std::getenv("FS_BIN_DIR");
  return o;
}

TEST(ReplayStages, EachStageInReplayModeWithOneEpochAndItsOwnSettings) {
  TempDir dir;
  fs::create_directories(dir.path() / "debug");
  ReplayOptions o = Base();
  o.build_ids = {"4f1e0c", "AB12"};
  o.debug_dirs = {dir / "debug"};
  o.out = dir / "out";
  o.sets = {"kafka.security.protocol=ssl", "correlator.lateness=5s", "exporter.file.views=false"};
  o.window = std::chrono::seconds(15);
  Result<std::vector<StageSpec>> stages = BuildReplayStages(o, 42, kNow);
  ASSERT_TRUE(stages.ok()) << stages.error();
  ASSERT_EQ(stages->size(), 3u);
  const std::vector<std::string> names = {(*stages)[0].name, (*stages)[1].name, (*stages)[2].name};
  EXPECT_EQ(names, (std::vector<std::string>{"symbolizer", "correlator", "exporter"}));
  for (const StageSpec& s : *stages) {
    SCOPED_TRACE(s.name);
    EXPECT_TRUE(s.run_to_completion);
    EXPECT_EQ(s.binary, (fs::path(std::getenv("FS_BIN_DIR")) / ("flamestream-" + s.name)).string());
    EXPECT_EQ(s.log_file, (dir.path() / "out" / "logs" / ("replay-" + s.name + ".log")).string());
    EXPECT_GT(s.metrics_port, 0);
    EXPECT_EQ(s.args[0], "--admin-listen");
    EXPECT_EQ(s.args[1], fmt::format("127.0.0.1:{}", s.metrics_port));
    const std::vector<std::string> sets = Sets(s);
    EXPECT_TRUE(Has(sets, "kafka.bootstrap.servers=kafka:9092"));
    EXPECT_TRUE(Has(sets, "kafka.security.protocol=ssl"));
    EXPECT_EQ(Has(sets, "correlator.lateness=5s"), s.name == "correlator");
    EXPECT_EQ(Has(sets, "exporter.file.views=false"), s.name == "exporter");
  }
  EXPECT_EQ(Sets((*stages)[0]),
            (std::vector<std::string>{
                "kafka.bootstrap.servers=kafka:9092", "symbolizer.replay=true",
                fmt::format("symbolizer.replay.from={}", kNow - 600'000'000'000),
                fmt::format("symbolizer.replay.to={}", kNow), "symbolizer.replay.epoch=42",
                "symbolizer.replay.build_ids=4f1e0c,ab12",
                "symbolizer.debug_dirs=" + (dir / "debug") + ",/usr/lib/debug",
                "kafka.security.protocol=ssl"}));
  EXPECT_EQ(Sets((*stages)[1]), (std::vector<std::string>{"kafka.bootstrap.servers=kafka:9092",
                                                          "correlator.replay=true",
                                                          "kafka.security.protocol=ssl",
                                                          "correlator.lateness=5s"}));
  EXPECT_EQ(Sets((*stages)[2]),
            (std::vector<std::string>{"kafka.bootstrap.servers=kafka:9092", "exporter.replay=true",
                                      "exporter.sinks=file",
                                      "exporter.file.out=" + (dir / "out"), "exporter.window=15s",
                                      "kafka.security.protocol=ssl", "exporter.file.views=false"}));
}

TEST(ReplayStages, SinksFollowTheUrlsOrTheSinkFlags) {
  struct Case {
    std::vector<std::string> sinks;
    std::string pyroscope;
    std::string otlp;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{}, "", "", "exporter.sinks=file"},
      {{}, "http://p:4040", "", "exporter.sinks=file,pyroscope"},
      {{"pyroscope"}, "http://p:4040", "", "exporter.sinks=pyroscope"},
      {{"otlp", "file", "otlp"}, "", "collector:4317", "exporter.sinks=otlp,file"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.want);
    ReplayOptions o = Base();
    o.sinks = c.sinks;
    o.pyroscope = c.pyroscope;
    o.otlp = c.otlp;
    Result<std::vector<StageSpec>> stages = BuildReplayStages(o, 1, kNow);
    ASSERT_TRUE(stages.ok()) << stages.error();
    EXPECT_TRUE(Has(Sets((*stages)[2]), c.want));
  }
}

TEST(ReplayStages, BadArgumentsAreErrorsNamingTheArgument) {
  struct Case {
    std::function<void(ReplayOptions&)> set;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](ReplayOptions& o) { o.from = ""; }, "--from is required"},
      {[](ReplayOptions& o) { o.from = "yesterday"; }, "--from yesterday: "},
      {[](ReplayOptions& o) { o.to = "soon"; }, "--to soon: "},
      {[](ReplayOptions& o) { o.to = "-1h"; }, "--to -1h is before --from -10m"},
      {[](ReplayOptions& o) { o.build_ids = {"4f1"}; }, "--build-id 4f1: "},
      {[](ReplayOptions& o) { o.build_ids = {"zz"}; }, "--build-id zz: "},
      {[](ReplayOptions& o) { o.sinks = {"kafka"}; }, "--sink kafka: expected file, pyroscope or otlp"},
      {[](ReplayOptions& o) { o.sinks = {"pyroscope"}; }, "--sink pyroscope needs --pyroscope URL"},
      {[](ReplayOptions& o) { o.sinks = {"otlp"}; }, "--sink otlp needs --otlp ENDPOINT"},
      {[](ReplayOptions& o) { o.sets = {"agent.frequency=99"}; }, "--set agent.frequency=99: "},
      {[](ReplayOptions& o) { o.sets = {"novalue"}; }, "--set novalue: expected key=value"},
      {[](ReplayOptions& o) { o.debug_dirs = {"/nonexistent/debug"}; },
       "--debug-dir /nonexistent/debug: not a directory"},
      {[](ReplayOptions& o) { o.brokers = ""; }, "--brokers: empty"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    ReplayOptions o = Base();
    c.set(o);
    Result<std::vector<StageSpec>> stages = BuildReplayStages(o, 1, kNow);
    ASSERT_FALSE(stages.ok());
    EXPECT_EQ(stages.error().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(stages.error().message().rfind(c.message, 0), 0u) << stages.error().message();
  }
}

TEST(ReplayCli, HelpAndArgumentErrorsExitTwoNamingTheArgument) {
  cli_test::CliRun help = RunCli({"replay", "--help"});
  EXPECT_EQ(help.exit, 0);
  for (const char* flag : {"--from", "--to", "--build-id", "--brokers", "--redis", "--sink",
                           "--out", "--pyroscope", "--otlp", "--debug-dir", "--set"}) {
    EXPECT_NE(help.output.find(flag), std::string::npos) << flag << "\n" << help.output;
  }
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"replay"}, "--from is required"},
      {{"replay", "--from", "yesterday"}, "flamestream replay: --from yesterday: "},
      {{"replay", "--from", "-1h", "--build-id", "xyz"}, "flamestream replay: --build-id xyz: "},
      {{"replay", "--from", "-1h", "--window", "fast"}, "flamestream: --window fast: "},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    cli_test::CliRun r = RunCli(c.args, /*merge_stderr=*/true);
    EXPECT_EQ(r.exit, 2);
    EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace flamestream::cli
