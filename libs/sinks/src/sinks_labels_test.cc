// Hardening of the sinks against unbounded labels: filesystem-safe service directories, one
// refused series not failing its window, sanitized Pyroscope labels, file-sink retention.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "flamestream/batch/batch.h"
#include "flamestream/profile/labels.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/profile/test_batches.h"
#include "flamestream/sinks/file_sink.h"
#include "flamestream/sinks/pyroscope_sink.h"
#include "push_server.h"
#include "test_util.h"

namespace flamestream::exporter_test {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kSec = 1'000'000'000;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A 256-byte and a 10 KiB service name with '/', "..", control characters and a NUL.
std::string Nasty(size_t size, char fill) {
  std::string s = std::string("../etc/passwd\x01\n\t") + std::string(1, '\0') + "svc/";
  s += std::string(size - s.size(), fill);
  return s;
}

// Batches whose first process (pid 100) has `service`; other processes keep the test names
// ("worker", "kworker/1:0").
std::vector<v1::SampleBatch> BatchesWithService(const std::vector<std::string>& services,
                                                int64_t start_ns = kT0 + kSec) {
  std::vector<v1::SampleBatch> out;
  uint64_t seq = 1;
  for (const std::string& service : services) {
    v1::SampleBatch b = profile::testing::MakeCorrelatedBatch(
        {.sequence = seq++, .samples = 400, .start_ns = start_ns, .spread_ns = 2 * kSec});
    b.mutable_processes(0)->set_service_name(service);
    EXPECT_TRUE(batch::Validate(b).ok());
    out.push_back(std::move(b));
  }
  return out;
}

std::set<std::string> Entries(const fs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.insert(e.path().filename().string());
  return out;
}

std::string FoldedOfService(const profile::Window& w, const std::string& service) {
  Result<std::vector<profile::FoldedStack>> f =
      profile::Fold(profile::EncodePprof(w, w.SeriesOf(service), {}));
  EXPECT_TRUE(f.ok());
  return f.ok() ? profile::FoldedText(*f) : "";
}

TEST(SafeFileName, KeepsSafeNamesAndHashesTheRest) {
  EXPECT_EQ(sinks::SafeFileName("checkout-svc"), "checkout-svc");
  EXPECT_EQ(sinks::SafeFileName("a.b_c-1"), "a.b_c-1");
  EXPECT_EQ(sinks::SafeFileName("kworker/1:0"), "kworker_1_0-" + profile::ShortHash("kworker/1:0"));
  EXPECT_EQ(sinks::SafeFileName(".."), "_.-" + profile::ShortHash(".."));
  EXPECT_EQ(sinks::SafeFileName(""), "-" + profile::ShortHash(""));
  // "a/b" and "a_b" never share a directory.
  EXPECT_NE(sinks::SafeFileName("a/b"), sinks::SafeFileName("a_b"));
  const std::string big = Nasty(10 * 1024, 'x');
  const std::string safe = sinks::SafeFileName(big);
  EXPECT_EQ(safe.size(), sinks::kMaxSafeFileName);
  EXPECT_EQ(safe, "_._etc_passwd____svc_" + std::string(sinks::kMaxSafeFileName - 9 - 21, 'x') + "-" +
                      profile::ShortHash(big));
  EXPECT_EQ(sinks::SafeFileName(big), safe);  // deterministic
}

// A 256-byte and a 10 KiB service.name with '/' and control characters: the window is written
// under safe directories with the page, nothing is refused; two long names sharing their first
// KiB stay two series and two directories.
TEST(FileSinkLabels, LongServiceNamesGetSafeDirectoriesAndPages) {
  TempDir dir;
  const std::string n256 = Nasty(256, 'a');
  const std::string n10k_1 = Nasty(10 * 1024, 'b') + "-one";
  const std::string n10k_2 = Nasty(10 * 1024, 'b') + "-two";
  sinks::FileSink sink({.out_dir = dir.path()});
  auto windows = Aggregate(BatchesWithService({n256, n10k_1, n10k_2}),
                           {.labels = sink.labels(), .granularity = sink.granularity()});
  ASSERT_EQ(windows.size(), 1u);
  const profile::Window& w = *windows[0];
  const profile::LabelSanitizer ref;  // the aggregator's defaults (1024 bytes)
  const std::string s256 = ref.Value(n256);
  const std::string s1 = ref.Value(n10k_1);
  const std::string s2 = ref.Value(n10k_2);
  EXPECT_EQ(s256, std::string("../etc/passwd") + "svc/" + std::string(256 - 21, 'a'));
  EXPECT_EQ(s1.size(), 1024u);
  EXPECT_NE(s1, s2);
  std::vector<std::string> want_services = {s256, s1, s2, "kworker/1:0", "worker"};
  std::sort(want_services.begin(), want_services.end());
  EXPECT_EQ(w.Services(), want_services);

  Status st = sink.Export(w);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_TRUE(sink.failed_series().empty());
  const std::string stem = profile::WindowFileStem(w.start_ns) + ".pb.gz";
  std::set<std::string> want_entries;
  for (const std::string& service : w.Services()) {
    const std::string safe = sinks::SafeFileName(service);
    EXPECT_LE(safe.size(), sinks::kMaxSafeFileName);
    EXPECT_EQ(safe.find('/'), std::string::npos);
    want_entries.insert(safe);
    want_entries.insert(safe + ".html");
    want_entries.insert(safe + ".folded");
    EXPECT_EQ(Entries(fs::path(dir.path()) / safe), std::set<std::string>{stem}) << service;
    EXPECT_EQ(Slurp(fs::path(dir.path()) / (safe + ".folded")), FoldedOfService(w, service));
    const std::string page = Slurp(fs::path(dir.path()) / (safe + ".html"));
    EXPECT_EQ(page.find("__FLAMESTREAM_DATA__"), std::string::npos);
    EXPECT_GT(page.size(), 1000u);
  }
  EXPECT_EQ(want_entries.size(), 15u);  // 5 distinct dirs
  EXPECT_EQ(Entries(dir.path()), want_entries);
  // Nothing escaped the output directory.
  EXPECT_FALSE(fs::exists(fs::path(dir.path()).parent_path() / "etc"));
}

// A service whose directory cannot be made fails only its own series.
TEST(FileSinkLabels, OneUnwritableServiceFailsOnlyItsSeries) {
  TempDir dir;
  sinks::FileSink sink({.out_dir = dir.path()});
  auto windows = Aggregate(StandardBatches(), {.labels = sink.labels(), .granularity = sink.granularity()});
  ASSERT_EQ(windows.size(), 2u);
  const profile::Window& w = *windows[0];
  { std::ofstream(fs::path(dir.path()) / "worker") << "not a directory"; }  // mkdir fails
  Status st = sink.Export(w);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(sink.failed_series().size(), 1u);
  EXPECT_EQ(sink.failed_series()[0].series, w.SeriesOf("worker"));
  EXPECT_FALSE(sink.failed_series()[0].status.ok());
  EXPECT_FALSE(sinks::IsRetryable(sink.failed_series()[0].status));
  const std::string stem = profile::WindowFileStem(w.start_ns) + ".pb.gz";
  EXPECT_TRUE(fs::exists(fs::path(dir.path()) / "checkout-svc" / stem));
  EXPECT_TRUE(fs::exists(fs::path(dir.path()) / sinks::SafeFileName("kworker/1:0") / stem));
  EXPECT_TRUE(fs::exists(fs::path(dir.path()) / "checkout-svc.html"));
  EXPECT_FALSE(fs::exists(fs::path(dir.path()) / "worker.html"));
  // Through the queue: the window is done, OK, with the refused series attached.
  sinks::DeliveryQueue queue(sink, {});
  queue.Push(std::move(windows[1]));
  std::vector<sinks::DeliveryQueue::Done> done = queue.Pump(std::chrono::steady_clock::now());
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].status.ok());
  ASSERT_EQ(done[0].failed_series.size(), 1u);
  EXPECT_EQ(done[0].failed_series[0].series, done[0].window->SeriesOf("worker"));
}

