// `flamestream folded|top|diff` on pprof files with known content, through the binary.
#include <gtest/gtest.h>

#include "cli_test_util.h"
#include "flamestream/pprofutil/builder.h"
#include "flamestream/pprofutil/profile_io.h"

namespace flamestream::cli_test {
namespace {

namespace fs = std::filesystem;
using pprofutil::ProfileBuilder;
constexpr int64_t kMs = 1'000'000;

void Write(const std::string& path, const ProfileBuilder& b, bool gzip = true) {
  fs::create_directories(fs::path(path).parent_path());
  std::string bytes = b.Build().SerializeAsString();
  if (gzip) bytes = *pprofutil::Gzip(bytes);
  ASSERT_TRUE(pprofutil::WriteFile(path, bytes).ok());
}

// The file sink's layout: <out>/<service>/<window>.pb.gz, two windows of "shop", one of "cart".
void WriteSinkDir(const TempDir& dir) {
  ProfileBuilder w1;
  w1.AddFolded("main;handle;crc32", 600 * kMs, {{"span_name", "GET /cart"}});
  w1.AddFolded("main;handle;memcpy", 200 * kMs, {{"span_name", "GET /home"}});
  Write(dir / "out/shop/1700000000.pb.gz", w1);
  ProfileBuilder w2;
  w2.AddFolded("main;handle;crc32", 100 * kMs, {{"span_name", "GET /cart"}});
  w2.AddFolded("main;idle", 100 * kMs);
  Write(dir / "out/shop/1700000010.pb.gz", w2, /*gzip=*/false);
  ProfileBuilder other;
  other.AddFolded("main;other", 50 * kMs);
  Write(dir / "out/cart/1700000000.pb.gz", other);
}

TEST(FlamestreamTop, PrintsExactRowsForSinkDirectory) {
  TempDir dir;
  WriteSinkDir(dir);
  struct Case {
    std::string name;
    std::vector<std::string> args;
    std::string want;
  };
  const std::string out = dir / "out";
  const std::vector<Case> cases = {
      {"service, by self",
       {"top", "--service", "shop", out},
       "Type: cpu\n"
       "Showing 5 of 5 functions, 1s (100.00%) of 1s total\n"
       "      flat  flat%   sum%        cum   cum%\n"
       "     700ms 70.00% 70.00%      700ms 70.00%  crc32\n"
       "     200ms 20.00% 90.00%      200ms 20.00%  memcpy\n"
       "     100ms 10.00% 100.00%      100ms 10.00%  idle\n"
       "         0  0.00% 100.00%         1s 100.00%  main\n"
       "         0  0.00% 100.00%      900ms 90.00%  handle\n"},
      {"span filter, by total, two rows",
       {"top", "--service", "shop", "--span", "GET /cart", "--by", "total", "-n", "2", out},
       "Type: cpu\n"
       "Showing 2 of 3 functions, 700ms (100.00%) of 700ms total\n"
       "      flat  flat%   sum%        cum   cum%\n"
       "     700ms 100.00% 100.00%      700ms 100.00%  crc32\n"
       "         0  0.00% 100.00%      700ms 100.00%  handle\n"},
      {"one file", {"top", "-n", "1", dir / "out/cart/1700000000.pb.gz"},
       "Type: cpu\n"
       "Showing 1 of 2 functions, 50ms (100.00%) of 50ms total\n"
       "      flat  flat%   sum%        cum   cum%\n"
       "      50ms 100.00% 100.00%       50ms 100.00%  other\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    CliRun r = RunCli(c.args);
    EXPECT_EQ(r.exit, 0);
    EXPECT_EQ(r.output, c.want);
  }
}

TEST(FlamestreamFolded, MergesFilesAndExpandsInlinedFrames) {
  TempDir dir;
  ProfileBuilder a;
  a.Add({{"memcpy"}, {"inlined_helper", "caller"}, {"main"}}, 10);
  a.AddUnsymbolized("/opt/app/libfoo.so", 0x7f0000000000, 0x1234, 7);
  Write(dir / "a.pb.gz", a);
  ProfileBuilder b;
  b.AddFolded("main;caller;inlined_helper;memcpy", 5);
  Write(dir / "b.pb", b, /*gzip=*/false);
  CliRun r = RunCli({"folded", dir / "a.pb.gz", dir / "b.pb"});
  EXPECT_EQ(r.exit, 0);
  EXPECT_EQ(r.output,
            "libfoo.so+0x1234 7\n"
            "main;caller;inlined_helper;memcpy 15\n");
}

TEST(FlamestreamDiff, RanksShareChangesAndWritesPage) {
  TempDir dir;
  ProfileBuilder before;
  before.AddFolded("main;a", 50 * kMs);
  before.AddFolded("main;b", 50 * kMs);
  Write(dir / "before.pb.gz", before);
  ProfileBuilder after;
  after.AddFolded("main;a", 150 * kMs);
  after.AddFolded("main;b", 40 * kMs);
  after.AddFolded("main;c", 10 * kMs);
  Write(dir / "after.pb.gz", after);

  CliRun r = RunCli({"diff", "--html", dir / "diff.html", dir / "before.pb.gz", dir / "after.pb.gz"});
  EXPECT_EQ(r.exit, 0);
  EXPECT_EQ(r.output,
            "Type: cpu\n"
            "Before: 100ms total, after: 200ms total; showing 3 of 3 functions\n"
            " before%   after%     delta  name\n"
            "  50.00%   20.00%   -30.00%  b\n"
            "  50.00%   75.00%   +25.00%  a\n"
            "   0.00%    5.00%    +5.00%  c\n"
            "Differential flame graph: " + dir / "diff.html" + "\n");
  Result<std::string> html = pprofutil::ReadFile(dir / "diff.html");
  ASSERT_TRUE(html.ok());
  EXPECT_TRUE(html->starts_with("<!doctype html>"));
  EXPECT_NE(html->find("[\"c\",0,10000000,[]]"), std::string::npos);
  EXPECT_EQ(html->find("<script src"), std::string::npos) << "the page must be self-contained";
}

TEST(FlamestreamCli, BadArgumentsExit2NamingTheArgument) {
  TempDir dir;
  WriteSinkDir(dir);
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{"top", "--by", "bogus", dir / "out"}, "--by: bogus not in {self,total}"},
      {{"top", dir / "missing.pb.gz"}, dir / "missing.pb.gz" + ": no such file or directory"},
      {{"top", "--service", "nope", dir / "out"}, "no service 'nope' (services: cart, shop)"},
      {{"top", "--sample-type", "wall", dir / "out"}, "no sample type 'wall'"},
      {{"diff", dir / "out/shop"}, "AFTER is required"},
      {{"up", "--duration", "5x"}, "--duration 5x"},
      {{"up", "--frequency", "0"}, "--frequency: Value 0 not in range"},
      {{"topics", "create"}, "--brokers is required"},
      {{"nope"}, "unknown command 'nope'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args.front() + " " + c.needle);
    CliRun r = RunCli(c.args, /*merge_stderr=*/true);
    EXPECT_EQ(r.exit, 2);
    EXPECT_NE(r.output.find(c.needle), std::string::npos) << r.output;
  }
}

TEST(FlamestreamCli, HelpEverywhere) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--help"}, {"top", "--help"}, {"folded", "--help"},
        {"diff", "--help"}, {"up", "--help"}, {"topics", "create", "--help"},
        {"topics", "check", "--help"}}) {
    SCOPED_TRACE(args.front());
    CliRun r = RunCli(args);
    EXPECT_EQ(r.exit, 0);
    EXPECT_NE(r.output.find("Usage:"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace flamestream::cli_test
