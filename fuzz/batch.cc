// flamestream.v1.SampleBatch as every stage reads a samples record: ParseFromArray, then
// batch::Validate, then SampleCursor / DecodeSamples (libs/batch). A batch that validates must
// iterate without a bounds check failing, re-serialize to the same samples, be extendable with
// BatchBuilder::FromBatch (symbolizer, correlator) into a batch that validates again, and be
// filterable by time (replay's KeepSamplesInRange).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/batch/filter.h"
#include "fuzz_check.h"

namespace v1 = flamestream::v1;
namespace batch = flamestream::batch;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  v1::SampleBatch b;
  if (!b.ParseFromArray(data, static_cast<int>(size))) return 0;
  if (!batch::Validate(b).ok()) return 0;
  (void)batch::BatchIdString(b.id());

  // Every reference a validated batch holds is in range.
  for (const v1::Location& loc : b.locations()) {
    const v1::Mapping* m = batch::MappingOf(b, loc);
    FS_FUZZ_CHECK((m == nullptr) == (loc.mapping_index() == 0), "mapping_index %u",
                  loc.mapping_index());
    if (m != nullptr) (void)batch::StringAt(b, m->path_strx());
    (void)batch::StringAt(b, loc.symbol_strx());
  }
  const std::vector<batch::SampleRow> rows = batch::DecodeSamples(b);
  FS_FUZZ_CHECK(static_cast<int>(rows.size()) == batch::SampleCount(b), "%zu rows", rows.size());
  batch::SampleCursor cursor(b);
  batch::SampleRow row;
  size_t i = 0;
  while (cursor.Next(&row)) {
    FS_FUZZ_CHECK(i < rows.size() && row == rows[i], "cursor row %zu differs", i);
    FS_FUZZ_CHECK(row.stack_index < static_cast<uint32_t>(b.stacks_size()), "stack %u",
                  row.stack_index);
    for (uint32_t li : b.stacks(static_cast<int>(row.stack_index)).location_indices()) {
      FS_FUZZ_CHECK(li < static_cast<uint32_t>(b.locations_size()), "location %u", li);
    }
    FS_FUZZ_CHECK((batch::SpanOf(b, row.span_index) == nullptr) == (row.span_index == 0),
                  "span_index %u", row.span_index);
    ++i;
  }
  FS_FUZZ_CHECK(i == rows.size(), "cursor gave %zu of %zu rows", i, rows.size());

  // Re-serialized, it decodes to the same rows.
  v1::SampleBatch again;
  FS_FUZZ_CHECK(again.ParseFromString(b.SerializeAsString()), "re-serialized batch does not parse");
  FS_FUZZ_CHECK(batch::Validate(again).ok(), "re-serialized batch does not validate");
  FS_FUZZ_CHECK(batch::DecodeSamples(again) == rows, "re-serialized batch decodes differently");

  // A later stage extends it: the rebuilt batch validates and keeps every sample.
  const bool plain = !batch::EncodingOf(b).compact;
  flamestream::Result<batch::BatchBuilder> builder = batch::BatchBuilder::FromBatch(b);
  FS_FUZZ_CHECK(builder.ok(), "FromBatch: %s", builder.error().message().c_str());
  v1::Location extra;
  extra.set_address(0x1234);
  extra.set_symbol_strx(builder->InternString("fuzz_extra"));
  (void)builder->InternLocation(extra);
  const v1::SampleBatch rebuilt = builder->Finish();
  const flamestream::Status st = batch::Validate(rebuilt);
  FS_FUZZ_CHECK(st.ok(), "rebuilt batch: %s", st.message().c_str());
  const std::vector<batch::SampleRow> rebuilt_rows = batch::DecodeSamples(rebuilt);
  FS_FUZZ_CHECK(rebuilt_rows.size() == rows.size(), "rebuilt has %zu of %zu rows",
                rebuilt_rows.size(), rows.size());
  if (plain) {  // plain keeps order and exact times (value 0 becomes period_ns)
    for (size_t k = 0; k < rows.size(); ++k) {
      batch::SampleRow a = rows[k];
      batch::SampleRow r = rebuilt_rows[k];
      a.value_ns = r.value_ns = 0;
      FS_FUZZ_CHECK(a == r, "rebuilt plain row %zu differs", k);
    }
  }

  // Replay's time filter on a copy.
  if (!rows.empty()) {
    v1::SampleBatch filtered = b;
    size_t kept = 0;
    const int64_t t = rows[rows.size() / 2].timestamp_ns;
    FS_FUZZ_CHECK(batch::KeepSamplesInRange(filtered, t, t, &kept).ok(), "KeepSamplesInRange");
    FS_FUZZ_CHECK(kept >= 1 && kept <= rows.size(), "kept %zu", kept);
    FS_FUZZ_CHECK(batch::Validate(filtered).ok(), "filtered batch does not validate");
  }
  return 0;
}
