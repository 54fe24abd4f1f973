#include "correlator_stage.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "batch_assembly.h"
#include "commit_plan.h"
#include "flamestream/common/identity.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/log/log.h"
#include "flamestream/stage/loop.h"
#include "flamestream/v1/spans.pb.h"
#include "span_rebuild.h"

namespace flamestream::correlator {
namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = ::flamestream::v1;

// How often the input-pending state of every partition is refreshed, how often a span re-read
// seek that did not take is issued again, and how often the gauges are updated.
constexpr auto kPendingRefresh = std::chrono::milliseconds(50);
constexpr auto kSeekRetry = std::chrono::milliseconds(500);
constexpr auto kGaugeInterval = std::chrono::seconds(1);

// A batch waiting for its samples to be emitted; its input is held until it is written.
struct PendingBatch {
  stage::InputToken input;
  std::string key;
  kafka::Headers headers;
  JoinBatch batch;
};

// A samples record read while its partition's span state was being rebuilt.
struct DeferredRecord {
  stage::InputToken input;
  std::string key;
  std::string value;
  kafka::Headers headers;
};

// Samples partition p and keyed-spans partition p, joined by one engine.
struct Partition {
  Partition(int32_t p, const correlate::JoinConfig& join)
      : partition(p), engine(join, [this] { return Now(); }) {}
  int32_t partition;
  // The engine's processing-time clock stands still while this partition's samples are held
  // back (span rebuild, backpressure): otherwise its idle rule would take the pause for a
  // quiet partition, move the watermark to now and expire the rebuilt spans of a partition
  // that is catching up on older samples.
  int64_t clock_lag_ns = 0;
  int64_t frozen_at_ns = -1;
  [[nodiscard]] int64_t Now() const {
    return frozen_at_ns >= 0 ? frozen_at_ns : correlate::JoinEngine::SystemClockNs() - clock_lag_ns;
  }
  void Freeze() {
    if (frozen_at_ns < 0) frozen_at_ns = Now();
  }
  void Thaw() {
    if (frozen_at_ns >= 0) {
      clock_lag_ns = correlate::JoinEngine::SystemClockNs() - frozen_at_ns;
      frozen_at_ns = -1;
    }
  }
  correlate::JoinEngine engine;
  RestartLog log;
  std::deque<DeferredRecord> deferred;
  uint32_t next_batch = 0;
  std::map<uint32_t, PendingBatch> pending;
  // Rebuild: spans below this offset are re-read ones; samples paused until it is reached.
  int64_t rebuild_until = -1;
  Clock::time_point rebuild_started;
  int64_t last_span_offset = -1;
  // From the samples commit's metadata: spans ending before this are not needed.
  std::optional<int64_t> replay_from;
  bool seek_checked = false;
  // Until a record at or after seek_target (and before the committed position) arrives, the
  // seek is issued again: librdkafka may still override one made right after the assignment
  // with the committed position it is resolving.
  std::optional<int64_t> seek_target;
  Clock::time_point last_seek;
  // Next offset to read of the samples and spans partitions; for the input-pending state.
  int64_t samples_next = kafka::kOffsetInvalid;
  int64_t spans_next = kafka::kOffsetInvalid;
  correlate::JoinCounters exported;
};

class CorrelatorHandler final : public stage::Handler {
 public:
  CorrelatorHandler(const StageConfig& config, obs::Registry& registry)
      : config_(config),
        registry_(registry),
        topics_{config.samples_topic, config.spans_topic, config.commit_span_offsets,
                config.join.allowed_lateness.count()} {}

