// Iterates a SampleBatch's columnar samples as rows with absolute wall-clock timestamps.
//
//   SampleCursor cursor(batch);           // batch must have passed batch::Validate()
//   SampleRow row;
//   while (cursor.Next(&row)) {
//     const v1::Stack& stack = batch.stacks(row.stack_index);
//     Aggregate(stack, row.pid, row.timestamp_ns, row.value_ns);
//   }
//
//   // or, when all rows are needed at once:
//   std::vector<SampleRow> rows = DecodeSamples(batch);
//
// Both sample encodings (samples.proto) decode the same way: timestamps from the delta
// columns (base_timestamp_ns + running sum), pid/tid from their columns or the thread table;
// value_ns falls back to period_ns when the value column is empty, span_index to 0. Rows come
// in stored order (compact batches store them by (cpu, time)). A SampleCount() of zero and
// an empty batch both yield no rows.
#pragma once

#include <cstdint>
#include <vector>

#include "flamestream/v1/samples.pb.h"

namespace flamestream::batch {

// One decoded sample.
struct SampleRow {
  uint32_t stack_index = 0;  // 0-based index into SampleBatch.stacks
  uint32_t pid = 0;          // host pid
  uint32_t tid = 0;          // host tid
  uint32_t cpu = 0;
  int64_t timestamp_ns = 0;   // unix wall-clock nanoseconds
  int64_t value_ns = 0;       // CPU nanoseconds this sample stands for
  uint32_t span_index = 0;    // 1-based index into SampleBatch.spans; 0 = none
  uint32_t profile_type = 0;  // v1::ProfileType: 0 CPU, 1 OFF_CPU (value_ns = time blocked)

  friend bool operator==(const SampleRow&, const SampleRow&) = default;
};

// Forward cursor over a validated batch's samples. Holds a reference: the batch must
// outlive the cursor and not change while it is used.
class SampleCursor {
 public:
  explicit SampleCursor(const ::flamestream::v1::SampleBatch& batch);

  // Fills *row with the next sample and returns true, or returns false at the end.
  bool Next(SampleRow* row);
  // Total number of samples.
  [[nodiscard]] int size() const { return size_; }
  // Index of the sample Next() will return.
  [[nodiscard]] int position() const { return next_; }

 private:
  const ::flamestream::v1::SampleBatch& batch_;
  int size_ = 0;
  int next_ = 0;
  int64_t timestamp_ns_ = 0;  // running sum of the deltas so far
};

// All samples of a validated batch, in stored order.
[[nodiscard]] std::vector<SampleRow> DecodeSamples(const ::flamestream::v1::SampleBatch& batch);

}  // namespace flamestream::batch
