#include "flamestream/log/log.h"

#include <gtest/gtest.h>

namespace flamestream::log {
namespace {

constexpr int64_t kTs = 1795438862345;  // 2026-11-23T...Z

TEST(Log, RendersLogfmtWithQuotingOnlyWhereNeeded) {
  const std::string line =
      Render(Level::kInfo, "consumer started", {{"group", "fs-sym"}, {"partitions", 8},
                                                 {"path", "a b"}, {"ok", true}},
             kTs, Format::kLogfmt);
  EXPECT_EQ(line,
            "ts=2026-11-23T13:01:02.345Z level=info msg=\"consumer started\" group=fs-sym "
            "partitions=8 path=\"a b\" ok=true\n");
}

TEST(Log, RendersJsonAndEscapes) {
  const std::string line =
      Render(Level::kError, "bad \"x\"", {{"n", 3}, {"why", "line1\nline2"}}, kTs, Format::kJson);
  EXPECT_EQ(line,
            "{\"ts\":\"2026-11-23T13:01:02.345Z\",\"level\":\"error\",\"msg\":\"bad \\\"x\\\"\","
            "\"n\":3,\"why\":\"line1\\nline2\"}\n");
}

TEST(Log, ConfigureRejectsUnknownLevelAndFormat) {
  EXPECT_FALSE(Configure("loud", "logfmt").ok());
  EXPECT_FALSE(Configure("info", "xml").ok());
  ASSERT_TRUE(Configure("warn", "logfmt").ok());
  EXPECT_FALSE(Enabled(Level::kInfo));
  EXPECT_TRUE(Enabled(Level::kError));
  Configure(Level::kInfo, Format::kLogfmt);
}

}  // namespace
}  // namespace flamestream::log