  Status Started(stage::Loop& loop) override;
  void Assigned(stage::Loop&, const kafka::TopicPartitions& parts) override {
    // Handled from Tick, outside the rebalance callback.
    newly_assigned_.insert(newly_assigned_.end(), parts.begin(), parts.end());
  }
  Status Record(stage::Loop& loop, const kafka::Message& in) override {
    if (in.topic() == config_.spans_topic) return OnSpans(loop, in);
    return OnSamples(loop, in);
  }
  void Tick(stage::Loop& loop) override;
  void Revoked(stage::Loop& loop, const kafka::TopicPartitions& parts, bool lost) override;
  void Drain(stage::Loop& loop) override {
    Advance(loop, /*flush=*/true);
    UpdateGauges();
  }
  void PrepareCommit(stage::Loop& loop, kafka::TopicPartitions& offsets) override;
  void Committed(stage::Loop& loop, const kafka::TopicPartitions& offsets,
                 const Status& result) override;
  [[nodiscard]] bool Idle() const override {
    return std::none_of(parts_.begin(), parts_.end(),
                        [](const auto& p) { return p.second->log.rebuilding; });
  }
  [[nodiscard]] bool WantsPause() const override { return want_pause_; }

 private:
  Partition& Part(int32_t p) {
    auto it = parts_.find(p);
    if (it == parts_.end()) {
      it = parts_.emplace(p, std::make_unique<Partition>(p, config_.join)).first;
    }
    return *it->second;
  }
  obs::Counter& Count(const std::string& name, const std::string& help, const obs::Labels& labels) {
    obs::Labels l = labels;
    l.emplace_back("stage", config_.stage_name);
    return registry_.Counter(name, help, l);
  }
  void ExportCounters(Partition& part);
  void UpdateGauges();

  Status OnSpans(stage::Loop& loop, const kafka::Message& msg);
  bool AwaitingSeek(stage::Loop& loop, Partition& part, int64_t offset);
  bool SeekSpansByTime(stage::Loop& loop, int32_t p, int64_t from_ns, int64_t current);
  void SeekSpansTo(stage::Loop& loop, Partition& part, int64_t target);
  Status OnSamples(stage::Loop& loop, const kafka::Message& msg);
  void JoinSamples(stage::Loop& loop, const stage::InputToken& input, std::string_view key,
                   std::string_view value, const kafka::Headers& headers);
  void OnEmission(stage::Loop& loop, Partition& part, const correlate::Emission& e);
  void Write(stage::Loop& loop, PendingBatch pb);

  void StartPartitions(stage::Loop& loop, const kafka::TopicPartitions& fresh);
  void StartSamples(int32_t p, const kafka::TopicPartition& committed,
                    const kafka::Watermarks& marks);
  void StartRebuild(stage::Loop& loop, int32_t p, const kafka::TopicPartition& committed,
                    const kafka::Watermarks& marks);
  void FinishRebuilds(stage::Loop& loop);
  void PauseSamples(stage::Loop& loop, int32_t p, bool pause);
  bool Behind(stage::Loop& loop, const std::string& topic, int32_t p, int64_t next);
  void RefreshPending(stage::Loop& loop);
  void Advance(stage::Loop& loop, bool flush);

