#include "commit_plan.h"

#include <fmt/format.h>

#include <algorithm>

#include "flamestream/common/strings.h"

namespace flamestream::correlator {

std::optional<int64_t> ParseCommitMetadata(std::string_view md, std::string_view prefix) {
  if (!md.starts_with(prefix)) return std::nullopt;
  Result<int64_t> v = common::ParseInt<int64_t>(md.substr(prefix.size()));
  if (!v.ok()) return std::nullopt;
  return *v;
}

int64_t SpanReplayStart(const PartitionRestart& part, int64_t from_offset,
                        int64_t allowed_lateness_ns) {
  int64_t from = part.engine_start_ns;
  const auto& times = part.log->uncommitted_times;
  for (auto it = times.lower_bound(from_offset); it != times.end(); ++it) {
    from = std::min(from, it->second - allowed_lateness_ns);
  }
  return from;
}

int64_t SpanRestartOffset(const RestartLog& log, int64_t from_ns, int64_t position) {
  // Records are dropped from the front once nothing needs them (ApplyCommitted), so the
  // first one still needed is the first, in offset order, ending at or after from_ns -- or
  // one behind a record that does.
  for (const auto& [offset, end] : log.span_records) {
    if (end >= from_ns) return std::min(offset, position);
  }
  return position;
}

namespace {

// The samples offset this commit takes partition p to, or -1 when it does not list it.
int64_t SamplesCommitOffset(const CommitTopics& topics, const kafka::TopicPartitions& offsets,
                            int32_t p) {
  for (const kafka::TopicPartition& tp : offsets) {
    if (tp.topic == topics.samples && tp.partition == p) return tp.offset;
  }
  return -1;
}

}  // namespace

kafka::TopicPartitions PlanCommit(const CommitTopics& topics, kafka::TopicPartitions committable,
                                  const std::map<int32_t, PartitionRestart>& parts) {
  kafka::TopicPartitions offsets = std::move(committable);
  std::erase_if(offsets, [&](const kafka::TopicPartition& tp) {
    if (tp.topic != topics.spans) return false;
    if (!topics.commit_spans) return true;
    auto it = parts.find(tp.partition);
    return it == parts.end() || it->second.log->rebuilding ||
           tp.offset < it->second.log->spans_committed;
  });
  // The samples each partition still needs spans for, once this commit is in.
  auto replay_start = [&](int32_t p, const PartitionRestart& part) {
    return SpanReplayStart(part, std::max<int64_t>(0, SamplesCommitOffset(topics, offsets, p)),
                           topics.allowed_lateness_ns);
  };
  if (topics.commit_spans) {
    for (const auto& [p, part] : parts) {
      const RestartLog& log = *part.log;
      if (log.rebuilding || log.spans_commit_pos < 0 ||
          log.spans_commit_from >= log.spans_commit_pos) {
        continue;  // nothing committed yet, or the restart offset is at the position already
      }
      const bool listed = std::any_of(offsets.begin(), offsets.end(), [&](const auto& tp) {
        return tp.topic == topics.spans && tp.partition == p;
      });
      if (!listed && SpanRestartOffset(log, replay_start(p, part), log.spans_commit_pos) !=
                         log.spans_commit_from) {
        offsets.push_back({topics.spans, p, log.spans_commit_pos});
      }
    }
  }
  for (kafka::TopicPartition& tp : offsets) {
    auto it = parts.find(tp.partition);
    if (it == parts.end()) continue;
    const int64_t from = replay_start(tp.partition, it->second);
    if (tp.topic == topics.samples) {
      if (from > 0) {
        tp.metadata = fmt::format("{}{}", kSamplesMetadataPrefix, from);
      }
    } else {
      tp.metadata = fmt::format("{}{}", kSpansMetadataPrefix,
                                SpanRestartOffset(*it->second.log, from, tp.offset));
    }
  }
  return offsets;
}

void ApplyCommitted(const CommitTopics& topics, const kafka::TopicPartitions& committed,
                    const std::map<int32_t, RestartLog*>& logs) {
  for (const kafka::TopicPartition& tp : committed) {
    auto it = logs.find(tp.partition);
    if (it == logs.end()) continue;
    RestartLog& log = *it->second;
    if (tp.topic == topics.samples) {
      log.uncommitted_times.erase(log.uncommitted_times.begin(),
                                  log.uncommitted_times.lower_bound(tp.offset));
    } else if (tp.topic == topics.spans) {
      log.spans_commit_pos = std::max(log.spans_commit_pos, tp.offset);
      const int64_t from =
          ParseCommitMetadata(tp.metadata, kSpansMetadataPrefix).value_or(tp.offset);
      log.spans_commit_from = from;
      while (!log.span_records.empty() && log.span_records.front().first < from) {
        log.span_records.pop_front();
      }
    }
  }
}

}  // namespace flamestream::correlator
