#include "flamestream/sinks/file_sink.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "flamestream/pprofutil/profile_io.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/profile/test_batches.h"
#include "test_util.h"

namespace flamestream::exporter_test {
namespace {

namespace fs = std::filesystem;
using profile::testing::ExpectedOf;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Exports every window of `batches` through a FileSink the way the stage does (aggregator
// seeded through OnNewSeries).
void ExportAll(sinks::FileSink& sink, const std::vector<v1::SampleBatch>& batches) {
  profile::Aggregator agg({.labels = sink.labels(), .granularity = sink.granularity()});
  agg.set_new_series_hook([&](profile::Window& w, uint32_t s) { sink.OnNewSeries(w, s); });
  for (const auto& b : batches) (void)agg.Add(b);
  for (auto& w : agg.TakeAll()) ASSERT_TRUE(sink.Export(*w).ok());
}

TEST(FileSink, WritesGzipPprofPerServiceAndWindowAndFoldedEqualToInput) {
  TempDir dir;
  sinks::FileSink sink({.out_dir = dir.path()});
  const std::vector<v1::SampleBatch> batches = StandardBatches();
  ExportAll(sink, batches);

  const profile::testing::Expected want = ExpectedOf(batches);
  for (const auto& [service, folded] : want.folded) {
    SCOPED_TRACE(service);
    const std::string safe = sinks::SafeFileName(service);
    for (int64_t start : std::vector<int64_t>{kT0, kT0 + 10'000'000'000LL}) {
      const std::string path = sink.WindowPath(service, start);
      ASSERT_TRUE(fs::exists(path)) << path;
      const std::string bytes = Slurp(path);
      ASSERT_GE(bytes.size(), 2u);
      EXPECT_EQ(static_cast<uint8_t>(bytes[0]), 0x1f);  // gzip magic
      EXPECT_EQ(static_cast<uint8_t>(bytes[1]), 0x8b);
      EXPECT_TRUE(pprofutil::Gunzip(bytes).ok());
    }
    EXPECT_EQ(Slurp(dir.path() + "/" + safe + ".folded"), folded);
    EXPECT_TRUE(fs::exists(dir.path() + "/" + safe + ".html"));
  }
  // An unsafe service name becomes a slug plus a hash of the whole name, so "a/b" and "a_b"
  // never share a directory.
  EXPECT_EQ(sink.WindowPath("kworker/1:0", kT0),
            dir.path() + "/" + sinks::SafeFileName("kworker/1:0") + "/20231114T221320Z.pb.gz");
  EXPECT_TRUE(sinks::SafeFileName("kworker/1:0").starts_with("kworker_1_0-"));
  // No temporary files left behind.
  for (const auto& e : fs::recursive_directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  }
}

TEST(FileSink, RewritingAfterRestartIsExactlyOnce) {
  TempDir dir;
  const std::vector<v1::SampleBatch> batches = StandardBatches();
  {
    sinks::FileSink sink({.out_dir = dir.path()});
    ExportAll(sink, {batches[0], batches[1]});
  }
  // A restart re-reads uncommitted input: batch 1 again plus batch 2. The windows are rebuilt
  // from the files, batch 1 is dropped as a duplicate, and the result holds each batch once.
  sinks::FileSink sink({.out_dir = dir.path()});
  ExportAll(sink, {batches[1], batches[2]});
  const profile::testing::Expected want = ExpectedOf(batches);
  for (const auto& [service, folded] : want.folded) {
    SCOPED_TRACE(service);
    EXPECT_EQ(Slurp(dir.path() + "/" + sinks::SafeFileName(service) + ".folded"), folded);
  }
}

// Storage that goes away (read-only after an error, full) is the sink being down: the window
// is retried later (Unavailable), never dead-lettered, and lands once the storage is back.
TEST(FileSink, ReadOnlyOrFullStorageIsRetryableAndTheWindowLandsLater) {
  if (::geteuid() != 0) {
    if (std::getenv("CI") != nullptr) FAIL() << "CI runs as root: this test must run";
    GTEST_SKIP() << "needs root to mount a tmpfs";
  }
  TempDir dir;
  ASSERT_EQ(::mount("tmpfs", dir.path().c_str(), "tmpfs", 0, "size=4m"), 0) << std::strerror(errno);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{dir.path()};
  const std::vector<v1::SampleBatch> batches = StandardBatches();
  sinks::FileSink sink({.out_dir = dir.path()});
  profile::Aggregator agg({.labels = sink.labels(), .granularity = sink.granularity()});
  agg.set_new_series_hook([&](profile::Window& w, uint32_t s) { sink.OnNewSeries(w, s); });
  for (const auto& b : batches) (void)agg.Add(b);
  auto windows = agg.TakeAll();
  ASSERT_FALSE(windows.empty());

  ASSERT_EQ(::mount(nullptr, dir.path().c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr), 0)
      << std::strerror(errno);
  Status down = sink.Export(*windows[0]);
  EXPECT_EQ(down.code(), StatusCode::kUnavailable) << down;
  EXPECT_TRUE(sinks::IsRetryable(down)) << down;
  EXPECT_TRUE(sink.failed_series().empty());  // nothing refused for good

  // Full: a 4 MiB tmpfs filled to the last byte.
  ASSERT_EQ(::mount(nullptr, dir.path().c_str(), nullptr, MS_REMOUNT, "size=4m"), 0);
  {
    std::ofstream fill(dir.path() + "/fill", std::ios::binary);
    const std::string chunk(1 << 16, 'x');
    while (fill.write(chunk.data(), chunk.size())) {
    }
  }
  Status full = sink.Export(*windows[0]);
  EXPECT_TRUE(sinks::IsRetryable(full)) << full;

  fs::remove(dir.path() + "/fill");
  for (auto& w : windows) ASSERT_TRUE(sink.Export(*w).ok());
  const profile::testing::Expected want = ExpectedOf(batches);
  for (const auto& [service, folded] : want.folded) {
    EXPECT_EQ(Slurp(dir.path() + "/" + sinks::SafeFileName(service) + ".folded"), folded)
        << service;
  }
}

TEST(FileSink, ReplayEpochReplacesOlderEpochAndNeverTheReverse) {
  TempDir dir;
  sinks::FileSink sink({.out_dir = dir.path()});
  v1::SampleBatch live = profile::testing::MakeCorrelatedBatch(
      {.sequence = 1, .samples = 300, .start_ns = kT0, .spread_ns = 1'000'000'000});
  v1::SampleBatch replay = profile::testing::MakeCorrelatedBatch({.sequence = 1,
                                                                  .samples = 200,
                                                                  .start_ns = kT0,
                                                                  .spread_ns = 1'000'000'000,
                                                                  .seed = 2,
                                                                  .symbol_epoch = 1});
  ExportAll(sink, {live});
  ExportAll(sink, {replay});  // same batch id, new epoch: replaces, not merged, not deduped
  const std::string folded_path = dir.path() + "/checkout-svc.folded";
  EXPECT_EQ(Slurp(folded_path), ExpectedOf({replay}).folded.at("checkout-svc"));
  ExportAll(sink, {live});  // epoch 0 after epoch 1: ignored
  EXPECT_EQ(Slurp(folded_path), ExpectedOf({replay}).folded.at("checkout-svc"));
}

TEST(FileSink, PprofDecodesWithThirdPartyDecoder) {
  const char* node_dir = std::getenv("FS_EXPORTER_NODE_DIR");
  ASSERT_NE(node_dir, nullptr) << "FS_EXPORTER_NODE_DIR not set (run through ctest)";
  TempDir dir;
  sinks::FileSink sink({.out_dir = dir.path(), .views = false});
  const std::vector<v1::SampleBatch> batches = StandardBatches();
  ExportAll(sink, batches);
  const profile::testing::Expected want = ExpectedOf(batches);

  int64_t count = 0, nanos = 0;
  for (int64_t start : std::vector<int64_t>{kT0, kT0 + 10'000'000'000LL}) {
    Result<std::string> out = RunCommand({"node", std::string(node_dir) + "/decode_pprof.mjs",
                                          sink.WindowPath("checkout-svc", start)});
    ASSERT_TRUE(out.ok()) << out.status();
    SCOPED_TRACE(*out);
    EXPECT_NE(out->find(R"x("sampleTypes":["samples/count","cpu/nanoseconds"])x"),
              std::string::npos);
    EXPECT_NE(out->find(R"x("periodType":"cpu/nanoseconds")x"), std::string::npos);
    EXPECT_NE(out->find(R"x("durationNanos":10000000000)x"), std::string::npos);
    EXPECT_NE(out->find(R"x("labelKeys":["span_id","span_name","thread_name","trace_id"])x"),
              std::string::npos);
    EXPECT_NE(out->find(R"x("Handle(Request const&)")x"), std::string::npos);
    EXPECT_NE(out->find(R"x("libc.so.6+0x29d90")x"), std::string::npos);
    EXPECT_NE(out->find(R"x("101112131415161718191a1b1c1d1e1f20212223")x"), std::string::npos);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(*out, m, std::regex(R"re("totals":\[(\d+),(\d+)\])re")));
    count += std::stoll(m[1]);
    nanos += std::stoll(m[2]);
  }
  EXPECT_EQ(count, want.count.at("checkout-svc"));
  EXPECT_EQ(nanos, want.nanos.at("checkout-svc"));
}

std::string Chromium(const std::string& url, const std::string& profile_dir) {
  Result<std::string> dom =
      RunCommand({"chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--user-data-dir=" + profile_dir, "--virtual-time-budget=5000",
                  "--dump-dom", url},
                 std::chrono::seconds(90), /*merge_stderr=*/false);
  EXPECT_TRUE(dom.ok()) << dom.status();
  return dom.ok() ? *dom : "";
}

int64_t DataTotal(const std::string& dom) {
  const size_t chart = dom.find("id=\"chart\"");
  if (chart == std::string::npos) return -1;
  const std::string_view key = "data-total=\"";
  const size_t at = dom.find(key, chart);
  if (at == std::string::npos || at > dom.find('>', chart)) return -1;
  return std::stoll(dom.substr(at + key.size(), 20));
}

TEST(FileSink, FlameGraphPageRendersOfflineAndSpanFilterNarrows) {
  TempDir dir;
  sinks::FileSink sink({.out_dir = dir.path()});
  const std::vector<v1::SampleBatch> batches = StandardBatches();
  ExportAll(sink, batches);
  const profile::testing::Expected want = ExpectedOf(batches);
  const std::string page = dir.path() + "/checkout-svc.html";
  const std::string html = Slurp(page);
  // Self-contained: no external scripts or stylesheets.
  EXPECT_EQ(html.find("<script src"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);

  const std::string all = Chromium("file://" + page, dir.path() + "/chrome1");
  EXPECT_EQ(DataTotal(all), want.count.at("checkout-svc")) << all.substr(0, 2000);
  for (const char* fn : {"main", "Handle(Request const&)", "Parse", "Hash", "ksys_read",
                         "libc.so.6+0x29d90", "__memcpy_avx_unaligned"}) {
    // The serialized DOM escapes '&' in attribute values.
    const std::string attr =
        "name=\"" + std::regex_replace(std::string(fn), std::regex("&"), "&amp;") + "\"";
    EXPECT_NE(all.find(attr), std::string::npos) << attr;
  }
  EXPECT_NE(all.find("<option value=\"GET /checkout\">"), std::string::npos);

  const std::string filtered =
      Chromium("file://" + page + "#span=GET%20%2Fcheckout", dir.path() + "/chrome2");
  EXPECT_EQ(DataTotal(filtered), want.span_count.at("GET /checkout"));
  EXPECT_LT(DataTotal(filtered), DataTotal(all));
  EXPECT_NE(filtered.find("name=\"main\""), std::string::npos);
}

}  // namespace
}  // namespace flamestream::exporter_test

namespace flamestream::exporter_test {
namespace {

// share/flamestream: a configured template wins, then $FLAMESTREAM_SHARE_DIR, then the build's
// own copy next to bin/, and the page is rendered from whichever was found.
TEST(FileSinkTemplate, LooksUpShareDirAndRendersFromIt) {
  TempDir dir;
  const std::string custom = dir.path() + "/custom.html";
  { std::ofstream(custom) << "<title>__FLAMESTREAM_TITLE__</title><x>__FLAMESTREAM_DATA__</x>"; }
  std::string source;
  Result<std::string> t = sinks::LoadPageTemplate(custom, &source);
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(source, custom);

  sinks::FileSink sink({.out_dir = dir.path() + "/out", .page_template = *t});
  ExportAll(sink, StandardBatches());
  const std::string html = Slurp(dir.path() + "/out/checkout-svc.html");
  EXPECT_TRUE(html.starts_with("<title>checkout-svc</title><x>{\"title\":\"checkout-svc\""))
      << html.substr(0, 200);

  // A template without the data placeholder is a config error naming the key.
  const std::string broken = dir.path() + "/broken.html";
  { std::ofstream(broken) << "<html></html>"; }
  t = sinks::LoadPageTemplate(broken, &source);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message().find("exporter.file.page_template"), std::string::npos);
  t = sinks::LoadPageTemplate(dir.path() + "/missing.html", &source);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message().find("exporter.file.page_template"), std::string::npos);

  // $FLAMESTREAM_SHARE_DIR/flamegraph.html when nothing is configured.
  fs::create_directories(dir.path() + "/share");
  fs::copy_file(custom, dir.path() + "/share/flamegraph.html");
  ASSERT_EQ(::setenv("FLAMESTREAM_SHARE_DIR", (dir.path() + "/share").c_str(), 1), 0);
  t = sinks::LoadPageTemplate("", &source);
  ::unsetenv("FLAMESTREAM_SHARE_DIR");
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(source, dir.path() + "/share/flamegraph.html");

  // The build tree holds the bundled template where an installed exporter finds it:
  // <build>/bin/../share/flamestream/flamegraph.html.
  const std::string built = std::string(FS_BUILD_DIR) + "/share/flamestream/flamegraph.html";
  ASSERT_TRUE(fs::exists(built)) << built;
  EXPECT_NE(Slurp(built).find("__FLAMESTREAM_DATA__"), std::string::npos);
}

}  // namespace
}  // namespace flamestream::exporter_test
