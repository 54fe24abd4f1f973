// The one place clocks are read as integer nanoseconds.
//
//   int64_t t = UnixNowNs();                 // wire timestamps (Unix epoch, system_clock)
//   int64_t m = ClockNs(CLOCK_MONOTONIC);    // the kernel clock BPF's bpf_ktime_get_ns() uses
//   int64_t s = SteadyNowNs();               // deadlines and intervals inside one process
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>

namespace flamestream {

// Nanoseconds on a POSIX clock (CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME, ...).
inline int64_t ClockNs(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Unix time in nanoseconds: what every timestamp on the wire carries.
inline int64_t UnixNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// std::chrono::steady_clock in nanoseconds (never jumps; for deadlines, not for the wire).
inline int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace flamestream
