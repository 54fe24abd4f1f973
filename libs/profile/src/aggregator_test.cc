#include "flamestream/profile/aggregator.h"

#include <gtest/gtest.h>

#include <set>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/pprofutil/builder.h"
#include "flamestream/pprofutil/profile_io.h"
#include "flamestream/pprofutil/stacks.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/profile/test_batches.h"

namespace flamestream::profile {
namespace {

namespace pp = ::perftools::profiles;
using testing::BatchSpec;
using testing::ExpectedOf;
using testing::MakeCorrelatedBatch;

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kT0 = 1'700'000'000 * kSec;  // aligned to 10 s

std::string FoldedOf(const Window& w, const std::string& service, LabelPolicy labels = {}) {
  pp::Profile p = EncodePprof(w, w.SeriesOf(service), {.labels = labels});
  Result<std::vector<FoldedStack>> f = Fold(p);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? FoldedText(*f) : "";
}

std::set<std::string> LabelKeys(const pp::Profile& p) {
  std::set<std::string> keys;
  for (const pp::Sample& s : p.sample()) {
    for (const pp::Label& l : s.label()) keys.insert(p.string_table(static_cast<int>(l.key())));
  }
  return keys;
}

TEST(Aggregator, FoldedStacksPerServiceEqualInput) {
  std::vector<v1::SampleBatch> batches;
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    batches.push_back(
        MakeCorrelatedBatch({.sequence = seq, .samples = 700, .start_ns = kT0 + kSec}));
    ASSERT_TRUE(batch::Validate(batches.back()).ok()) << batch::Validate(batches.back());
  }
  Aggregator agg({.window = std::chrono::seconds(10), .granularity = SeriesGranularity::kService});
  for (const auto& b : batches) {
    AddResult r = agg.Add(b);
    EXPECT_EQ(r.added, 700);
    EXPECT_EQ(r.duplicates, 0);
    EXPECT_EQ(r.windows, std::vector<int64_t>{kT0});
  }
  testing::Expected want = ExpectedOf(batches);
  std::vector<std::unique_ptr<Window>> closed = agg.TakeAll();
  ASSERT_EQ(closed.size(), 1u);
  const Window& w = *closed[0];
  EXPECT_EQ(w.Services(), (std::vector<std::string>{"checkout-svc", "kworker/1:0", "worker"}));
  ASSERT_EQ(want.folded.size(), 3u);
  for (const auto& [service, folded] : want.folded) {
    SCOPED_TRACE(service);
    EXPECT_EQ(FoldedOf(w, service), folded);
    pp::Profile p = EncodePprof(w, w.SeriesOf(service));
    int64_t count = 0, nanos = 0;
    for (const pp::Sample& s : p.sample()) {
      count += s.value(0);
      nanos += s.value(1);
    }
    EXPECT_EQ(count, want.count.at(service));
    EXPECT_EQ(nanos, want.nanos.at(service));
  }
  EXPECT_EQ(w.Total().count, want.total_count);
  EXPECT_EQ(w.Total().nanos, want.total_nanos);
}

TEST(Aggregator, FrameNamingCoversEveryFrameKind) {
  Aggregator agg({.granularity = SeriesGranularity::kService});
  (void)agg.Add(MakeCorrelatedBatch({.samples = 2000, .start_ns = kT0}));
  std::vector<std::unique_ptr<Window>> ws = agg.TakeAll();
  ASSERT_EQ(ws.size(), 1u);
  const std::string folded = FoldedOf(*ws[0], "checkout-svc");
  // Root first; the inlined Parse is below its caller Handle; unresolved frames are named
  // basename+0xoffset; kernel frames by their kallsyms symbol; no mapping -> 0x<address>.
  EXPECT_NE(
      folded.find("libc.so.6+0x29d90;checkout+0x1010;main;Handle(Request const&);Parse;Hash "),
      std::string::npos)
      << folded;
  EXPECT_NE(folded.find(";Parse;entry_SYSCALL_64;ksys_read "), std::string::npos) << folded;
  EXPECT_NE(folded.find("main;0x7f0000001234 "), std::string::npos) << folded;

  pp::Profile p = EncodePprof(*ws[0], ws[0]->SeriesOf("checkout-svc"));
  auto str = [&](int64_t i) { return p.string_table(static_cast<int>(i)); };
  EXPECT_EQ(str(p.sample_type(0).type()), "samples");
  EXPECT_EQ(str(p.sample_type(0).unit()), "count");
  EXPECT_EQ(str(p.sample_type(1).type()), "cpu");
  EXPECT_EQ(str(p.sample_type(1).unit()), "nanoseconds");
  EXPECT_EQ(str(p.period_type().type()), "cpu");
  EXPECT_EQ(p.period(), 1'000'000'000 / 99);
  EXPECT_EQ(p.time_nanos(), kT0);
  EXPECT_EQ(p.duration_nanos(), 10 * kSec);
  // Build ids as hex; the kernel frames without a mapping got the kernel mapping.
  std::set<std::string> files, build_ids;
  for (const pp::Mapping& m : p.mapping()) {
    files.insert(str(m.filename()));
    build_ids.insert(str(m.build_id()));
  }
  EXPECT_EQ(files,
            (std::set<std::string>{"/usr/bin/checkout", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                                   "[kernel.kallsyms]"}));
  EXPECT_TRUE(build_ids.count("101112131415161718191a1b1c1d1e1f20212223")) << *build_ids.begin();
  // An inlined location: Line[0] is the callee.
  bool found_inline = false;
  for (const pp::Location& l : p.location()) {
    if (l.line_size() == 2) {
      found_inline = true;
      const pp::Function& callee = p.function(static_cast<int>(l.line(0).function_id()) - 1);
      EXPECT_EQ(str(callee.name()), "Parse");
      EXPECT_EQ(str(callee.filename()), "parse.h");
      EXPECT_EQ(l.line(0).line(), 12);
    }
  }
  EXPECT_TRUE(found_inline);
}

TEST(Aggregator, DropsDuplicateBatchIdsPerWindow) {
  v1::SampleBatch b = MakeCorrelatedBatch(
      {.sequence = 9, .samples = 100, .start_ns = kT0 + 9 * kSec, .spread_ns = 2 * kSec});
  Aggregator agg({});
  AddResult first = agg.Add(b);
  EXPECT_EQ(first.added, 100);
  EXPECT_EQ(first.windows, (std::vector<int64_t>{kT0, kT0 + 10 * kSec}));
  AddResult again = agg.Add(b);
  EXPECT_EQ(again.added, 0);
  EXPECT_EQ(again.duplicates, 100);
  int64_t total = 0;
  for (auto& w : agg.TakeAll()) total += w->Total().count;
  EXPECT_EQ(total, 100);
}

TEST(Aggregator, TakeClosedReturnsOnlyEndedWindowsOldestFirst) {
  Aggregator agg({});
  (void)agg.Add(MakeCorrelatedBatch({.sequence = 1, .samples = 10, .start_ns = kT0 + 25 * kSec}));
  (void)agg.Add(MakeCorrelatedBatch({.sequence = 2, .samples = 10, .start_ns = kT0 + 3 * kSec}));
  EXPECT_EQ(agg.open_windows(), 2u);
  EXPECT_TRUE(agg.TakeClosed(kT0 + 10 * kSec - 1).empty());
  std::vector<std::unique_ptr<Window>> c = agg.TakeClosed(kT0 + 29 * kSec);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0]->start_ns, kT0);
  c = agg.TakeClosed(kT0 + 30 * kSec);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0]->start_ns, kT0 + 20 * kSec);
}

