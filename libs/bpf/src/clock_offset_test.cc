#include "flamestream/bpf/clock_offset.h"

#include <time.h>

#include <gtest/gtest.h>

namespace flamestream::bpf {
namespace {

int64_t Now(clockid_t c) {
  timespec ts{};
  clock_gettime(c, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

TEST(ClockOffset, ConvertsMonotonicToRealtime) {
  ClockOffset clock;
  const int64_t before = Now(CLOCK_REALTIME);
  const uint64_t wall = clock.ToWallNs(static_cast<uint64_t>(Now(CLOCK_MONOTONIC)));
  const int64_t after = Now(CLOCK_REALTIME);
  // Within a millisecond of the bracketing realtime reads.
  EXPECT_GE(static_cast<int64_t>(wall), before - 1'000'000);
  EXPECT_LE(static_cast<int64_t>(wall), after + 1'000'000);
}

TEST(ClockOffset, MeasurementPicksTightPair) {
  ClockSample s = MeasureClockOffset(32);
  EXPECT_GE(s.uncertainty_ns, 0);
  EXPECT_LT(s.uncertainty_ns, 1'000'000);
  EXPECT_NEAR(static_cast<double>(s.offset_ns),
              static_cast<double>(Now(CLOCK_REALTIME) - Now(CLOCK_MONOTONIC)), 2e6);
}

TEST(ClockOffset, WatcherStartsAndStops) {
  ClockOffset clock(std::chrono::milliseconds(10));
  ASSERT_TRUE(clock.StartWatching().ok());
  ASSERT_TRUE(clock.StartWatching().ok());  // idempotent
  timespec ts{.tv_sec = 0, .tv_nsec = 30'000'000};
  nanosleep(&ts, nullptr);
  clock.StopWatching();
  clock.StopWatching();
  EXPECT_EQ(clock.clock_set_events(), 0u);
}

}  // namespace
}  // namespace flamestream::bpf
