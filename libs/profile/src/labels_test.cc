#include "flamestream/profile/labels.h"

#include <gtest/gtest.h>

#include "flamestream/batch/batch.h"
#include "flamestream/profile/aggregator.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/profile/test_batches.h"

namespace flamestream::profile {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kT0 = 1'700'000'000 * kSec;

uint32_t Bit(LabelReason r) { return 1u << static_cast<uint32_t>(r); }

TEST(LabelSanitizer, CleanValuesPassUnchanged) {
  LabelSanitizer san;
  uint32_t why = 0;
  EXPECT_EQ(san.Value("checkout-svc", &why), "checkout-svc");
  EXPECT_EQ(san.Value("kworker/1:0", &why), "kworker/1:0");
  EXPECT_EQ(san.Value("caf\xC3\xA9 \xE2\x82\xAC", &why), "caf\xC3\xA9 \xE2\x82\xAC");  // café €
  EXPECT_EQ(why, 0u);
}

TEST(LabelSanitizer, RemovesControlCharactersAndInvalidUtf8) {
  LabelSanitizer san;
  uint32_t why = 0;
  EXPECT_EQ(san.Value(std::string("a\tb\nc\x7f" "d\0e", 9), &why), "abcde");
  EXPECT_EQ(why, Bit(LabelReason::kControl));
  why = 0;
  EXPECT_EQ(san.Value("x\xC2\x85y", &why), "xy");  // C1 NEL
  EXPECT_EQ(why, Bit(LabelReason::kControl));
  why = 0;
  // A lone continuation byte, a truncated sequence, an overlong '/' and a surrogate.
  EXPECT_EQ(san.Value("a\x80" "b\xE2\x82" "c\xC0\xAF" "d\xED\xA0\x80", &why),
            "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD"
            "d\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(why, Bit(LabelReason::kInvalidUtf8));
  why = 0;
  const std::string only_control = san.Value("\x01\x02", &why);
  EXPECT_EQ(only_control, "_~" + ShortHash("\x01\x02"));
  EXPECT_EQ(why, Bit(LabelReason::kControl) | Bit(LabelReason::kEmpty));
}

TEST(LabelSanitizer, TruncatesDeterministicallyWithHashOfTheWholeValue) {
  LabelSanitizer san({.max_value_length = 64});
  const std::string a = std::string(100, 'a') + "-one";
  const std::string b = std::string(100, 'a') + "-two";
  uint32_t why = 0;
  const std::string ta = san.Value(a, &why);
  EXPECT_EQ(why, Bit(LabelReason::kTooLong));
  EXPECT_EQ(ta, std::string(55, 'a') + "~" + ShortHash(a));
  EXPECT_EQ(ta.size(), 64u);
  EXPECT_EQ(san.Value(a), ta);  // deterministic
  const std::string tb = san.Value(b);
  EXPECT_EQ(tb.size(), 64u);
  EXPECT_NE(ta, tb);
  // Never splits a UTF-8 sequence: 30 x "é" (2 bytes) cut to 55 bytes keeps 27 of them.
  std::string e;
  for (int i = 0; i < 40; ++i) e += "\xC3\xA9";
  const std::string te = san.Value(e);
  EXPECT_EQ(te.size(), 54u + 9u);
  EXPECT_EQ(te.substr(0, 54), e.substr(0, 54));
  EXPECT_EQ(ShortHash("x").size(), 8u);
  EXPECT_EQ(StableHash(""), 14695981039346656037ULL);
}

TEST(LabelSanitizer, NamesFollowPrometheusRules) {
  LabelSanitizer san;
  uint32_t why = 0;
  EXPECT_EQ(san.Name("service_name", &why), "service_name");
  EXPECT_EQ(san.Name("__name__", &why), "__name__");
  EXPECT_EQ(why, 0u);
  EXPECT_EQ(san.Name("team.name", &why), "team_name");
  EXPECT_EQ(why, Bit(LabelReason::kName));
  EXPECT_EQ(san.Name("1st"), "_1st");
  EXPECT_EQ(san.Name("a-b/c\xC3\xA9"), "a_b_c__");
  EXPECT_EQ(san.Name(""), "_");
}

TEST(LabelSanitizer, CountsPerReason) {
  LabelSanitizer san;
  san.Count(Bit(LabelReason::kTooLong) | Bit(LabelReason::kControl));
  san.Count(LabelReason::kControl);
  EXPECT_EQ(san.count(LabelReason::kTooLong), 1u);
  EXPECT_EQ(san.count(LabelReason::kControl), 2u);
  EXPECT_EQ(san.count(LabelReason::kInvalidUtf8), 0u);
  EXPECT_EQ(LabelReasonName(LabelReason::kTooMany), "too_many_labels");
}

// The aggregator cleans the series key once: every sink sees the capped, cleaned values; two
// long names sharing their first KiB stay two series.
TEST(AggregatorLabels, LongServiceNamesAreCappedAndStayDistinct) {
  const std::string long_a = std::string(10 * 1024, 'a') + "/x\x01";
  const std::string long_b = std::string(10 * 1024, 'a') + "/y\x01";
  v1::SampleBatch b1 = testing::MakeCorrelatedBatch({.sequence = 1, .samples = 300, .start_ns = kT0 + kSec});
  v1::SampleBatch b2 = testing::MakeCorrelatedBatch({.sequence = 2, .samples = 300, .start_ns = kT0 + kSec});
  b1.mutable_processes(0)->set_service_name(long_a);
  b2.mutable_processes(0)->set_service_name(long_b);
  b1.set_cluster(std::string("prod\x1b[31m", 9));
  ASSERT_TRUE(batch::Validate(b1).ok());
  ASSERT_TRUE(batch::Validate(b2).ok());
  Aggregator agg({.window = std::chrono::seconds(10),
                  .granularity = SeriesGranularity::kServiceHost,
                  .label_limits = {.max_value_length = 1024}});
  agg.Add(b1);
  agg.Add(b2);
  // The same batch again (a duplicate delivery) adds no series and counts nothing new.
  agg.Add(b1);
  std::vector<std::unique_ptr<Window>> closed = agg.TakeAll();
  ASSERT_EQ(closed.size(), 1u);
  const Window& w = *closed[0];
  const LabelSanitizer ref({.max_value_length = 1024});
  const std::string want_a = ref.Value(long_a);
  const std::string want_b = ref.Value(long_b);
  EXPECT_EQ(want_a, std::string(1015, 'a') + "~" + ShortHash(long_a));
  EXPECT_NE(want_a, want_b);
  std::set<std::string> services;
  std::set<std::string> clusters;
  for (const SeriesInfo& s : w.series) {
    services.insert(s.key.service);
    clusters.insert(s.key.cluster);
    EXPECT_LE(s.key.service.size(), 1024u);
  }
  EXPECT_TRUE(services.contains(want_a));
  EXPECT_TRUE(services.contains(want_b));
  EXPECT_EQ(clusters, (std::set<std::string>{"prod[31m", "test"}));
  // Series: b1 (cluster "prod[31m") x 3 processes + b2 (cluster "test") x 3 processes.
  EXPECT_EQ(w.series.size(), 6u);
  // too_long: the two long names; control: both names ('\x01') + the 3 series of b1 whose
  // cluster held ESC.
  EXPECT_EQ(agg.label_sanitizer().count(LabelReason::kTooLong), 2u);
  EXPECT_EQ(agg.label_sanitizer().count(LabelReason::kControl), 4u);
  EXPECT_EQ(agg.label_sanitizer().count(LabelReason::kInvalidUtf8), 0u);
  // Which input process made which series: pid 100 of batch 1 is the long_a series.
  const int64_t s = w.SeriesOfBatchPid(batch::BatchIdString(b1.id()), 100);
  ASSERT_GE(s, 0);
  EXPECT_EQ(w.series[static_cast<size_t>(s)].key.service, want_a);
  EXPECT_EQ(w.SeriesOfBatchPid(batch::BatchIdString(b1.id()), 999), -1);
  EXPECT_EQ(w.SeriesOfBatchPid("nope", 100), -1);
}

}  // namespace
}  // namespace flamestream::profile