TEST(Aggregator, LabelPolicyLimitsLabels) {
  struct Case {
    const char* name;
    LabelPolicy policy;
    std::set<std::string> keys;
  };
  const Case cases[] = {
      {"full", LabelPolicy::Full(), {"span_id", "trace_id", "span_name", "thread_name"}},
      {"pyroscope", LabelPolicy::Pyroscope(false), {"span_id"}},
      {"pyroscope+name", LabelPolicy::Pyroscope(true), {"span_id", "span_name"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Aggregator agg({.labels = c.policy});
    (void)agg.Add(MakeCorrelatedBatch({.samples = 500, .start_ns = kT0}));
    auto ws = agg.TakeAll();
    pp::Profile p = EncodePprof(*ws[0], ws[0]->SeriesOf(""), {.labels = c.policy});
    EXPECT_EQ(LabelKeys(p), c.keys);
    for (const pp::Sample& s : p.sample()) {
      for (const pp::Label& l : s.label()) {
        const std::string& k = p.string_table(static_cast<int>(l.key()));
        const std::string& v = p.string_table(static_cast<int>(l.str()));
        if (k == "span_id") {
          EXPECT_EQ(v.size(), 16u);
        }
        if (k == "trace_id") {
          EXPECT_EQ(v.size(), 32u);
        }
      }
    }
  }
}

TEST(Aggregator, SeriesSplitByHostAndContainer) {
  Aggregator agg({.granularity = SeriesGranularity::kServiceHost});
  (void)agg.Add(MakeCorrelatedBatch({.node = "node-1", .samples = 300, .start_ns = kT0}));
  (void)agg.Add(
      MakeCorrelatedBatch({.agent_id = "a2", .node = "node-2", .samples = 300, .start_ns = kT0}));
  auto ws = agg.TakeAll();
  ASSERT_EQ(ws.size(), 1u);
  EXPECT_EQ(ws[0]->series.size(), 6u);
  EXPECT_EQ(ws[0]->SeriesOf("checkout-svc").size(), 2u);
  for (uint32_t s : ws[0]->SeriesOf("checkout-svc")) {
    EXPECT_EQ(ws[0]->series[s].key.container_id, std::string(64, 'a'));
    EXPECT_EQ(ws[0]->series[s].key.pod_uid, "pod-1");
  }
}

// Removed labels merge the series and samples they told apart (counts are kept), and path
// rules rewrite binary paths before any encoding sees them.
TEST(Aggregator, PrivacyRemovesLabelsMergingSeriesAndRewritesPaths) {
  const auto add_two_nodes = [](Aggregator& agg) {
    (void)agg.Add(MakeCorrelatedBatch({.node = "node-1", .samples = 300, .start_ns = kT0}));
    (void)agg.Add(
        MakeCorrelatedBatch({.agent_id = "a2", .node = "node-2", .samples = 300, .start_ns = kT0}));
  };
  const auto total = [](const Window& w) {
    int64_t n = 0;
    for (const auto& [k, v] : w.samples) n += v.count;
    return n;
  };
  Aggregator plain({.granularity = SeriesGranularity::kServiceHost});
  add_two_nodes(plain);
  auto before = plain.TakeAll();
  ASSERT_EQ(before.size(), 1u);

  Aggregator scrubbed(
      {.granularity = SeriesGranularity::kServiceHost,
       .privacy = {.deny = {"node", "container_*", "span_id", "span_name", "thread_name"},
                   .paths = {{.from = "/usr/lib/*/", .to = "/lib/"}}}});
  add_two_nodes(scrubbed);
  auto after = scrubbed.TakeAll();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(before[0]->series.size(), 6u);
  EXPECT_EQ(after[0]->series.size(), 3u);  // one per service: the nodes merged
  EXPECT_EQ(total(*after[0]), total(*before[0]));
  EXPECT_LT(after[0]->samples.size(), before[0]->samples.size());
  for (uint32_t s : after[0]->SeriesOf("checkout-svc")) {
    EXPECT_EQ(after[0]->series[s].key.host, "");
    EXPECT_EQ(after[0]->series[s].key.container_id, "");
    EXPECT_EQ(after[0]->series[s].key.pod_uid, "pod-1");  // not denied
  }

  pp::Profile p = EncodePprof(*after[0], after[0]->SeriesOf("checkout-svc"));
  EXPECT_EQ(LabelKeys(p), (std::set<std::string>{"trace_id"}));
  std::set<std::string> files;
  for (const pp::Mapping& m : p.mapping())
    files.insert(p.string_table(static_cast<int>(m.filename())));
  EXPECT_EQ(files,
            (std::set<std::string>{"/usr/bin/checkout", "/lib/libc.so.6", "[kernel.kallsyms]"}));
}

TEST(Aggregator, RemembersServiceLearnedFromSpans) {
  Aggregator agg({.granularity = SeriesGranularity::kService});
  v1::SampleBatch named = MakeCorrelatedBatch({.sequence = 1, .samples = 50, .start_ns = kT0});
  v1::SampleBatch unnamed = MakeCorrelatedBatch({.sequence = 2, .samples = 50, .start_ns = kT0});
  for (v1::Process& p : *unnamed.mutable_processes()) p.clear_service_name();
  (void)agg.Add(named);
  (void)agg.Add(unnamed);
  auto ws = agg.TakeAll();
  EXPECT_EQ(ws[0]->Services(), (std::vector<std::string>{"checkout-svc", "kworker/1:0", "worker"}));
}

TEST(Pprof, GzipRoundTripAndImportRestoresSamplesAndBatchIds) {
  Aggregator agg({.granularity = SeriesGranularity::kService});
  v1::SampleBatch b =
      MakeCorrelatedBatch({.sequence = 5, .samples = 400, .start_ns = kT0, .symbol_epoch = 3});
  (void)agg.Add(b);
  auto ws = agg.TakeAll();
  pp::Profile p = EncodePprof(*ws[0], ws[0]->SeriesOf("checkout-svc"), {.batch_comments = true});
  Result<std::string> gz = GzipPprof(p);
  ASSERT_TRUE(gz.ok());
  ASSERT_GE(gz->size(), 2u);
  EXPECT_EQ(static_cast<uint8_t>((*gz)[0]), 0x1f);
  Result<pp::Profile> back = DecodePprof(*gz);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EpochOf(*back), 3u);

  // A fresh aggregator whose new series is seeded from the file (what the file sink does).
  Aggregator again({.granularity = SeriesGranularity::kService});
  again.set_new_series_hook([&](Window& w, uint32_t s) {
    if (w.series[s].key.service == "checkout-svc") {
      ASSERT_TRUE(ImportPprof(*back, w, s).ok());
    }
  });
  AddResult r = again.Add(b);
  EXPECT_GT(r.duplicates, 0);  // checkout-svc's samples were already in the file
  auto ws2 = again.TakeAll();
  EXPECT_EQ(FoldedOf(*ws2[0], "checkout-svc"), FoldedOf(*ws[0], "checkout-svc"));
  EXPECT_EQ(FoldedOf(*ws2[0], "worker"), FoldedOf(*ws[0], "worker"));
  EXPECT_EQ(ws2[0]->Total().count, ws[0]->Total().count);
  EXPECT_EQ(ws2[0]->symbol_epoch, 3u);
}

TEST(Pprof, DecodeRejectsGarbage) {
  EXPECT_FALSE(DecodePprof(std::string("\x1f\x8b\x08garbage", 10)).ok());
  EXPECT_FALSE(pprofutil::Gunzip("not gzip").ok());
}

// The file sink's folded stacks and flame graph name frames exactly as `flamestream top|diff|
// folded` do (one pprofutil::FrameNamer): inlined chains expanded, unsymbolized frames as
// <basename>+0x<file offset>.
TEST(Pprof, FoldNamesFramesLikeTheCli) {
  pprofutil::ProfileBuilder b("samples", "count");
  b.Add({{"memcpy"}, {"helper", "caller"}, {"main"}}, 3, {{"span_name", "GET /"}});
  b.AddUnsymbolized("/usr/lib/libfoo.so", 0x7f0000000000, 0x1234, 2);
  const perftools::profiles::Profile p = b.Build();
  Result<std::vector<FoldedStack>> folded = Fold(p);
  ASSERT_TRUE(folded.ok()) << folded.error();
  ASSERT_EQ(folded->size(), 2u);
  EXPECT_EQ((*folded)[0].frames, (std::vector<std::string>{"main", "caller", "helper", "memcpy"}));
  EXPECT_EQ((*folded)[0].span_name, "GET /");
  EXPECT_EQ((*folded)[0].count, 3);
  EXPECT_EQ((*folded)[1].frames, (std::vector<std::string>{"libfoo.so+0x1234"}));
  const pprofutil::FrameNamer names(p);
  for (int i = 0; i < p.sample_size(); ++i) {
    EXPECT_EQ((*folded)[static_cast<size_t>(i)].frames, names.RootFirst(p.sample(i)));
  }
  EXPECT_EQ(FoldedText(*folded), "libfoo.so+0x1234 2\nmain;caller;helper;memcpy 3\n");

  // A sample naming a location or function the profile does not define is refused.
  perftools::profiles::Profile bad_location = p;
  bad_location.mutable_sample(0)->add_location_id(999);
  Result<std::vector<FoldedStack>> refused = Fold(bad_location);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message(), "pprof: unknown location 999");
  perftools::profiles::Profile bad_function = p;
  bad_function.mutable_location(0)->mutable_line(0)->set_function_id(777);
  refused = Fold(bad_function);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message(), "pprof: unknown function 777");
}

TEST(WindowFileStem, IsSortableUtc) {
  EXPECT_EQ(WindowFileStem(kT0), "20231114T221320Z");
  EXPECT_EQ(WindowFileStem(kT0 + 500'000'000), "20231114T221320.500000000Z");
}

}  // namespace
}  // namespace flamestream::profile
