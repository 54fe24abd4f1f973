// Guards the exporter's windows against sample times it must not trust: batches come from
// agents' clocks, and one record must not close or allocate windows for the whole fleet.
//
//   SampleTimeGuard guard({.max_clock_skew = 60s, .window = 10s, .max_windows_per_batch = 64});
//   Result<GuardOutcome> g = guard.Apply(batch, now_ns);   // drops future samples in place
//   if (!g.ok()) -> the record goes to the DLQ with g.error() (nothing of it is aggregated)
//   if (g->future > 0) -> the record also goes to the DLQ with g->reason; the rest goes on
//
// Samples more than max_clock_skew ahead of this exporter's clock would move the newest event
// time, which closes windows, into the future: every window then closes at once and later
// samples arrive "late". A batch whose samples span more than max_windows_per_batch windows
// would make the aggregator open (and allocate) that many windows for one small record.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "flamestream/common/status.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::exporter {

struct SampleTimeLimits {
  std::chrono::nanoseconds max_clock_skew = std::chrono::seconds(60);
  std::chrono::nanoseconds window = std::chrono::seconds(10);
  int max_windows_per_batch = 64;
};

struct GuardOutcome {
  int64_t future = 0;  // samples removed from the batch: beyond now + max_clock_skew
  std::string reason;  // why, when future > 0 (for the DLQ's error header)
};

class SampleTimeGuard {
 public:
  explicit SampleTimeGuard(SampleTimeLimits limits) : limits_(limits) {}
  // Removes the samples beyond now + max_clock_skew from `batch` (validated). OutOfRange when
  // the remaining samples span more than max_windows_per_batch windows (the batch is left as
  // it was then).
  Result<GuardOutcome> Apply(flamestream::v1::SampleBatch& batch, int64_t now_ns) const;

 private:
  SampleTimeLimits limits_;
};

}  // namespace flamestream::exporter
