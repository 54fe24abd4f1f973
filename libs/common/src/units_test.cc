#include "flamestream/common/units.h"

#include <gtest/gtest.h>

namespace flamestream::common {
namespace {

using std::chrono::nanoseconds;

TEST(ParseDuration, AcceptsEveryUnitAndCompounds) {
  struct Case {
    const char* text;
    int64_t ns;
  };
  const Case kCases[] = {{"0", 0},           {"30s", 30000000000}, {"250ms", 250000000},
                         {"1m30s", 90000000000}, {"2h", 7200000000000}, {"0.5s", 500000000},
                         {"10us", 10000},     {"7ns", 7},           {"1d", 86400000000000}};
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.text);
    auto d = ParseDuration(c.text);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->count(), c.ns);
  }
}

TEST(ParseDuration, RejectsBadInputNamingTheProblem) {
  for (const char* text : {"", "30", "abc", "10 parsecs", "5x", "-3s"}) {
    SCOPED_TRACE(text);
    auto d = ParseDuration(text);
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_NE(ParseDuration("5x").status().message().find("unit \"x\""), std::string::npos);
}

TEST(ParseSize, AcceptsSiAndBinaryUnits) {
  EXPECT_EQ(*ParseSize("64MiB"), 64ULL << 20);
  EXPECT_EQ(*ParseSize("1GB"), 1000000000ULL);
  EXPECT_EQ(*ParseSize("512kib"), 512ULL << 10);
  EXPECT_EQ(*ParseSize("1048576"), 1048576ULL);
  EXPECT_EQ(*ParseSize("1.5KiB"), 1536ULL);
  EXPECT_FALSE(ParseSize("lots").ok());
  EXPECT_FALSE(ParseSize("3 parsecs").ok());
}

TEST(FormatUnits, RoundTripsThroughParse) {
  EXPECT_EQ(FormatDuration(nanoseconds(90000000000)), "1m30s");
  EXPECT_EQ(FormatDuration(nanoseconds(250000000)), "250ms");
  EXPECT_EQ(FormatSize(64ULL << 20), "64MiB");
  EXPECT_EQ(FormatSize(1000), "1000B");
  EXPECT_EQ(*ParseDuration(FormatDuration(nanoseconds(3723000000000))), nanoseconds(3723000000000));
}

TEST(ParseTimestampNs, AcceptsNowRelativeRfc3339AndUnixDigits) {
  constexpr int64_t kNow = 1795438862000000000;  // 2026-11-23T13:01:02Z
  struct Case {
    const char* text;
    int64_t ns;
  };
  const Case kCases[] = {{"now", kNow},
                         {"-15m", kNow - 900000000000},
                         {"2026-11-23T13:01:02Z", kNow},
                         {"2026-11-23T13:01:02.25Z", kNow + 250000000},
                         {"1795438862", kNow},
                         {"1795438862000", kNow},
                         {"1795438862000000", kNow},
                         {"1795438862000000000", kNow}};
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.text);
    auto t = ParseTimestampNs(c.text, kNow);
    ASSERT_TRUE(t.ok()) << t.error();
    EXPECT_EQ(*t, c.ns);
  }
  for (const char* bad : {"yesterday", "2026-11-23 13:01:02", "2026-11-23T13:01:02+01:00",
                          "12345", "-soon"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(ParseTimestampNs(bad, kNow).ok());
  }
}

}  // namespace
}  // namespace flamestream::common
