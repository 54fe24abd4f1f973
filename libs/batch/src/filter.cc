#include "flamestream/batch/filter.h"

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"

namespace flamestream::batch {

Status KeepSamplesInRange(v1::SampleBatch& batch, int64_t from_ns, int64_t to_ns, size_t* kept) {
  // Decoding the columns of a malformed batch would read out of bounds.
  FS_RETURN_IF_ERROR(Validate(batch));
  const std::vector<SampleRow> rows = DecodeSamples(batch);
  std::vector<SampleInput> keep;
  keep.reserve(rows.size());
  for (const SampleRow& r : rows) {
    if (r.timestamp_ns >= from_ns && r.timestamp_ns <= to_ns) {
      keep.push_back(ToSampleInput(r));
    }
  }
  if (kept != nullptr) {
    *kept = keep.size();
  }
  if (keep.size() == rows.size()) {
    return OkStatus();
  }
  const SampleEncoding encoding = EncodingOf(batch);  // kept: the batch stays as compact
  batch.clear_samples();
  FS_ASSIGN_OR_RETURN(BatchBuilder builder, BatchBuilder::FromBatch(std::move(batch)));
  builder.set_encoding(encoding);
  for (const SampleInput& s : keep) {
    builder.AddSample(s);
  }
  batch = builder.Finish();
  return OkStatus();
}

}  // namespace flamestream::batch
