#include "sample_times.h"

#include <algorithm>
#include <limits>
#include <set>

#include "flamestream/batch/cursor.h"
#include "flamestream/batch/filter.h"
#include "flamestream/common/units.h"

namespace flamestream::exporter {

Result<GuardOutcome> SampleTimeGuard::Apply(v1::SampleBatch& batch, int64_t now_ns) const {
  GuardOutcome out;
  const int64_t skew = limits_.max_clock_skew.count();
  const int64_t limit =
      now_ns > std::numeric_limits<int64_t>::max() - skew ? std::numeric_limits<int64_t>::max()
                                                          : now_ns + skew;
  const int64_t window = std::max<int64_t>(1, limits_.window.count());
  std::set<int64_t> windows;
  int64_t first_future = std::numeric_limits<int64_t>::max();
  batch::SampleCursor cursor(batch);
  batch::SampleRow row;
  size_t total = 0;
  while (cursor.Next(&row)) {
    ++total;
    if (row.timestamp_ns > limit) {
      ++out.future;
      first_future = std::min(first_future, row.timestamp_ns);
      continue;
    }
    // Floor division: windows are aligned to the epoch, negative times included.
    const int64_t w = row.timestamp_ns / window - (row.timestamp_ns % window < 0 ? 1 : 0);
    if (windows.size() <= static_cast<size_t>(limits_.max_windows_per_batch)) windows.insert(w);
  }
  if (windows.size() > static_cast<size_t>(limits_.max_windows_per_batch)) {
    return OutOfRange(
        "the batch's samples span more than {} windows of {} (exporter.max_windows_per_batch)",
        limits_.max_windows_per_batch, common::FormatDuration(limits_.window));
  }
  if (out.future > 0) {
    out.reason = fmt::format(
        "{} of {} samples are more than {} ahead of the exporter's clock (the first {} s "
        "ahead; exporter.max_clock_skew): dropped from aggregation, kept here",
        out.future, total, common::FormatDuration(limits_.max_clock_skew),
        (first_future - now_ns) / 1'000'000'000);
    size_t kept = 0;
    FS_RETURN_IF_ERROR(batch::KeepSamplesInRange(batch, std::numeric_limits<int64_t>::min(),
                                                 limit, &kept));
  }
  return out;
}

}  // namespace flamestream::exporter
