#include "flamestream/common/clock.h"
#include "flamestream/bpf/clock_offset.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <limits>

#include "flamestream/common/fd.h"
#include "flamestream/log/log.h"

namespace flamestream::bpf {
namespace {


// Arms `fd` to expire at the end of time on CLOCK_REALTIME; the only way it fires is a
// cancellation because the clock was set.
bool ArmCancelOnSet(int fd) {
  itimerspec spec{};
  spec.it_value.tv_sec = std::numeric_limits<time_t>::max() / 2;
  return ::timerfd_settime(fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &spec, nullptr) == 0;
}

}  // namespace

ClockSample MeasureClockOffset(int rounds) {
  ClockSample best{.offset_ns = 0, .uncertainty_ns = std::numeric_limits<int64_t>::max()};
  for (int i = 0; i < rounds; ++i) {
    const int64_t m1 = ClockNs(CLOCK_MONOTONIC);
    const int64_t r = ClockNs(CLOCK_REALTIME);
    const int64_t m2 = ClockNs(CLOCK_MONOTONIC);
    const int64_t half_gap = (m2 - m1) / 2;
    if (half_gap < best.uncertainty_ns) {
      best.uncertainty_ns = half_gap;
      best.offset_ns = r - (m1 + half_gap);
    }
  }
  return best;
}

ClockOffset::ClockOffset(std::chrono::nanoseconds period) : period_(period) { Remeasure(); }

ClockOffset::~ClockOffset() { StopWatching(); }

void ClockOffset::Remeasure() {
  offset_ns_.store(MeasureClockOffset().offset_ns, std::memory_order_relaxed);
}

Status ClockOffset::StartWatching() {
  if (watcher_.joinable()) {
    return OkStatus();
  }
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) {
    return ErrnoError(errno, "eventfd");
  }
  watcher_ = std::thread([this] { Watch(); });
  return OkStatus();
}

void ClockOffset::StopWatching() {
  if (!watcher_.joinable()) {
    return;
  }
  uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof(one));
  watcher_.join();
  ::close(stop_fd_);
  stop_fd_ = -1;
}

void ClockOffset::Watch() {
  common::UniqueFd timer(::timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!timer || !ArmCancelOnSet(timer.get())) {
    log::Warn("clock-set notification unavailable; re-measuring periodically only",
              {{"error", ErrnoError(errno, "timerfd")}});
    timer.reset();
  }
  const int timeout_ms =
      static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(period_).count());
  while (true) {
    pollfd fds[2] = {{.fd = stop_fd_, .events = POLLIN, .revents = 0},
                     {.fd = timer.get(), .events = POLLIN, .revents = 0}};
    const int n = ::poll(fds, timer ? 2 : 1, timeout_ms);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (fds[0].revents != 0) {
      return;
    }
    if (n > 0 && (fds[1].revents & POLLIN) != 0) {
      uint64_t expirations = 0;
      // A clock set makes read() fail with ECANCELED; the timer must then be re-armed.
      if (::read(timer.get(), &expirations, sizeof(expirations)) < 0 && errno == ECANCELED) {
        clock_sets_.fetch_add(1);
      }
      ArmCancelOnSet(timer.get());
    }
    const int64_t before = offset_ns();
    Remeasure();
    if (n > 0) {
      log::Info("wall clock was set; re-measured offset",
                {{"offset_ns", static_cast<long long>(offset_ns())},
                 {"change_ns", static_cast<long long>(offset_ns() - before)}});
    }
  }
}

}  // namespace flamestream::bpf
