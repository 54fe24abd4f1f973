// Re-symbolization end to end (issue 7, ARCHITECTURE.md "Replay"): a binary whose debug info
// is absent during `flamestream up` is symbolized as `basename+0xoffset`; after its debug file
// is put where the symbolizer finds it by build id, `flamestream replay` over that time range
// rewrites the same window files with function names, and every file's sample total is
// unchanged.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "flamestream/profile/pprof.h"
#include "flamestream/testing/dev_broker.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// comm is at most 15 characters; the copy's name is its comm and its service name.
constexpr const char* kWorkload = "callchain-nodbg";

std::string Bin(const std::string& name) { return std::string(std::getenv("FS_BIN_DIR")) + "/" + name; }

bool MaySkip() {
  const char* ci = std::getenv("CI");
  return geteuid() != 0 && (ci == nullptr || std::string(ci) != "true");
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

using testing::RunCommand;

testing::CommandResult Shell(const std::string& script) {
  return RunCommand({"/bin/sh", "-c", script}, 60s);
}

// One window file as read back: its samples by folded stack, and its symbol epoch.
struct WindowFile {
  uint64_t epoch = 0;
  int64_t total = 0;
  std::map<std::string, int64_t> stacks;  // "root;...;leaf" -> samples
};

std::map<std::string, WindowFile> ReadWindows(const fs::path& dir) {
  std::map<std::string, WindowFile> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.path().string().ends_with(".pb.gz")) continue;
    std::ifstream in(e.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Result<perftools::profiles::Profile> p = profile::DecodePprof(bytes);
    EXPECT_TRUE(p.ok()) << e.path() << ": " << p.error();
    if (!p.ok()) continue;
    Result<std::vector<profile::FoldedStack>> stacks = profile::Fold(*p);
    EXPECT_TRUE(stacks.ok()) << e.path();
    if (!stacks.ok()) continue;
    WindowFile& w = out[e.path().filename().string()];
    w.epoch = profile::EpochOf(*p);
    for (const profile::FoldedStack& s : *stacks) {
      std::string key;
      for (const std::string& f : s.frames) key += (key.empty() ? "" : ";") + f;
      w.stacks[key] += s.count;
      w.total += s.count;
    }
  }
  return out;
}

// Samples whose stack has at least `n` frames named `<kWorkload>+0x<hex>`.
int64_t SamplesWithOffsetFrames(const std::map<std::string, WindowFile>& files, size_t n) {
  const std::regex frame(std::string("(^|;)") + kWorkload + "\\+0x[0-9a-f]+(?=;|$)");
  int64_t total = 0;
  for (const auto& [name, w] : files) {
    for (const auto& [stack, count] : w.stacks) {
      const auto begin = std::sregex_iterator(stack.begin(), stack.end(), frame);
      if (static_cast<size_t>(std::distance(begin, std::sregex_iterator())) >= n) total += count;
    }
  }
  return total;
}

int64_t SamplesContaining(const std::map<std::string, WindowFile>& files, const std::string& text) {
  int64_t total = 0;
  for (const auto& [name, w] : files) {
    for (const auto& [stack, count] : w.stacks) {
      if (stack.find(text) != std::string::npos) total += count;
    }
  }
  return total;
}

int64_t Total(const std::map<std::string, WindowFile>& files) {
  int64_t total = 0;
  for (const auto& [name, w] : files) total += w.total;
  return total;
}

