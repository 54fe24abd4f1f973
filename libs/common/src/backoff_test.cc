#include "flamestream/common/backoff.h"

#include <gtest/gtest.h>

namespace flamestream {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, GrowsExponentiallyWithJitterUpToMax) {
  Backoff b({.initial = milliseconds(100), .max = milliseconds(1000), .multiplier = 2,
             .jitter = 0.2},
            /*seed=*/7);
  const int64_t bases[] = {100, 200, 400, 800, 1000, 1000};
  for (int64_t base : bases) {
    const int64_t d = b.Next().count();
    EXPECT_GE(d, base * 8 / 10);
    EXPECT_LE(d, base * 12 / 10);
  }
  EXPECT_EQ(b.attempts(), 6);
  b.Reset();
  EXPECT_LE(b.Next().count(), 120);
}

TEST(BackoffDelay, IsExactAndCappedAndSurvivesHugeAttemptCounts) {
  const RetryPolicy p{.initial = milliseconds(100), .max = milliseconds(400)};
  EXPECT_EQ(BackoffDelay(p, 0), milliseconds(100));
  EXPECT_EQ(BackoffDelay(p, 1), milliseconds(200));
  EXPECT_EQ(BackoffDelay(p, 2), milliseconds(400));
  EXPECT_EQ(BackoffDelay(p, 3), milliseconds(400));
  EXPECT_EQ(BackoffDelay(p, 1'000'000), milliseconds(400));
  EXPECT_EQ(BackoffDelay(p, -1), milliseconds(100));
}

}  // namespace
}  // namespace flamestream