  const StageConfig& config_;
  obs::Registry& registry_;
  const CommitTopics topics_;
  std::map<int32_t, std::unique_ptr<Partition>> parts_;
  kafka::TopicPartitions newly_assigned_;
  size_t pending_batches_ = 0;
  bool want_pause_ = false;  // batches held in the engines over the bound (Tick)
  Clock::time_point last_pending_refresh_ = Clock::now();
  Clock::time_point last_gauges_ = Clock::now();
};

// --- Start and assignment ---------------------------------------------------------------------

Status CorrelatorHandler::Started(stage::Loop& loop) {
  // Co-partitioning: refuse to start rather than join the wrong partitions.
  Status check;
  for (int attempt = 0; attempt < 5 && !loop.stopping(); ++attempt) {
    check = CheckCopartitioned(loop.producer(), config_.samples_topic, config_.spans_topic,
                               std::chrono::seconds(5));
    if (check.ok() || check.code() == StatusCode::kFailedPrecondition) break;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return check;
}

// On assignment: where reading starts (committed offsets and watermarks of every new
// partition, asked for together: one broker round trip, not one per partition).
void CorrelatorHandler::StartPartitions(stage::Loop& loop, const kafka::TopicPartitions& fresh) {
  kafka::TopicPartitions query;
  for (const kafka::TopicPartition& tp : fresh) {
    query.push_back({tp.topic, tp.partition, kafka::kOffsetInvalid, {}});
  }
  Result<kafka::TopicPartitions> committed =
      loop.consumer().Committed(query, std::chrono::seconds(10));
  if (!committed.ok() || committed->size() != query.size()) {
    log::Warn(
        "committed offsets unknown; reading spans from the earliest record",
        {{"stage", config_.stage_name}, {"error", committed.ok() ? Status() : committed.error()}});
    committed = query;
  }
  const std::vector<kafka::Watermarks> marks =
      loop.consumer().QueryWatermarks(query, std::chrono::seconds(10));
  // Samples first: their commit's metadata says which spans the re-read may skip.
  for (size_t i = 0; i < query.size(); ++i) {
    if (query[i].topic == config_.samples_topic) {
      StartSamples(query[i].partition, (*committed)[i], marks[i]);
    }
  }
  for (size_t i = 0; i < query.size(); ++i) {
    if (query[i].topic != config_.spans_topic) continue;
    kafka::TopicPartition c = (*committed)[i];
    if (!config_.commit_span_offsets)
      c = {config_.spans_topic, c.partition, kafka::kOffsetInvalid, {}};
    StartRebuild(loop, query[i].partition, c, marks[i]);
  }
}

void CorrelatorHandler::StartSamples(int32_t p, const kafka::TopicPartition& committed,
                                     const kafka::Watermarks& marks) {
  Partition& part = Part(p);
  part.replay_from = ParseCommitMetadata(committed.metadata, kSamplesMetadataPrefix);
  if (committed.offset >= 0) {
    part.samples_next = committed.offset;
  } else if (marks.low >= 0) {
    part.samples_next = marks.low;  // auto.offset.reset=earliest
  }
}

// On assignment: the samples of `p` wait until its spans partition has been re-read up to its
// current end (span_rebuild.h says from where).
void CorrelatorHandler::StartRebuild(stage::Loop& loop, int32_t p,
                                     const kafka::TopicPartition& committed,
                                     const kafka::Watermarks& marks) {
  Partition& part = Part(p);
  part.seek_checked = false;
  part.seek_target.reset();
  part.log.span_records.clear();
  part.log.spans_committed = committed.offset;
  part.log.spans_commit_pos = committed.offset;
  part.log.spans_commit_from = kafka::kOffsetInvalid;
  part.log.rebuilding = false;
  if (marks.high < 0) return;  // the broker did not answer: join without a rebuild
  const RebuildPlan plan = PlanRebuild(committed, marks);
  part.spans_next = plan.start;
  if (!plan.rebuild) return;
  part.log.rebuilding = true;
  part.rebuild_until = plan.until;
  part.rebuild_started = Clock::now();
  part.last_span_offset = plan.start - 1;
  part.seek_target = plan.seek_to;
  part.seek_checked = plan.seek_to.has_value();  // the offset is exact: no lookup by time
  PauseSamples(loop, p, true);
  if (part.seek_target.has_value()) SeekSpansTo(loop, part, *part.seek_target);
  log::Info("rebuilding span state",
            {{"stage", config_.stage_name},
             {"partition", p},
             {"from_offset", static_cast<long long>(plan.start)},
             {"committed_offset", static_cast<long long>(committed.offset)},
             {"from_time",
              part.replay_from.has_value() ? std::to_string(*part.replay_from) : std::string("-")},
             {"until_offset", static_cast<long long>(plan.until)}});
}

void CorrelatorHandler::PauseSamples(stage::Loop& loop, int32_t p, bool pause) {
  const kafka::TopicPartitions tp = {{config_.samples_topic, p, kafka::kOffsetInvalid}};
  if (Status s = pause ? loop.consumer().Pause(tp) : loop.consumer().Resume(tp); !s.ok()) {
    log::Warn("pause/resume failed", {{"stage", config_.stage_name}, {"error", s}});
  }
}

void CorrelatorHandler::FinishRebuilds(stage::Loop& loop) {
  for (auto& [p, part] : parts_) {
    if (!part->log.rebuilding) continue;
    if (part->seek_target.has_value() && Clock::now() - part->last_seek >= kSeekRetry) {
      SeekSpansTo(loop, *part, *part->seek_target);  // no record yet: the seek may not have taken
    }
    const bool done = part->last_span_offset + 1 >= part->rebuild_until;
    const bool timed_out = Clock::now() - part->rebuild_started >= config_.rebuild_timeout;
    if (!done && !timed_out) continue;
    part->log.rebuilding = false;
    part->seek_target.reset();
    if (!done) {
      log::Warn("span state rebuild timed out; joining anyway",
                {{"stage", config_.stage_name}, {"partition", p}});
    }
    while (!part->deferred.empty()) {
      DeferredRecord d = std::move(part->deferred.front());
      part->deferred.pop_front();
      JoinSamples(loop, d.input, d.key, d.value, d.headers);
    }
    PauseSamples(loop, p, false);
  }
}

void CorrelatorHandler::Revoked(stage::Loop&, const kafka::TopicPartitions& parts, bool) {
  // The loop flushed and committed what was acknowledged. Held samples are dropped: whoever
  // owns the partition next re-reads them from the committed offset with rebuilt spans.
  for (const kafka::TopicPartition& tp : parts) {
    if (tp.topic != config_.samples_topic) continue;
    auto it = parts_.find(tp.partition);
    if (it == parts_.end()) continue;
    ExportCounters(*it->second);
    pending_batches_ -= it->second->pending.size();
    parts_.erase(it);
  }
}

// --- Spans ------------------------------------------------------------------------------------

void CorrelatorHandler::SeekSpansTo(stage::Loop& loop, Partition& part, int64_t target) {
  part.last_seek = Clock::now();
  // Asynchronous: the loop must not block on a partition whose fetch is still starting.
  // Issued again until a record at the target arrives (FinishRebuilds).
  (void)loop.Seek({config_.spans_topic, part.partition, target, {}}, std::chrono::milliseconds(0));
}

// While a restart's span re-read has not reached its first offset: true (and the seek is
// issued again) when `offset` shows the seek did not take -- a record before the target, or
// the committed position itself; false once a record of [target, committed) arrives.
bool CorrelatorHandler::AwaitingSeek(stage::Loop& loop, Partition& part, int64_t offset) {
  if (!part.log.rebuilding || !part.seek_target.has_value()) return false;
  const int64_t target = *part.seek_target;
  if (offset < target ||
      (part.log.spans_committed > target && offset >= part.log.spans_committed)) {
    SeekSpansTo(loop, part, target);
    return true;
  }
  part.seek_target.reset();  // reading from the restart offset on
  return false;
}

// Seeks spans partition `p` forward to the first record at or after `from_ns` minus the clock
// skew, when that is past `current`. True when it sought.
bool CorrelatorHandler::SeekSpansByTime(stage::Loop& loop, int32_t p, int64_t from_ns,
                                        int64_t current) {
  const int64_t skew = config_.join.max_clock_skew.count();
  const int64_t ts_ms = std::max<int64_t>(0, (from_ns - skew) / 1'000'000);
  Result<int64_t> found =
      loop.consumer().OffsetForTime(config_.spans_topic, p, ts_ms, std::chrono::seconds(5));
  if (!found.ok() || *found <= current) return false;  // no answer (the dev broker gives none)
  if (!loop.Seek({config_.spans_topic, p, *found, {}}, std::chrono::seconds(5)).ok()) return false;
  log::Info("span re-read skips ahead", {{"stage", config_.stage_name},
                                         {"partition", p},
                                         {"offset", static_cast<long long>(*found)}});
  return true;
}

Status CorrelatorHandler::OnSpans(stage::Loop& loop, const kafka::Message& msg) {
  Partition& part = Part(msg.partition());
  if (AwaitingSeek(loop, part, msg.offset())) return OkStatus();
  part.last_span_offset = msg.offset();
  part.spans_next = msg.offset() + 1;
  v1::SpanBatch spans;
  if (!spans.ParseFromArray(msg.value().data(), static_cast<int>(msg.value().size()))) {
    if (msg.offset() < part.log.spans_committed) {
      return OkStatus();  // re-read: the run that committed past it wrote its DLQ record
    }
    return DataLoss("not a flamestream.v1.SpanBatch ({} bytes)", msg.value().size());
  }
  if (part.log.rebuilding && !part.seek_checked) {
    part.seek_checked = true;
    // The partition is being read from its earliest record; skip ahead to the spans the
    // uncommitted samples may need. (Seeking only now, with the fetch under way, is what
    // makes the seek stick: one issued right after the assignment can be overridden by the
    // start position the fetcher is still resolving.)
    if (part.replay_from.has_value() &&
        SeekSpansByTime(loop, msg.partition(), *part.replay_from, msg.offset())) {
      return OkStatus();  // this record is before the target; reading resumes there
    }
  }
  const correlate::SpanOrigin origin = part.log.rebuilding && msg.offset() < part.rebuild_until
                                           ? correlate::SpanOrigin::kReplay
                                           : correlate::SpanOrigin::kLive;
  // The join key is the record key (the samples carry the same); a keyless record falls back
  // to the batch's own cluster/node.
  std::string fallback_key;
  std::string_view key = msg.key();
  if (key.empty()) {
    fallback_key = common::NodeKey::Of(spans.cluster(), spans.node()).str();
    key = fallback_key;
  }
  int64_t max_end = std::numeric_limits<int64_t>::min();
  for (const v1::KeyedSpan& ks : spans.spans()) {
    const correlate::Span s = ToSpan(ks, key);
    max_end = std::max(max_end, s.end_ns);
    part.engine.AddSpan(s, origin);  // a span it already holds is ignored: re-reads are harmless
  }
  if (config_.commit_span_offsets &&
      (part.log.span_records.empty() || part.log.span_records.back().first < msg.offset())) {
    part.log.span_records.emplace_back(msg.offset(), max_end);
  }
  return OkStatus();
}

// --- Samples ----------------------------------------------------------------------------------

Status CorrelatorHandler::OnSamples(stage::Loop& loop, const kafka::Message& msg) {
  Partition& part = Part(msg.partition());
  part.samples_next = msg.offset() + 1;
  const stage::InputToken input = loop.Hold(msg);
  if (part.log.rebuilding) {
    // Joined once the spans are back.
    part.deferred.push_back(
        {input, std::string(msg.key()), std::string(msg.value()), msg.headers()});
    return OkStatus();
  }
  JoinSamples(loop, input, msg.key(), msg.value(), msg.headers());
  return OkStatus();
}

void CorrelatorHandler::JoinSamples(stage::Loop& loop, const stage::InputToken& input,
                                    std::string_view key, std::string_view value,
                                    const kafka::Headers& headers) {
  Result<JoinBatch> decoded = DecodeForJoin(value);
  if (!decoded.ok()) {
    loop.metrics().Errors("decode").Inc();
    const stage::InputPosition& pos = input.position;
    (void)loop.DeadLetter(
        kafka::FailedRecord{pos.topic, pos.partition, pos.offset, key, value, headers},
        decoded.error());
    loop.Release(input);
    return;
  }
  Partition& part = Part(input.position.partition);
  PendingBatch pb{input, std::string(key), headers, std::move(*decoded)};
  if (pb.batch.remaining == 0) {
    Write(loop, std::move(pb));
    return;
  }
  part.log.uncommitted_times[input.position.offset] = pb.batch.min_time_ns;
  const uint32_t id = part.next_batch++;
  PendingBatch& held = part.pending.emplace(id, std::move(pb)).first->second;
  ++pending_batches_;
  // The join key is the record key (spans carry the same); a keyless record falls back to the
  // batch's own cluster/node. The output keeps the input's key either way.
  const std::string fallback_key = held.key.empty()
                                       ? common::NodeKey::Of(held.batch.builder.batch().cluster(),
                                                             held.batch.builder.batch().node())
                                             .str()
                                       : std::string();
  const std::string_view join_key = held.key.empty() ? fallback_key : held.key;
  for (size_t i = 0; i < held.batch.rows.size(); ++i) {
    const batch::SampleRow& r = held.batch.rows[i];
    part.engine.AddSample({.node_key = join_key,
                           .pid = r.pid,
                           .tid = r.tid,
                           .time_ns = r.timestamp_ns,
                           .trace_id = held.batch.direct[i].first,
                           .span_id = held.batch.direct[i].second,
                           .cookie = (static_cast<uint64_t>(id) << 32) | i});
  }
}

void CorrelatorHandler::OnEmission(stage::Loop& loop, Partition& part,
                                   const correlate::Emission& e) {
  const auto id = static_cast<uint32_t>(e.cookie >> 32);
  const auto row = static_cast<size_t>(e.cookie & 0xffffffffu);
  auto it = part.pending.find(id);
  if (it == part.pending.end() || row >= it->second.batch.rows.size()) {
    return;  // cannot happen: every cookie is emitted once
  }
  if (ApplyEmission(it->second.batch, row, e)) {
    PendingBatch done = std::move(it->second);
    part.pending.erase(it);
    --pending_batches_;
    Write(loop, std::move(done));
  }
}

void CorrelatorHandler::Write(stage::Loop& loop, PendingBatch pb) {
  std::vector<stage::Output> out;
  out.push_back({config_.output_topic, std::move(pb.key), FinishBatch(std::move(pb.batch)),
                 std::move(pb.headers)});
  // A batch too large to split becomes a DLQ reference record to its input (read long ago).
  (void)loop.EmitHeld(pb.input, std::move(out));
}

void CorrelatorHandler::Advance(stage::Loop& loop, bool flush) {
  for (auto& [p, part] : parts_) {
    Partition& pr = *part;
    auto emit = [&](const correlate::Emission& e) { OnEmission(loop, pr, e); };
    if (flush) {
      pr.engine.Flush(emit);
    } else {
      pr.engine.Advance(emit);
    }
  }
}

// --- Every poll -------------------------------------------------------------------------------

// Whether (topic, p) has records at or after `next` (high watermark from the last fetch; no
// broker round trip). Unknown watermark: assumed behind until a fetch answers.
bool CorrelatorHandler::Behind(stage::Loop& loop, const std::string& topic, int32_t p,
                               int64_t next) {
  if (next < 0) return false;  // start position unknown: cannot tell; keep the plain idle rule
  Result<kafka::Watermarks> w = loop.consumer().GetWatermarks(topic, p);
  if (!w.ok() || w->high < 0) return true;
  return next < w->high;
}

// Idle means caught up: a partition whose samples or spans are not all read yet (a backlog
// after a pause, the span rebuild, deferred records) must not have its watermark moved by
// processing time, or the spans its backlog needs expire before the backlog is joined.
void CorrelatorHandler::RefreshPending(stage::Loop& loop) {
  for (auto& [p, part] : parts_) {
    const bool pending = part->log.rebuilding || !part->deferred.empty() ||
                         Behind(loop, config_.samples_topic, p, part->samples_next) ||
                         Behind(loop, config_.spans_topic, p, part->spans_next);
    part->engine.SetInputPending(pending);
  }
}

void CorrelatorHandler::Tick(stage::Loop& loop) {
  if (!newly_assigned_.empty()) {
    kafka::TopicPartitions fresh;
    fresh.swap(newly_assigned_);
    StartPartitions(loop, fresh);
  }
  FinishRebuilds(loop);
  for (auto& [p, part] : parts_) {
    if (loop.paused() || part->log.rebuilding) {
      part->Freeze();
    } else {
      part->Thaw();
    }
  }
  if (Clock::now() - last_pending_refresh_ >= kPendingRefresh) {
    RefreshPending(loop);
    last_pending_refresh_ = Clock::now();
  }
  Advance(loop, /*flush=*/false);
  // Hysteresis: input paused above the bound, resumed at half (the loop asks before its poll).
  want_pause_ = pending_batches_ > config_.max_pending_batches ||
                (want_pause_ && pending_batches_ > config_.max_pending_batches / 2);
  if (Clock::now() - last_gauges_ >= kGaugeInterval) {
    UpdateGauges();
    last_gauges_ = Clock::now();
  }
}

// --- Commits ----------------------------------------------------------------------------------

void CorrelatorHandler::PrepareCommit(stage::Loop&, kafka::TopicPartitions& offsets) {
  std::map<int32_t, PartitionRestart> restart;
  for (auto& [p, part] : parts_) {
    restart[p] = {&part->log, part->engine.SpanReplayStartNs()};
  }
  offsets = PlanCommit(topics_, std::move(offsets), restart);
}

void CorrelatorHandler::Committed(stage::Loop&, const kafka::TopicPartitions& offsets,
                                  const Status& result) {
  if (!result.ok()) return;  // the loop counts and logs it; the next commit plans again
  std::map<int32_t, RestartLog*> logs;
  for (auto& [p, part] : parts_) logs[p] = &part->log;
  ApplyCommitted(topics_, offsets, logs);
}

// --- Metrics ----------------------------------------------------------------------------------

void CorrelatorHandler::ExportCounters(Partition& part) {
  const correlate::JoinCounters& c = part.engine.counters();
  correlate::JoinCounters& e = part.exported;
  auto add = [&](uint64_t now, uint64_t& before, const std::string& name, const std::string& help,
                 const obs::Labels& labels) {
    if (now > before) obs::AddGrowth(Count(name, help, labels), now, before);
  };
  const std::string samples = "fs_correlator_samples_total";
  const std::string samples_help = "samples emitted, by how they joined";
  add(c.samples_matched, e.samples_matched, samples, samples_help, {{"result", "matched"}});
  add(c.samples_direct, e.samples_direct, samples, samples_help, {{"result", "direct"}});
  add(c.samples_unmatched, e.samples_unmatched, samples, samples_help, {{"result", "unmatched"}});
  add(c.samples_direct_unknown_span, e.samples_direct_unknown_span,
      "fs_correlator_direct_unknown_span_total",
      "samples that carried span ids whose span was not held (no name)", {});
  add(c.late_samples, e.late_samples, "fs_correlator_late_samples_total",
      "samples that arrived after the watermark passed their time", {});
  add(c.future_timestamps, e.future_timestamps, "fs_correlator_future_timestamps_total",
      "samples whose time was beyond now + max clock skew", {});
  const std::string spans = "fs_correlator_spans_total";
  const std::string spans_help = "spans read, by outcome";
  add(c.spans_in, e.spans_in, spans, spans_help, {{"kind", "in"}});
  add(c.spans_replayed, e.spans_replayed, spans, spans_help, {{"kind", "replayed"}});
  add(c.spans_duplicate, e.spans_duplicate, spans, spans_help, {{"kind", "duplicate"}});
  add(c.spans_invalid, e.spans_invalid, spans, spans_help, {{"kind", "invalid"}});
  add(c.spans_no_process, e.spans_no_process, spans, spans_help, {{"kind", "no_process"}});
  add(c.spans_expired, e.spans_expired, spans, spans_help, {{"kind", "expired"}});
  const std::string late = "fs_correlator_late_spans_total";
  const std::string late_help =
      "spans that arrived after the watermark passed their end (beyond lateness)";
  add(c.late_spans, e.late_spans, late, late_help, {{"kind", "late"}});
  add(c.partially_late_spans, e.partially_late_spans, late, late_help,
      {{"kind", "partially_late"}});
  const std::string ev = "fs_correlator_evictions_total";
  const std::string ev_help = "state dropped early because a bound was reached";
  add(c.spans_evicted, e.spans_evicted, ev, ev_help, {{"what", "spans"}});
  add(c.samples_evicted, e.samples_evicted, ev, ev_help, {{"what", "samples"}});
  add(c.service_conflicts, e.service_conflicts, "fs_correlator_service_conflicts_total",
      "processes whose spans named different services", {});
}

void CorrelatorHandler::UpdateGauges() {
  size_t spans = 0;
  size_t held = 0;
  for (auto& [p, part] : parts_) {
    ExportCounters(*part);
    spans += part->engine.active_spans();
    held += part->engine.held_samples();
    registry_
        .Gauge("fs_correlator_watermark_seconds", "event-time watermark of the partition",
               {{"stage", config_.stage_name}, {"partition", std::to_string(p)}})
        .Set(static_cast<double>(part->engine.watermark_ns()) / 1e9);
  }
  const obs::Labels stage = {{"stage", config_.stage_name}};
  registry_.Gauge("fs_correlator_active_spans", "spans held", stage)
      .Set(static_cast<double>(spans));
  registry_.Gauge("fs_correlator_held_samples", "samples waiting for the watermark", stage)
      .Set(static_cast<double>(held));
  registry_.Gauge("fs_correlator_pending_batches", "batches not yet written", stage)
      .Set(static_cast<double>(pending_batches_));
}

}  // namespace

void ApplyReplayMode(StageConfig& config) {
  config.samples_topic = kafka::topics::Replay(kafka::topics::kSamplesSymbolized);
  config.output_topic = kafka::topics::Replay(kafka::topics::kSamplesCorrelated);
  config.group += "-replay";
  config.stop_when_caught_up = true;
  // A replay reads the spans of its own time range: no position to resume from.
  config.commit_span_offsets = false;
}

Status CheckCopartitioned(kafka::Producer& producer, const std::string& samples_topic,
                          const std::string& spans_topic, std::chrono::milliseconds timeout) {
  FS_ASSIGN_OR_RETURN(const int samples, producer.PartitionCount(samples_topic, timeout));
  FS_ASSIGN_OR_RETURN(const int spans, producer.PartitionCount(spans_topic, timeout));
  if (samples != spans) {
    return FailedPrecondition(
        "topics are not co-partitioned: {} has {} partitions, {} has {}; the correlator needs "
        "partition p of both on one instance, so their partition counts must be equal",
        samples_topic, samples, spans_topic, spans);
  }
  return OkStatus();
}

CorrelatorStage::CorrelatorStage(StageConfig config, obs::Registry& metrics)
    : config_(std::move(config)), metrics_(metrics) {}

CorrelatorStage::~CorrelatorStage() = default;

Status CorrelatorStage::Run(service::Context& ctx) {
  stage::LoopConfig lc;
  lc.stage = config_.stage_name;
  lc.group_id = config_.group;
  lc.input_topics = {config_.samples_topic, config_.spans_topic};
  lc.kafka = config_.kafka;
  // Only range gives one instance partition p of both topics; a librdkafka property must not
  // override that (e.g. a cooperative-sticky setting shared with the other stages' configs).
  lc.assignor = kafka::Assignor::kRange;
  if (auto it = lc.kafka.find("partition.assignment.strategy");
      it != lc.kafka.end() && it->second != "range") {
    log::Warn("ignoring kafka.partition.assignment.strategy: the correlator needs range",
              {{"stage", config_.stage_name}, {"configured", it->second}});
    lc.kafka.erase(it);
  }
  lc.poll_timeout = config_.poll_timeout;
  lc.commit_interval = config_.commit_interval;
  lc.max_in_flight = config_.max_in_flight;
  lc.drain_timeout = config_.drain_timeout;
  lc.stop_when_caught_up = config_.stop_when_caught_up;
  lc.caught_up_idle = config_.caught_up_idle;
  lc.split = config_.split;
  CorrelatorHandler handler(config_, metrics_);
  stage::LoopEnv env{metrics_, ctx.stop, ctx.set_ready, &abandon_};
  return stage::RunLoop(lc, env, handler);
}

}  // namespace flamestream::correlator