// Windows kT0 + k*10s, k = 0..n-1.
std::vector<std::unique_ptr<profile::Window>> Windows(int n, const sinks::FileSink& sink) {
  std::vector<v1::SampleBatch> batches;
  for (int k = 0; k < n; ++k) {
    batches.push_back(profile::testing::MakeCorrelatedBatch(
        {.sequence = static_cast<uint64_t>(k + 1), .samples = 300, .start_ns = kT0 + k * 10 * kSec + kSec,
         .spread_ns = 2 * kSec}));
  }
  return Aggregate(batches, {.labels = sink.labels(), .granularity = sink.granularity()});
}

// Files of one window, across services, and their total size.
std::set<std::string> FilesOf(const std::string& out, int64_t start_ns, uint64_t* bytes = nullptr) {
  std::set<std::string> files;
  const std::string name = profile::WindowFileStem(start_ns) + ".pb.gz";
  for (const auto& d : fs::directory_iterator(out)) {
    if (!d.is_directory()) continue;
    const fs::path p = d.path() / name;
    if (fs::exists(p)) {
      files.insert(p.string());
      if (bytes != nullptr) *bytes += fs::file_size(p);
    }
  }
  return files;
}

void Age(const std::set<std::string>& files, std::chrono::seconds by) {
  for (const std::string& f : files) fs::last_write_time(f, fs::file_time_type::clock::now() - by);
}

