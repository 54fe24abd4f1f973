// Keeps only the samples of a batch whose own timestamps fall in a time range (replay).
//
//   size_t kept = 0;
//   FS_RETURN_IF_ERROR(KeepSamplesInRange(batch, t1_ns, t2_ns, &kept));
//   if (kept == 0) { /* nothing of this batch is in the range */ }
//
// Record timestamps are not ordered (agents spool and send late), so replay filters on the
// samples' own event times. Dictionary tables are kept as they are.
#pragma once

#include <cstddef>
#include <cstdint>

#include "flamestream/common/status.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::batch {

// [from_ns, to_ns] inclusive, Unix ns.
Status KeepSamplesInRange(::flamestream::v1::SampleBatch& batch, int64_t from_ns, int64_t to_ns,
                          size_t* kept);

}  // namespace flamestream::batch
