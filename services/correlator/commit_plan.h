// The correlator's restart protocol, as pure functions of what each partition remembers: which
// offsets a commit carries and what their metadata says, so a restart rebuilds the span state
// from about one lateness window of keyed-span records instead of the whole topic.
//
//   kafka::TopicPartitions offsets = acks.CommittableOffsets();
//   offsets = PlanCommit(topics, std::move(offsets), {{p, {&part.log,
//   engine.SpanReplayStartNs()}}}); if (consumer.Commit(offsets).ok()) ApplyCommitted(topics,
//   offsets, logs);
//
// Samples partition p: the committed offset is the first batch not yet written and
// acknowledged; the metadata "fs-corr rf=<unix ns>" is the earliest span end those batches may
// still need (the engine's held samples, and every uncommitted batch's earliest sample minus
// the allowed lateness).
// Keyed-span partition p: the committed offset is the position read; the metadata
// "fs-corr from=<offset>" is the first record holding a span that ends at or after that time.
// A partition being rebuilt is read below its committed position and commits no spans until
// the rebuild is over; a position that did not move is committed again when its restart offset
// would.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "flamestream/kafka/types.h"

namespace flamestream::correlator {

inline constexpr std::string_view kSamplesMetadataPrefix = "fs-corr rf=";
inline constexpr std::string_view kSpansMetadataPrefix = "fs-corr from=";

// The value after `prefix` in commit metadata `md`, if it is one of ours.
std::optional<int64_t> ParseCommitMetadata(std::string_view md, std::string_view prefix);

// What one partition (samples p and keyed spans p) remembers for its commits.
struct RestartLog {
  // Earliest sample time of every samples batch read and not yet committed, by input offset.
  std::map<int64_t, int64_t> uncommitted_times;
  // Keyed-span records read, in offset order: (offset, latest span end in it).
  std::deque<std::pair<int64_t, int64_t>> span_records;
  // The span state is being re-read (below spans_committed): no spans commit.
  bool rebuilding = false;
  // The spans offset committed when the partition was assigned.
  int64_t spans_committed = kafka::kOffsetInvalid;
  // The spans position and restart offset last committed.
  int64_t spans_commit_pos = kafka::kOffsetInvalid;
  int64_t spans_commit_from = kafka::kOffsetInvalid;
};

struct CommitTopics {
  std::string samples;
  std::string spans;
  bool commit_spans = true;  // off in replay mode: spans offsets are never committed
  int64_t allowed_lateness_ns = 0;
};

struct PartitionRestart {
  const RestartLog* log = nullptr;
  // correlate::JoinEngine::SpanReplayStartNs(): the earliest span end its held samples need.
  int64_t engine_start_ns = 0;
};

// The earliest span end the samples of `part` from offset `from_offset` on may still need:
// the engine's, and each uncommitted batch's earliest sample minus the allowed lateness.
int64_t SpanReplayStart(const PartitionRestart& part, int64_t from_offset,
                        int64_t allowed_lateness_ns);
// The first keyed-span record a restart must re-read so that no span ending at or after
// `from_ns` is missed; at most `position`.
int64_t SpanRestartOffset(const RestartLog& log, int64_t from_ns, int64_t position);

// The commit for `committable` (what the acks allow, samples and spans topics): the spans
// entries the protocol does not commit dropped (no spans commits, a partition not in `parts`
// or being rebuilt, a position below the one committed), spans positions whose restart
// offset moved added, and the metadata of every entry of a partition in `parts` set.
kafka::TopicPartitions PlanCommit(const CommitTopics& topics, kafka::TopicPartitions committable,
                                  const std::map<int32_t, PartitionRestart>& parts);

// After `committed` (a PlanCommit result) succeeded: forgets what it made unneeded.
void ApplyCommitted(const CommitTopics& topics, const kafka::TopicPartitions& committed,
                    const std::map<int32_t, RestartLog*>& logs);

}  // namespace flamestream::correlator
