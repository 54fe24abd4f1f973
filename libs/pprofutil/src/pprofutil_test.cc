#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "flamestream/pprofutil/builder.h"
#include "flamestream/pprofutil/flamegraph.h"
#include "flamestream/pprofutil/profile_io.h"
#include "flamestream/pprofutil/report.h"
#include "flamestream/pprofutil/stacks.h"

namespace flamestream::pprofutil {
namespace {

namespace fs = std::filesystem;

}  // namespace

// Readable failure messages for table rows.
void PrintTo(const TopRow& r, std::ostream* os) {
  *os << r.name << " flat=" << r.flat << " cum=" << r.cum << " flat%=" << r.flat_pct
      << " sum%=" << r.sum_pct << " cum%=" << r.cum_pct;
}
void PrintTo(const DiffRow& r, std::ostream* os) {
  *os << r.name << " before%=" << r.before_pct << " after%=" << r.after_pct
      << " delta=" << r.delta_pct << " before=" << r.before << " after=" << r.after;
}

namespace {

constexpr int64_t kMs = 1'000'000;

StackSet Load(const perftools::profiles::Profile& p, LoadOptions options = {}) {
  StackSet set;
  Status s = AddProfile(p, options, set);
  EXPECT_TRUE(s.ok()) << s;
  return set;
}

// main;work;crc32 600ms, main;work;memcpy 300ms, main;idle 100ms.
perftools::profiles::Profile ProfileA() {
  ProfileBuilder b;
  b.AddFolded("main;work;crc32", 600 * kMs);
  b.AddFolded("main;work;memcpy", 300 * kMs);
  b.AddFolded("main;idle", 100 * kMs);
  return b.Build();
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "pprofutil_test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void WriteProfile(const fs::path& path, const perftools::profiles::Profile& p, bool gzip) {
  fs::create_directories(path.parent_path());
  std::string bytes = p.SerializeAsString();
  if (gzip) bytes = *Gzip(bytes);
  ASSERT_TRUE(WriteFile(path.string(), bytes).ok());
}

TEST(Folded, ExpandsInlinedFramesAndNamesUnsymbolizedOnes) {
  ProfileBuilder b;
  b.Add({{"memcpy"}, {"inlined_helper", "caller"}, {"main"}}, 10);
  b.AddFolded("main;caller;inlined_helper;memcpy", 5);  // same stack without inlining
  b.AddUnsymbolized("/usr/lib/libfoo.so", 0x7f0000000000, 0x1234, 7);
  b.AddFolded("main;idle", 3);
  EXPECT_EQ(ToFolded(Load(b.Build())),
            "libfoo.so+0x1234 7\n"
            "main;caller;inlined_helper;memcpy 15\n"
            "main;idle 3\n");
}

TEST(Folded, FiltersOnSpanNameAndService) {
  ProfileBuilder b;
  b.AddFolded("main;a", 1, {{"span_name", "GET /cart"}, {"service_name", "shop"}});
  b.AddFolded("main;b", 2, {{"span_name", "GET /home"}, {"service_name", "shop"}});
  b.AddFolded("main;c", 4, {{"service_name", "other"}});
  b.AddFolded("main;d", 8);
  struct Case {
    std::string name;
    LoadOptions options;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"no filter", {}, "main;a 1\nmain;b 2\nmain;c 4\nmain;d 8\n"},
      {"span", {.span_name = "GET /cart"}, "main;a 1\n"},
      {"service keeps unlabelled", {.service = "shop"}, "main;a 1\nmain;b 2\nmain;d 8\n"},
      {"span and service", {.span_name = "GET /home", .service = "other"}, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ToFolded(Load(b.Build(), c.options)), c.want);
  }
}

TEST(Folded, PicksDefaultThenLastSampleType) {
  ProfileBuilder b("samples", "count");
  b.AddFolded("main;x", 3);
  perftools::profiles::Profile p = b.Build();
  // A second sample type "cpu"/"nanoseconds" (strings appended to the table).
  p.add_string_table("cpu");
  p.add_string_table("nanoseconds");
  auto* st = p.add_sample_type();
  st->set_type(p.string_table_size() - 2);
  st->set_unit(p.string_table_size() - 1);
  p.mutable_sample(0)->add_value(3 * kMs);

  StackSet last = Load(p);
  EXPECT_EQ(last.sample_type, "cpu");
  EXPECT_EQ(last.total, 3 * kMs);

  p.set_default_sample_type(p.sample_type(0).type());
  StackSet def = Load(p);
  EXPECT_EQ(def.sample_type, "samples");
  EXPECT_EQ(def.total, 3);

  StackSet named = Load(p, {.sample_type = "cpu"});
  EXPECT_EQ(named.total, 3 * kMs);

  StackSet set;
  Status bad = AddProfile(p, {.sample_type = "wall"}, set);
  EXPECT_EQ(bad.message(), "no sample type 'wall' (profile has: samples, cpu)");
}

TEST(Top, RanksFunctionsLikePprof) {
  const StackSet set = Load(ProfileA());
  struct Case {
    SortBy by;
    std::vector<TopRow> want;
  };
  const std::vector<Case> cases = {
      {SortBy::kSelf,
       {{"crc32", 600 * kMs, 600 * kMs, 60, 60, 60},
        {"memcpy", 300 * kMs, 300 * kMs, 30, 90, 30},
        {"idle", 100 * kMs, 100 * kMs, 10, 100, 10},
        {"main", 0, 1000 * kMs, 0, 100, 100},
        {"work", 0, 900 * kMs, 0, 100, 90}}},
      {SortBy::kTotal,
       {{"main", 0, 1000 * kMs, 0, 0, 100},
        {"work", 0, 900 * kMs, 0, 0, 90},
        {"crc32", 600 * kMs, 600 * kMs, 60, 60, 60},
        {"memcpy", 300 * kMs, 300 * kMs, 30, 90, 30},
        {"idle", 100 * kMs, 100 * kMs, 10, 100, 10}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.by == SortBy::kSelf ? "self" : "total");
    EXPECT_EQ(Top(set, c.by), c.want);
  }
}

TEST(Top, CountsRecursiveFunctionOncePerSample) {
  ProfileBuilder b;
  b.AddFolded("main;rec;rec;rec;leaf", 10);
  b.AddFolded("main;rec", 5);
  const std::vector<TopRow> rows = Top(Load(b.Build()), SortBy::kTotal);
  ASSERT_EQ(rows.size(), 3u);
  // rec and main tie on cum (15, not 35 for rec); rec's flat 5 breaks the tie.
  EXPECT_EQ(rows[0], (TopRow{"rec", 5, 15, 100.0 / 3, 100.0 / 3, 100}));
  EXPECT_EQ(rows[1], (TopRow{"main", 0, 15, 0, 100.0 / 3, 100}));
}

TEST(Top, FormatsTableLikePprofTop) {
  const StackSet set = Load(ProfileA());
  EXPECT_EQ(FormatTop(set, Top(set, SortBy::kSelf), 3),
            "Type: cpu\n"
            "Showing 3 of 5 functions, 1s (100.00%) of 1s total\n"
            "      flat  flat%   sum%        cum   cum%\n"
            "     600ms 60.00% 60.00%      600ms 60.00%  crc32\n"
            "     300ms 30.00% 90.00%      300ms 30.00%  memcpy\n"
            "     100ms 10.00% 100.00%      100ms 10.00%  idle\n");
}

TEST(FormatValue, ScalesLikePprof) {
  struct Case {
    int64_t v;
    std::string unit;
    std::string want;
  };
  const std::vector<Case> cases = {
      {0, "nanoseconds", "0"},          {999, "nanoseconds", "999ns"},
      {1500, "nanoseconds", "1.50us"},  {10 * kMs, "nanoseconds", "10ms"},
      {1'200 * kMs, "nanoseconds", "1.20s"}, {2048, "bytes", "2kB"},
      {1536 * 1024, "bytes", "1.50MB"}, {42, "count", "42"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.want);
    EXPECT_EQ(FormatValue(c.v, c.unit), c.want);
  }
}

TEST(Diff, RanksFunctionsByChangeOfShare) {
  ProfileBuilder before;
  before.AddFolded("main;a", 50);
  before.AddFolded("main;b", 50);
  ProfileBuilder after;  // twice as long a run: shares, not values, are compared
  after.AddFolded("main;a", 150);
  after.AddFolded("main;b", 40);
  after.AddFolded("main;c", 10);
  const StackSet b = Load(before.Build());
  const StackSet a = Load(after.Build());

  const std::vector<DiffRow> self = Diff(b, a, SortBy::kSelf);
  const std::vector<DiffRow> want_self = {
      {"b", 50, 20, -30, 50, 40},
      {"a", 50, 75, 25, 50, 150},
      {"c", 0, 5, 5, 0, 10},
  };
  EXPECT_EQ(self, want_self);

  const std::vector<DiffRow> total = Diff(b, a, SortBy::kTotal);
  ASSERT_EQ(total.size(), 4u);
  EXPECT_EQ(total[3], (DiffRow{"main", 100, 100, 0, 100, 200}));

  EXPECT_EQ(FormatDiff(b, a, self, 2),
            "Type: cpu\n"
            "Before: 100ns total, after: 200ns total; showing 2 of 3 functions\n"
            " before%   after%     delta  name\n"
            "  50.00%   20.00%   -30.00%  b\n"
            "  50.00%   75.00%   +25.00%  a\n");
}

TEST(FlameGraph, EmbedsMergedTreeWithBothValues) {
  ProfileBuilder before;
  before.AddFolded("main;a", 50);
  before.AddFolded("main;b", 50);
  ProfileBuilder after;
  after.AddFolded("main;a", 100);
  after.AddFolded("main;</script>", 100);
  const StackSet b = Load(before.Build());
  const StackSet a = Load(after.Build());
  EXPECT_EQ(DiffTreeJson(b, a),
            "{\"bt\":100,\"at\":200,\"unit\":\"nanoseconds\",\"maxd\":0.500000,\"root\":"
            "[\"all\",100,200,[[\"main\",100,200,[[\"\\u003c/script\\u003e\",0,100,[]],"
            "[\"a\",50,100,[]],[\"b\",50,0,[]]]]]]}");
  const std::string html = DiffFlameGraphHtml(b, a, "v1 -> v2");
  EXPECT_NE(html.find("<title>v1 -&gt; v2</title>"), std::string::npos);
  EXPECT_EQ(html.find("</script>", html.find("const D")),
            html.rfind("</script>"));  // the only closing tag is the page's own
  EXPECT_EQ(html.find("http"), std::string::npos) << "page must not load anything";
}

TEST(ProfileIo, ReadsGzipAndPlainAndNamesBadFiles) {
  TempDir dir;
  WriteProfile(dir.path() / "a.pb.gz", ProfileA(), /*gzip=*/true);
  WriteProfile(dir.path() / "a.pb", ProfileA(), /*gzip=*/false);
  ASSERT_TRUE(WriteFile((dir.path() / "junk.pb.gz").string(), "\x1f\x8b garbage").ok());

  for (const char* name : {"a.pb.gz", "a.pb"}) {
    SCOPED_TRACE(name);
    Result<perftools::profiles::Profile> p = ReadProfile((dir.path() / name).string());
    ASSERT_TRUE(p.ok()) << p.error();
    EXPECT_EQ(p->sample_size(), 3);
  }
  Result<perftools::profiles::Profile> junk = ReadProfile((dir.path() / "junk.pb.gz").string());
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.error().message().find("junk.pb.gz: "), std::string::npos) << junk.error();
}

TEST(ExpandInputs, WalksSinkDirectoryPerService) {
  TempDir dir;
  WriteProfile(dir.path() / "shop" / "20250101T000010Z.pb.gz", ProfileA(), true);
  WriteProfile(dir.path() / "shop" / "20250101T000000Z.pb.gz", ProfileA(), true);
  WriteProfile(dir.path() / "cart" / "20250101T000000Z.pb.gz", ProfileA(), true);
  ASSERT_TRUE(WriteFile((dir.path() / "index.html").string(), "<html>").ok());
  const std::string root = dir.path().string();

  Result<std::vector<std::string>> all = ExpandInputs({root}, "");
  ASSERT_TRUE(all.ok()) << all.error();
  EXPECT_EQ(*all, (std::vector<std::string>{root + "/cart/20250101T000000Z.pb.gz",
                                            root + "/shop/20250101T000000Z.pb.gz",
                                            root + "/shop/20250101T000010Z.pb.gz"}));
  Result<std::vector<std::string>> shop = ExpandInputs({root}, "shop");
  ASSERT_TRUE(shop.ok());
  EXPECT_EQ(shop->size(), 2u);

  Result<std::vector<std::string>> none = ExpandInputs({root}, "nope");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().message(), root + ": no service 'nope' (services: cart, shop)");
  Result<std::vector<std::string>> missing = ExpandInputs({root + "/x.pb.gz"}, "");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message(), root + "/x.pb.gz: no such file or directory");

  Result<StackSet> merged = LoadStacks(*shop, {});
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ(merged->total, 2000 * kMs);
  EXPECT_EQ(merged->profiles, 2);
}

TEST(LoadStacks, RejectsMixedSampleTypes) {
  TempDir dir;
  WriteProfile(dir.path() / "cpu.pb.gz", ProfileA(), true);
  ProfileBuilder alloc("alloc_space", "bytes");
  alloc.AddFolded("main;malloc", 4096);
  WriteProfile(dir.path() / "mem.pb.gz", alloc.Build(), true);
  Result<StackSet> r = LoadStacks(
      {(dir.path() / "cpu.pb.gz").string(), (dir.path() / "mem.pb.gz").string()}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(),
            (dir.path() / "mem.pb.gz").string() +
                ": sample type alloc_space/bytes differs from the first profile's cpu/nanoseconds");
}

}  // namespace
}  // namespace flamestream::pprofutil
