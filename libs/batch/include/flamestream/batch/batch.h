// Checks and small accessors for flamestream.v1.SampleBatch, the record of every samples topic.
//
//   flamestream::v1::SampleBatch batch;
//   if (!batch.ParseFromString(record.value())) return DataLoss("not a SampleBatch");
//   if (Status s = batch::Validate(batch); !s.ok()) {
//     return s.WithContext(batch::BatchIdString(batch.id()));   // -> <topic>.dlq
//   }
//   for (const v1::Location& loc : batch.locations()) {
//     const v1::Mapping* m = batch::MappingOf(batch, loc);      // nullptr = no mapping
//   }
//
// Validate() is what makes the rest of the pipeline safe to index without bounds checks:
// every stage validates a batch when it decodes one and sends failures to the DLQ.
#pragma once

#include <cstdint>
#include <string>

#include "flamestream/common/status.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::batch {

namespace v1 = ::flamestream::v1;

// Checks a batch's internal consistency. Returns
//   DataLoss        when references or columns are broken (the bytes cannot be interpreted):
//                   strings[0] != "", any *_strx / index out of range, sample columns of
//                   different lengths, plain and compact columns mixed, compact timestamps
//                   without timestamp_unit_ns, trace/span ids of the wrong size;
//   InvalidArgument when the batch is well formed but unusable: no id.agent_id, stage
//                   STAGE_UNSPECIFIED, samples without value_ns and period_ns <= 0.
// The message names the first offending element, e.g.
// "locations[3].mapping_index 7 > 5 mappings".
[[nodiscard]] Status Validate(const v1::SampleBatch& batch);

// "agent_id/sequence", e.g. "prod/node-1/4f2a/1234"; used in logs, DLQ headers and dedup keys.
// A piece of a split batch (BatchId.part, see split.h) appends its part path after '#':
// "prod/node-1/4f2a/1234#2", and "...#2.1" for a piece of that piece.
[[nodiscard]] std::string BatchIdString(const v1::BatchId& id);

// The mapping of a location, or nullptr when it has none (mapping_index 0). Requires a
// validated batch.
[[nodiscard]] const v1::Mapping* MappingOf(const v1::SampleBatch& batch, const v1::Location& loc);

// The span a sample index refers to (Samples.span_index is 1-based), or nullptr for 0.
// Requires a validated batch.
[[nodiscard]] const v1::SpanRef* SpanOf(const v1::SampleBatch& batch, uint32_t span_index);

// strings[strx]; "" when out of range (never throws). Use after Validate().
[[nodiscard]] const std::string& StringAt(const v1::SampleBatch& batch, uint32_t strx);

// Number of samples (length of the stack_index column).
[[nodiscard]] inline int SampleCount(const v1::SampleBatch& batch) {
  return batch.samples().stack_index_size();
}

}  // namespace flamestream::batch
