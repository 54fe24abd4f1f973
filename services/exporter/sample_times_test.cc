#include "sample_times.h"

#include <gtest/gtest.h>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/profile/test_batches.h"

namespace flamestream::exporter {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kNow = 1'800'000'000 * kSec;

// `samples` samples evenly spread over [start_ns, start_ns + spread_ns].
v1::SampleBatch Batch(int64_t start_ns, int64_t spread_ns, int samples = 100) {
  v1::SampleBatch b = profile::testing::MakeCorrelatedBatch({.samples = samples});
  const auto n = static_cast<int64_t>(batch::SampleCount(b));
  EXPECT_TRUE(batch::RewriteSamples(b, [&](batch::SampleInput& in, size_t i) {
                in.timestamp_ns =
                    start_ns + (n > 1 ? spread_ns / (n - 1) * static_cast<int64_t>(i) : 0);
                return true;
              }).ok());
  return b;
}

TEST(SampleTimeGuard, KeepsABatchOfOrdinaryTimesAsItIs) {
  const SampleTimeGuard guard({});
  v1::SampleBatch b = Batch(kNow - 30 * kSec, 5 * kSec);
  const std::string before = b.SerializeAsString();
  Result<GuardOutcome> g = guard.Apply(b, kNow);
  ASSERT_TRUE(g.ok()) << g.error();
  EXPECT_EQ(g->future, 0);
  EXPECT_EQ(b.SerializeAsString(), before);
  // A week-old replay batch is fine too: only the future and the window span are limited.
  v1::SampleBatch old = Batch(kNow - int64_t{7} * 86400 * kSec, 5 * kSec);
  EXPECT_TRUE(guard.Apply(old, kNow).ok());
}

// One node whose clock runs a day ahead: its samples are taken out (to the DLQ), the rest of
// the batch is aggregated.
TEST(SampleTimeGuard, RemovesSamplesBeyondTheClockSkew) {
  const SampleTimeGuard guard({.max_clock_skew = std::chrono::seconds(60)});
  // 100 samples from now - 10 s to a day ahead: those past now + 60 s are removed.
  v1::SampleBatch b = Batch(kNow - 10 * kSec, 86400 * kSec + 10 * kSec, 100);
  int64_t ahead = 0;
  for (const batch::SampleRow& r : batch::DecodeSamples(b))
    ahead += r.timestamp_ns > kNow + 60 * kSec;
  ASSERT_GT(ahead, 90);
  Result<GuardOutcome> g = guard.Apply(b, kNow);
  ASSERT_TRUE(g.ok()) << g.error();
  EXPECT_EQ(g->future, ahead);
  EXPECT_EQ(batch::SampleCount(b), 100 - ahead);
  for (const batch::SampleRow& r : batch::DecodeSamples(b)) {
    EXPECT_LE(r.timestamp_ns, kNow + 60 * kSec);
  }
  EXPECT_TRUE(batch::Validate(b).ok());
  EXPECT_NE(g->reason.find(fmt::format("{} of 100 samples are more than 1m ahead", ahead)),
            std::string::npos)
      << g->reason;
}

// One small record whose samples span a year would open ~3 million 10 s windows.
TEST(SampleTimeGuard, RefusesABatchSpanningTooManyWindows) {
  const SampleTimeGuard guard({.window = std::chrono::seconds(10), .max_windows_per_batch = 64});
  v1::SampleBatch wide =
      Batch(kNow - int64_t{365} * 86400 * kSec, int64_t{365} * 86400 * kSec, 200);
  const std::string before = wide.SerializeAsString();
  Result<GuardOutcome> g = guard.Apply(wide, kNow);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.error().code(), StatusCode::kOutOfRange);
  EXPECT_NE(g.error().message().find("span more than 64 windows of 10s"), std::string::npos)
      << g.error();
  EXPECT_EQ(wide.SerializeAsString(), before);
  // 64 windows exactly is allowed.
  v1::SampleBatch edge = Batch(kNow - 640 * kSec, 639 * kSec, 640);
  EXPECT_TRUE(guard.Apply(edge, kNow).ok());
}

}  // namespace
}  // namespace flamestream::exporter
