// Splits a SampleBatch that is too large for one Kafka record (librdkafka message.max.bytes,
// 1,000,000 bytes by default) into smaller batches of whole samples, each self-contained.
//
//   FS_ASSIGN_OR_RETURN(std::vector<std::string> pieces,
//                       batch::SplitSerializedBatch(record_value, max_record_bytes));
//   for (std::string& piece : pieces) Produce(topic, key, std::move(piece));
//   // OutOfRange: one sample alone does not fit -> dead-letter the batch.
//
// Every piece:
//   - passes Validate() and carries only the strings, mappings, locations, stacks, spans,
//     processes and threads that its own samples reference (so a piece costs about its share
//     of the batch, not a copy of all its tables);
//   - keeps every header field of the batch (stage, cluster, node, clock offset, period,
//     frequency, symbol epoch, ...; fields this code does not know are copied as they are)
//     and its sample encoding (compact or plain);
//   - keeps every sample's values (stack with its locations, mappings and lines, pid, tid,
//     cpu, timestamp, value, span). Samples are shared out by stack (stacks ordered root
//     frame first, so a piece gets stacks that share frames), which keeps each table entry
//     in few pieces; within a piece they keep the batch's stored order (compact: by (cpu,
//     time), as the encoding requires). Consumers do not depend on which piece a sample is
//     in: the exporter aggregates by each sample's own timestamp;
//   - gets the batch's id with its 1-based piece number appended to BatchId.part, so the
//     exporter's dedup by id (BatchIdString) never mistakes one piece for another, the
//     whole batch, or a piece of another split; a piece split again later by another
//     stage gets a longer part path ("agent/42#2" -> "agent/42#2.1", "agent/42#2.2").
// Splitting is deterministic: the same batch and max_bytes give byte-identical pieces, so a
// redelivered batch is split into pieces with the same ids and dedup still works.
//
// Processes and threads: a piece keeps the processes whose host_pid and the threads whose
// (pid, tid) one of its samples has; entries no sample references (outside samples.proto's
// "that have samples in this batch") are in no piece.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::batch {

// Splits `batch` into pieces of whole samples whose serialized size (ByteSizeLong) is each
// at most `max_bytes`, every piece a valid batch on its own (see above). Returns the batch
// itself (one piece, id unchanged) when it fits. Errors: Validate()'s when the batch is
// invalid; OutOfRange when a single sample's piece does not fit (nothing to split further)
// or a batch without samples does not fit.
//
// Strategy: the samples, ordered by stack as above, are cut into
// max(2, ceil(size / (7/8 max_bytes))) equal consecutive runs, and each run that does not
// fit is cut again the same way. Each level of the recursion builds every sample once, so the
// work is O(samples * levels), levels being about log2 of the number of pieces (100k
// samples into 1 MB pieces: well under a second). Pieces mostly hold about 7/8 of max_bytes
// (at worst about half).
[[nodiscard]] Result<std::vector<::flamestream::v1::SampleBatch>> SplitBatch(
    const ::flamestream::v1::SampleBatch& batch, size_t max_bytes);

// The same on serialized bytes (what the stage loop holds): DataLoss when `bytes` is not a
// SampleBatch, Validate()'s error (with the batch id as context) when it is invalid; `bytes`
// itself (one piece) when it is at most max_bytes long; else the serialized pieces.
[[nodiscard]] Result<std::vector<std::string>> SplitSerializedBatch(std::string_view bytes,
                                                                    size_t max_bytes);

}  // namespace flamestream::batch