TEST(FileSinkRetention, DeletesByAgeButNeverTheCurrentWindowAndKeepsPagesConsistent) {
  TempDir dir;
  sinks::FileSink sink({.out_dir = dir.path(), .retention = {.max_age = std::chrono::hours(24), .max_bytes = 0}});
  auto windows = Windows(3, sink);
  ASSERT_EQ(windows.size(), 3u);
  ASSERT_TRUE(sink.Export(*windows[0]).ok());
  ASSERT_TRUE(sink.Export(*windows[1]).ok());
  const std::set<std::string> w0 = FilesOf(dir.path(), windows[0]->start_ns);
  const std::set<std::string> w1 = FilesOf(dir.path(), windows[1]->start_ns);
  ASSERT_EQ(w0.size(), 3u);
  ASSERT_EQ(w1.size(), 3u);
  Age(w0, std::chrono::hours(25));  // past max_age
  Age(w1, std::chrono::hours(23));  // not yet
  // The current window's own files are old too (a rewrite): they are never deleted.
  ASSERT_TRUE(sink.Export(*windows[2]).ok());
  const std::set<std::string> w2 = FilesOf(dir.path(), windows[2]->start_ns);
  Age(w2, std::chrono::hours(48));
  ASSERT_TRUE(sink.Export(*windows[2]).ok());
  EXPECT_EQ(sink.deleted_files(), 3u);
  EXPECT_TRUE(FilesOf(dir.path(), windows[0]->start_ns).empty());
  EXPECT_EQ(FilesOf(dir.path(), windows[1]->start_ns), w1);
  EXPECT_EQ(FilesOf(dir.path(), windows[2]->start_ns), w2);
  // The views cover only the windows left: folded = windows 1 + 2.
  std::vector<profile::FoldedStack> want;
  for (int k : {1, 2}) {
    auto f = profile::Fold(profile::EncodePprof(*windows[k], windows[k]->SeriesOf("worker"), {}));
    ASSERT_TRUE(f.ok());
    want.insert(want.end(), f->begin(), f->end());
  }
  EXPECT_EQ(Slurp(fs::path(dir.path()) / "worker.folded"), profile::FoldedText(want));
  const std::vector<sinks::SinkCounter> counters = sink.Counters();
  ASSERT_EQ(counters.size(), 1u);
  EXPECT_EQ(counters[0].name, "fs_file_sink_deleted_files_total");
  EXPECT_EQ(counters[0].value, 3u);
}

