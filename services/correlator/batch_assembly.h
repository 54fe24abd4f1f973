// The correlator's batches: a STAGE_SYMBOLIZED batch taken apart into the samples the join
// engine matches, and put back together, every sample carrying its span, as STAGE_CORRELATED.
//
//   FS_ASSIGN_OR_RETURN(JoinBatch jb, DecodeForJoin(record.value()));
//   for (size_t i = 0; i < jb.rows.size(); ++i) engine.AddSample({... jb.direct[i] ...});
//   ...                                   // for every emission of one of its samples:
//   if (ApplyEmission(jb, row, emission)) producer.Produce(FinishBatch(std::move(jb)));
//
// The output keeps every column and table of the input; a matched sample's span_index names
// the span (interned once per batch: trace id, span id, name, service), a span the agent
// listed without a name gets it, and Process.service_name is the process's learned service
// (the engine's rule: the smallest non-empty name). Unmatched samples keep their span_index.
#pragma once

#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/common/status.h"
#include "flamestream/correlate/types.h"

namespace flamestream::correlator {

struct JoinBatch {
  batch::BatchBuilder builder;  // the input batch without its samples
  std::vector<batch::SampleRow> rows;
  // Per row: the ids the batch already carries (a direct join), else zero ids.
  std::vector<std::pair<correlate::TraceId, correlate::SpanId>> direct;
  std::vector<uint32_t> span_index;  // the result per row, starting as received
  size_t remaining = 0;              // rows not yet emitted
  int64_t min_time_ns = std::numeric_limits<int64_t>::max();
  absl::flat_hash_map<uint32_t, std::string> services;  // host pid -> learned service
};

// A symbolized batch, ready to join; an error (the reason for the DLQ) when `value` is not a
// valid STAGE_SYMBOLIZED flamestream.v1.SampleBatch.
Result<JoinBatch> DecodeForJoin(std::string_view value);

// Records the join of sample `row`. True once every row of the batch is emitted.
bool ApplyEmission(JoinBatch& batch, size_t row, const correlate::Emission& e);

// The serialized STAGE_CORRELATED batch.
std::string FinishBatch(JoinBatch batch);

}  // namespace flamestream::correlator