TEST(FlamestreamReplay, ResymbolizesAStrippedBinaryOverTheSameFilesWithTheSameTotals) {
  if (MaySkip()) {
    GTEST_SKIP() << "needs root to load BPF (runs in CI, which is root)";
  }
  const fs::path root = fs::temp_directory_path() / ("fs-replay-e2e-" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "bin");
  const fs::path exe = root / "bin" / kWorkload;
  const fs::path debug_file = root / (std::string(kWorkload) + ".debug");
  const fs::path out = root / "out";

  // A copy of the call-chain workload without symtab or DWARF; its debug info kept aside.
  fs::copy_file(Bin("fs-workload-callchain"), exe);
  {
    auto [code, text] = Shell(fmt::format("objcopy --only-keep-debug '{}' '{}' && strip --strip-all '{}'",
                                          exe.string(), debug_file.string(), exe.string()));
    ASSERT_EQ(code, 0) << text;
    auto [scode, sections] = Shell("readelf -S -W '" + exe.string() + "'");
    ASSERT_EQ(scode, 0) << sections;
    ASSERT_EQ(sections.find(".symtab"), std::string::npos) << sections;
    ASSERT_EQ(sections.find(".debug_info"), std::string::npos) << sections;
    auto [dcode, dsections] = Shell("readelf -S -W '" + debug_file.string() + "'");
    ASSERT_NE(dsections.find(".symtab"), std::string::npos) << dsections;
  }
  std::string build_id;
  {
    auto [code, notes] = Shell("readelf -n '" + exe.string() + "'");
    ASSERT_EQ(code, 0) << notes;
    std::smatch m;
    const std::regex re("Build ID: ([0-9a-f]+)");
    ASSERT_TRUE(std::regex_search(notes, m, re)) << notes;
    build_id = m[1];
  }

  auto broker = testing::DevBroker::Start();
  ASSERT_TRUE(broker.ok()) << broker.error();
  const std::string brokers = (*broker)->bootstrap();

  // The live run: the symbolizer finds the stripped binary and nothing else for it.
  const int64_t t_start = NowNs();
  auto workload = testing::Subprocess::Start({.argv = {exe.string(), "40"}});
  ASSERT_TRUE(workload.ok()) << workload.error();
  const int base = 29300;  // away from the defaults and from up_e2e's ports
  auto [up_code, up_text] = RunCommand(
      {Bin("flamestream"), "up", "--duration", "10s", "--frequency", "99", "--comm",
       std::string("^") + kWorkload + "$", "--brokers", brokers, "--out", out.string(),
       "--no-status-line", "--otlp-grpc-port", std::to_string(base + 1), "--otlp-http-port",
       std::to_string(base + 2), "--admin-port-base", std::to_string(base + 3), "--bin-dir",
       std::getenv("FS_BIN_DIR")},
      240s);
  ASSERT_EQ(up_code, 0) << up_text;
  const int64_t t_end = NowNs();
  (void)(*workload)->Signal(SIGKILL);

  const fs::path series = out / kWorkload;
  const std::map<std::string, WindowFile> before = ReadWindows(series);
  ASSERT_FALSE(before.empty()) << up_text;
  const int64_t total = Total(before);
  ASSERT_GT(total, 0);
  // Main, outer, middle and leaf (and now) are file offsets in the stripped binary.
  EXPECT_GE(SamplesWithOffsetFrames(before, 4) * 10, total * 9) << "total " << total;
  for (const char* name : {";main;", ";outer;", ";middle;", ";leaf"}) {
    EXPECT_EQ(SamplesContaining(before, name), 0) << name;
  }
  std::cout << "live run: " << before.size() << " window files, " << total << " samples\n"
            << up_text;

  // Its debug file, found by build id in an extra debug directory.
  const fs::path debug_dir = root / "debug";
  const fs::path by_id =
      debug_dir / ".build-id" / build_id.substr(0, 2) / (build_id.substr(2) + ".debug");
  fs::create_directories(by_id.parent_path());
  fs::copy_file(debug_file, by_id);

  const auto replay_started = std::chrono::steady_clock::now();
  auto [code, text] = RunCommand(
      {Bin("flamestream"), "replay", "--brokers", brokers, "--from", std::to_string(t_start),
       "--to", std::to_string(t_end), "--build-id", build_id, "--debug-dir", debug_dir.string(),
       "--out", out.string(), "--bin-dir", std::getenv("FS_BIN_DIR")},
      300s);
  const double replay_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - replay_started).count();
  ASSERT_EQ(code, 0) << text;
  std::cout << "replay of " << (t_end - t_start) / 1'000'000 << " ms took " << replay_seconds
            << " s:\n" << text;

  const std::map<std::string, WindowFile> after = ReadWindows(series);
  // The same window files, each rewritten (a replay epoch) with exactly its old total.
  ASSERT_EQ(after.size(), before.size()) << text;
  for (const auto& [name, w] : before) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(after.contains(name));
    EXPECT_EQ(w.epoch, 0u);
    EXPECT_GT(after.at(name).epoch, 0u);
    EXPECT_EQ(after.at(name).total, w.total);
  }
  EXPECT_EQ(Total(after), total);
  EXPECT_EQ(SamplesWithOffsetFrames(after, 1), 0);
  EXPECT_GE(SamplesContaining(after, "main;outer;middle;leaf") * 10, total * 9);
  // The replay reports what each stage wrote: every sample of the range, at every stage.
  for (const char* stage : {"symbolizer", "correlator", "exporter"}) {
    const std::regex line(
        fmt::format("(^|\n){} +exit 0 +[0-9.]+s  in: [^\n]*  out: {} samples\n", stage, total));
    EXPECT_TRUE(std::regex_search(text, line)) << stage << "\n" << text;
  }

  (*broker).reset();
  if (HasFailure()) {
    // The stages' own logs say where samples went (restarts, DLQ, late or dropped records).
    for (const auto& e : fs::directory_iterator(out / "logs")) {
      auto [lcode, tail] = Shell("tail -n 40 '" + e.path().string() + "'");
      std::cout << "---- " << e.path().filename().string() << " (last 40 lines)\n" << tail;
    }
    std::cout << "kept for inspection (stage logs in out/logs): " << root << "\n";
  } else {
    fs::remove_all(root);
  }
}

}  // namespace
}  // namespace flamestream
