#include "flamestream/batch/cursor.h"

namespace flamestream::batch {

SampleCursor::SampleCursor(const ::flamestream::v1::SampleBatch& batch)
    : batch_(batch),
      size_(batch.samples().stack_index_size()),
      timestamp_ns_(batch.base_timestamp_ns()) {}

bool SampleCursor::Next(SampleRow* row) {
  if (next_ >= size_) return false;
  const ::flamestream::v1::Samples& s = batch_.samples();
  const int i = next_++;
  // Unsigned wrap-around keeps a corrupt delta from being undefined behaviour; Validate()
  // does not bound timestamps, and a wrapped time is just a wrong time.
  uint64_t delta_ns = 0;
  if (s.timestamp_ticks_size() > 0) {  // compact: (ticks * tick + rest) * unit
    delta_ns = (static_cast<uint64_t>(s.timestamp_ticks(i)) *
                    static_cast<uint64_t>(batch_.timestamp_tick()) +
                static_cast<uint64_t>(s.timestamp_rest(i))) *
               static_cast<uint64_t>(batch_.timestamp_unit_ns());
  } else {
    delta_ns = static_cast<uint64_t>(s.timestamp_delta_ns(i));
  }
  timestamp_ns_ = static_cast<int64_t>(static_cast<uint64_t>(timestamp_ns_) + delta_ns);
  row->stack_index = s.stack_index(i);
  if (s.thread_index_size() > 0) {  // compact: (pid, tid) from the thread table
    const ::flamestream::v1::Thread& t = batch_.threads(static_cast<int>(s.thread_index(i)));
    row->pid = t.pid();
    row->tid = t.tid();
  } else {
    row->pid = s.pid(i);
    row->tid = s.tid(i);
  }
  row->cpu = s.cpu(i);
  row->timestamp_ns = timestamp_ns_;
  row->value_ns = s.value_ns_size() == 0 ? batch_.period_ns() : s.value_ns(i);
  row->span_index = s.span_index_size() == 0 ? 0 : s.span_index(i);
  row->profile_type = s.profile_type_size() == 0 ? 0 : static_cast<uint32_t>(s.profile_type(i));
  return true;
}

std::vector<SampleRow> DecodeSamples(const ::flamestream::v1::SampleBatch& batch) {
  SampleCursor cursor(batch);
  std::vector<SampleRow> rows(static_cast<size_t>(cursor.size()));
  for (SampleRow& row : rows) cursor.Next(&row);
  return rows;
}

}  // namespace flamestream::batch
