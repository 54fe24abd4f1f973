// Where the correlator re-reads keyed spans from when it is assigned a partition, and what a
// keyed-span record becomes in the join engine.
//
//   RebuildPlan plan = PlanRebuild(committed_spans, watermarks);
//   if (plan.seek_to) loop.Seek({spans_topic, p, *plan.seek_to}, 0ms);
//   if (plan.rebuild) PauseSamples(p);       // until the spans are read up to plan.until
//
// With a committed spans offset the re-read starts at the first record the committed samples
// still need (its metadata, "fs-corr from=<offset>"), so a restart re-reads about one lateness
// window of spans, not the topic. Without one (the first start; replay mode, which commits no
// spans) it starts at the earliest retained record.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "flamestream/correlate/types.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/types.h"
#include "flamestream/v1/spans.pb.h"

namespace flamestream::correlator {

struct RebuildPlan {
  int64_t start = 0;               // first offset re-read
  int64_t until = 0;               // the partition's end at the assignment
  bool rebuild = false;            // records in [start, until) to read before joining
  std::optional<int64_t> seek_to;  // start, when it is before the committed position
};

// `committed`: the group's committed spans offset and metadata (kOffsetInvalid: none).
RebuildPlan PlanRebuild(const kafka::TopicPartition& committed, const kafka::Watermarks& marks);

// A keyed span as JoinEngine::AddSpan takes it (views into `ks` and `node_key`, the record's
// key: the samples' `<cluster>/<node>`).
correlate::Span ToSpan(const v1::KeyedSpan& ks, std::string_view node_key);

}  // namespace flamestream::correlator
