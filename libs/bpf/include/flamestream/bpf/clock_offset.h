// Converts BPF timestamps (CLOCK_MONOTONIC) to wall-clock nanoseconds (CLOCK_REALTIME), which is
// what spans are stamped with.
//
//   ClockOffset clock;                       // measures once, now
//   FS_RETURN_IF_ERROR(clock.StartWatching()); // re-measures every minute and on clock set
//   uint64_t wall_ns = clock.ToWallNs(sample.monotonic_ns);
//   int64_t offset = clock.offset_ns();       // carried in each batch
//
// The offset changes when someone sets the clock (settimeofday, NTP step) and drifts slowly
// while NTP slews. A timerfd armed on CLOCK_REALTIME with TFD_TIMER_CANCEL_ON_SET wakes the
// watcher the moment the clock is set; the periodic re-measure catches slewing.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "flamestream/common/status.h"

namespace flamestream::bpf {

struct ClockSample {
  int64_t offset_ns = 0;     // realtime - monotonic
  int64_t uncertainty_ns = 0;  // half the width of the tightest bracketing read pair
};

// Reads CLOCK_REALTIME between two CLOCK_MONOTONIC reads, several times, and keeps the pair
// with the smallest gap (the least disturbed by preemption).
ClockSample MeasureClockOffset(int rounds = 16);

class ClockOffset {
 public:
  explicit ClockOffset(std::chrono::nanoseconds period = std::chrono::seconds(60));
  ~ClockOffset();
  ClockOffset(const ClockOffset&) = delete;
  ClockOffset& operator=(const ClockOffset&) = delete;

  // Starts the watcher thread (timerfd clock-set notification + periodic re-measure).
  Status StartWatching();
  void StopWatching();

  void Remeasure();
  [[nodiscard]] int64_t offset_ns() const { return offset_ns_.load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t ToWallNs(uint64_t monotonic_ns) const {
    return static_cast<uint64_t>(static_cast<int64_t>(monotonic_ns) + offset_ns());
  }
  // How many times the watcher saw the clock being set.
  [[nodiscard]] uint64_t clock_set_events() const { return clock_sets_.load(); }

 private:
  void Watch();

  std::chrono::nanoseconds period_;
  std::atomic<int64_t> offset_ns_{0};
  std::atomic<uint64_t> clock_sets_{0};
  int stop_fd_ = -1;  // eventfd that wakes the watcher to exit
  std::thread watcher_;
};

}  // namespace flamestream::bpf