TEST(FileSinkRetention, DeletesOldestFirstBySizeAndRemovesEmptyServices) {
  TempDir dir;
  sinks::FileSink writer({.out_dir = dir.path(), .retention = {.max_age = {}, .max_bytes = 0}});
  auto windows = Windows(3, writer);
  // A service that only ever had one window, the oldest: its directory and views go with it.
  auto lone = Aggregate(BatchesWithService({"lone-svc"}, kT0 - 100 * kSec),
                        {.labels = writer.labels(), .granularity = writer.granularity()});
  ASSERT_TRUE(writer.Export(*lone[0]).ok());
  uint64_t b[3] = {0, 0, 0};
  for (int k = 0; k < 3; ++k) ASSERT_TRUE(writer.Export(*windows[k]).ok());
  EXPECT_EQ(writer.deleted_files(), 0u);  // unlimited
  Age(FilesOf(dir.path(), lone[0]->start_ns), std::chrono::hours(4));
  for (int k = 0; k < 3; ++k) {
    Age(FilesOf(dir.path(), windows[k]->start_ns, &b[k]), std::chrono::hours(3 - k));
  }
  ASSERT_TRUE(fs::exists(fs::path(dir.path()) / "lone-svc.html"));

  // Room for exactly windows 1 and 2: the lone window and window 0 (oldest first) go.
  sinks::FileSink sink({.out_dir = dir.path(), .retention = {.max_age = {}, .max_bytes = b[1] + b[2]}});
  EXPECT_EQ(sink.ApplyRetention(profile::WindowFileStem(windows[2]->start_ns)), 6u);
  EXPECT_EQ(sink.deleted_files(), 6u);
  EXPECT_TRUE(FilesOf(dir.path(), lone[0]->start_ns).empty());
  EXPECT_TRUE(FilesOf(dir.path(), windows[0]->start_ns).empty());
  EXPECT_EQ(FilesOf(dir.path(), windows[1]->start_ns).size(), 3u);
  EXPECT_EQ(FilesOf(dir.path(), windows[2]->start_ns).size(), 3u);
  EXPECT_FALSE(fs::exists(fs::path(dir.path()) / "lone-svc"));
  EXPECT_FALSE(fs::exists(fs::path(dir.path()) / "lone-svc.html"));
  EXPECT_FALSE(fs::exists(fs::path(dir.path()) / "lone-svc.folded"));
  std::vector<profile::FoldedStack> want;
  for (int k : {1, 2}) {
    auto f = profile::Fold(profile::EncodePprof(*windows[k], windows[k]->SeriesOf("worker"), {}));
    ASSERT_TRUE(f.ok());
    want.insert(want.end(), f->begin(), f->end());
  }
  EXPECT_EQ(Slurp(fs::path(dir.path()) / "worker.folded"), profile::FoldedText(want));
  // Within the cap now: nothing more goes.
  EXPECT_EQ(sink.ApplyRetention(profile::WindowFileStem(windows[2]->start_ns)), 0u);

  // A cap smaller than the window being written: everything else goes, that window stays.
  sinks::FileSink tight({.out_dir = dir.path(), .retention = {.max_age = {}, .max_bytes = 1}});
  ASSERT_TRUE(tight.Export(*windows[2]).ok());
  EXPECT_EQ(tight.deleted_files(), 3u);
  EXPECT_TRUE(FilesOf(dir.path(), windows[1]->start_ns).empty());
  EXPECT_EQ(FilesOf(dir.path(), windows[2]->start_ns).size(), 3u);
  EXPECT_EQ(Slurp(fs::path(dir.path()) / "worker.folded"), FoldedOfService(*windows[2], "worker"));
}

bool ValidName(const std::string& n) {
  static const std::regex re("[a-zA-Z_][a-zA-Z0-9_]*");
  return std::regex_match(n, re);
}
bool HasControl(const std::string& v) {
  for (const char c : v) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// Pyroscope receives sanitized names and values within the caps; a series it refuses (400 for
// service "worker") fails alone, the others are delivered.
TEST(PyroscopeSinkLabels, SanitizedLabelsAndOneRefusedSeries) {
  PushServer server([](const PushServer::Seen& s) {
    for (const auto& series : s.push->series()) {
      for (const auto& l : series.labels()) {
        if (l.name() == "service_name" && l.value() == "worker") {
          return PushServer::Answer{.status = 400, .body = "invalid labels"};
        }
      }
    }
    return PushServer::Answer{};
  });
  sinks::PyroscopeConfig cfg{.url = server.url()};
  cfg.labels = {{"team.name", "a\x01" "b"}, {"env", std::string(5000, 'e')}, {"service_name", "spoof"}};
  for (int i = 0; i < 30; ++i) cfg.labels[fmt::format("x{:02}", i)] = "v";
  sinks::PyroscopeSink sink(cfg);
  const std::string big = Nasty(10 * 1024, 'p');
  auto windows = Aggregate(BatchesWithService({big}),
                           {.labels = sink.labels(), .granularity = sink.granularity()});
  ASSERT_EQ(windows.size(), 1u);
  const profile::Window& w = *windows[0];
  ASSERT_EQ(w.series.size(), 3u);
  Status st = sink.Export(w);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(sink.failed_series().size(), 1u);
  EXPECT_EQ(sink.failed_series()[0].series, w.SeriesOf("worker"));
  EXPECT_EQ(sink.failed_series()[0].response.status, 400);
  EXPECT_EQ(sink.failed_series()[0].response.body, "invalid labels");
  EXPECT_EQ(sink.failed_series()[0].status.code(), StatusCode::kFailedPrecondition);
  // One request of 3 series (refused), then each alone: 2 accepted, worker refused.
  EXPECT_EQ(server.log().size(), 4u);
  const std::vector<push::v1::PushRequest> accepted = server.accepted();
  std::map<std::string, int64_t> count;
  for (const PushedSeries& s : DecodePushes(accepted)) count[s.service] += s.count;
  const profile::LabelSanitizer ref;
  const std::string want_service = ref.Value(big);
  profile::testing::Expected want = profile::testing::ExpectedOf(BatchesWithService({big}));
  EXPECT_EQ(count, (std::map<std::string, int64_t>{{want_service, want.count.at(big)},
                                                   {"kworker/1:0", want.count.at("kworker/1:0")}}));
  for (const auto& push : accepted) {
    for (const auto& series : push.series()) {
      std::map<std::string, std::string> labels;
      for (const auto& l : series.labels()) {
        EXPECT_TRUE(ValidName(l.name())) << l.name();
        EXPECT_LE(l.value().size(), 1024u);
        EXPECT_FALSE(HasControl(l.value())) << l.name();
        labels[l.name()] = l.value();
      }
      EXPECT_LE(labels.size(), 30u);
      size_t configured = 0;
      for (const auto& [name, value] : labels) configured += name == "env" || name == "team_name" || name[0] == 'x';
      EXPECT_EQ(configured, 23u);  // 30 - 7 built-in slots
      EXPECT_TRUE(labels.contains("x20"));
      EXPECT_FALSE(labels.contains("x21"));
      EXPECT_EQ(labels.at("team_name"), "ab");
      EXPECT_EQ(labels.at("env"), std::string(1015, 'e') + "~" + profile::ShortHash(std::string(5000, 'e')));
      EXPECT_NE(labels.at("service_name"), "spoof");
      EXPECT_TRUE(labels.contains("x00"));
      EXPECT_FALSE(labels.contains("x29"));
    }
  }
  // Counted once, at construction: team.name (name + control), env (too long), service_name
  // (dropped: built-in), 32 configured labels for 23 slots (9 dropped).
  std::map<std::string, uint64_t> changed;
  for (const sinks::SinkCounter& c : sink.Counters()) changed[c.labels.at(0).second] = c.value;
  EXPECT_EQ(changed["invalid_name"], 2u);
  EXPECT_EQ(changed["control_chars"], 1u);
  EXPECT_EQ(changed["too_long"], 1u);
  EXPECT_EQ(changed["too_many_labels"], 9u);
  EXPECT_EQ(changed["invalid_utf8"], 0u);
}

// Every series refused: the window fails as a whole (the DLQ takes all of it), as before.
TEST(PyroscopeSinkLabels, EverySeriesRefusedFailsTheWindow) {
  PushServer server([](const PushServer::Seen&) { return PushServer::Answer{.status = 400, .body = "no"}; });
  sinks::PyroscopeSink sink({.url = server.url()});
  auto windows = Aggregate(StandardBatches(), {.labels = sink.labels(), .granularity = sink.granularity()});
  Status st = sink.Export(*windows[0]);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(sink.failed_series().empty());
  EXPECT_EQ(sink.last_response().status, 400);
  EXPECT_TRUE(server.accepted().empty());
}

}  // namespace
}  // namespace flamestream::exporter_test
