#include "correlator_stage.h"

#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/common/strings.h"
#include "flamestream/kafka/ack_tracker.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/log/log.h"
#include "flamestream/stage/acked_produce.h"
#include "flamestream/stage/failure_latch.h"
#include "flamestream/v1/samples.pb.h"
#include "flamestream/v1/spans.pb.h"

namespace flamestream::correlator {
namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = ::flamestream::v1;

// Commit metadata on samples partitions: the earliest span end the uncommitted samples may
// still need ("fs-corr rf=<unix ns>").
constexpr std::string_view kMetadataPrefix = "fs-corr rf=";
// Commit metadata on keyed-span partitions: the first offset a restart must re-read to rebuild
// the span state ("fs-corr from=<offset>"); the committed offset itself is the position read.
constexpr std::string_view kSpansMetadataPrefix = "fs-corr from=";
// How often the input-pending state of every partition is refreshed, and how often a span
// replay seek that did not take is issued again.
constexpr auto kPendingRefresh = std::chrono::milliseconds(50);
constexpr auto kSeekRetry = std::chrono::milliseconds(500);

// The committed offset and metadata of (topic, p) for the consumer's group.
// kOffsetInvalid and no metadata when there is none or the broker does not answer.
kafka::TopicPartition QueryCommitted(kafka::Consumer& consumer, const std::string& topic,
                                     int32_t p) {
  kafka::TopicPartition none{topic, p, kafka::kOffsetInvalid, {}};
  Result<kafka::TopicPartitions> got = consumer.Committed({none}, std::chrono::seconds(10));
  if (!got.ok() || got->empty()) return none;
  return std::move(got->front());
}

std::optional<int64_t> ParseMetadata(std::string_view md, std::string_view prefix) {
  if (!md.starts_with(prefix)) {
    return std::nullopt;
  }
  Result<int64_t> v = common::ParseInt<int64_t>(md.substr(prefix.size()));
  if (!v.ok()) {
    return std::nullopt;
  }
  return *v;
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

// ---------------------------------------------------------------------------------------------

struct CorrelatorStage::State {
  // A sample batch waiting for its samples to be emitted.
  struct PendingBatch {
    int64_t offset = 0;
    std::string key;
    kafka::Headers headers;
    batch::BatchBuilder builder;  // the input batch without its samples
    std::vector<batch::SampleRow> rows;
    std::vector<uint32_t> span_index;  // result per row
    size_t remaining = 0;
    int64_t min_time_ns = std::numeric_limits<int64_t>::max();
    absl::flat_hash_map<uint32_t, std::string> services;  // host pid -> learned service
  };
  struct Partition {
    Partition(int32_t p, const correlate::JoinConfig& join)
        : partition(p), engine(join, [this] { return Now(); }) {}
    int32_t partition;
    // The engine's processing-time clock stands still while this partition's samples are held
    // back by the stage (span rebuild, backpressure): otherwise its idle rule would take the
    // pause for a quiet partition, move the watermark to now and expire the rebuilt spans of
    // a partition that is catching up on older samples.
    int64_t clock_lag_ns = 0;
    int64_t frozen_at_ns = -1;
    int64_t Now() const {
      return frozen_at_ns >= 0 ? frozen_at_ns
                               : correlate::JoinEngine::SystemClockNs() - clock_lag_ns;
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
    // Samples records that arrived while the span state was being rebuilt.
    std::deque<kafka::Message> deferred;
    uint32_t next_batch = 0;
    std::map<uint32_t, PendingBatch> pending;
    // Earliest sample time of every samples batch not yet committed, by input offset (for the
    // span-replay start stored with a commit).
    std::map<int64_t, int64_t> uncommitted_times;
    // Rebuild: spans below this offset are a replay; samples paused until it is reached.
    int64_t rebuild_until = -1;
    bool rebuilding = false;
    Clock::time_point rebuild_started;
    int64_t last_span_offset = -1;
    // From the samples commit's metadata: spans ending before this are not needed.
    std::optional<int64_t> replay_from;
    bool seek_checked = false;
    // From the spans commit: where the rebuild re-reads from (its metadata) and the committed
    // position. Until a record at or after seek_target (and before spans_committed) arrives,
    // the seek is issued again: librdkafka may still override one made right after the
    // assignment with the committed position it is resolving.
    std::optional<int64_t> seek_target;
    int64_t spans_committed = kafka::kOffsetInvalid;
    Clock::time_point last_seek;
    // The spans position and restart offset last committed: the metadata is committed again
    // when the restart offset moves (the watermark advanced) though the position did not.
    int64_t spans_commit_pos = kafka::kOffsetInvalid;
    int64_t spans_commit_from = kafka::kOffsetInvalid;
    // Keyed-span records read, in offset order: (offset, latest span end in it). The first
    // record whose spans end at or after the replay start is where a restart re-reads from.
    std::deque<std::pair<int64_t, int64_t>> span_records;
    // Next offset to read of the samples and spans partitions (committed or earliest at the
    // assignment, then one past each record read); for the input-pending state.
    int64_t samples_next = kafka::kOffsetInvalid;
    int64_t spans_next = kafka::kOffsetInvalid;
    // Counter export.
    correlate::JoinCounters exported;
  };

  State(const StageConfig& c, obs::Registry& r)
      : config(c), registry(r), metrics(r, c.stage_name) {}

  const StageConfig& config;
  obs::Registry& registry;
  obs::StageMetrics metrics;
  kafka::AckTracker acks;
  stage::FailureLatch failure;
  stage::RefusedOutputs refused;
  std::unique_ptr<kafka::Producer> producer;
  std::unique_ptr<kafka::DlqWriter> dlq;
  std::unique_ptr<kafka::Consumer> consumer;
  std::map<int32_t, std::unique_ptr<Partition>> parts;
  kafka::TopicPartitions newly_assigned;
  std::set<int32_t> paused;  // samples partitions paused (rebuild or backpressure)
  bool backpressure = false;
  size_t pending_batches = 0;

  obs::Counter& Count(const std::string& name, const std::string& help,
                      const obs::Labels& labels = {}) {
    obs::Labels l = labels;
    l.emplace_back("stage", config.stage_name);
    return registry.Counter(name, help, l);
  }

  Partition& Part(int32_t p) {
    auto it = parts.find(p);
    if (it == parts.end()) {
      it = parts.emplace(p, std::make_unique<Partition>(p, config.join)).first;
    }
    return *it->second;
  }

  void ExportCounters(Partition& part) {
    const correlate::JoinCounters& c = part.engine.counters();
    correlate::JoinCounters& e = part.exported;
    auto add = [&](uint64_t now, uint64_t& before, const std::string& name, const std::string& help,
                   const obs::Labels& labels) {
      if (now > before) {
        Count(name, help, labels).Inc(now - before);
      }
      before = now;
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
    add(c.late_spans, e.late_spans, "fs_correlator_late_spans_total",
        "spans that arrived after the watermark passed their end (beyond lateness)",
        {{"kind", "late"}});
    add(c.partially_late_spans, e.partially_late_spans, "fs_correlator_late_spans_total",
        "spans that arrived after the watermark passed their end (beyond lateness)",
        {{"kind", "partially_late"}});
    const std::string ev = "fs_correlator_evictions_total";
    const std::string ev_help = "state dropped early because a bound was reached";
    add(c.spans_evicted, e.spans_evicted, ev, ev_help, {{"what", "spans"}});
    add(c.samples_evicted, e.samples_evicted, ev, ev_help, {{"what", "samples"}});
    add(c.service_conflicts, e.service_conflicts, "fs_correlator_service_conflicts_total",
        "processes whose spans named different services", {});
  }

  void UpdateGauges() {
    size_t spans = 0;
    size_t held = 0;
    for (auto& [p, part] : parts) {
      ExportCounters(*part);
      spans += part->engine.active_spans();
      held += part->engine.held_samples();
      registry
          .Gauge("fs_correlator_watermark_seconds", "event-time watermark of the partition",
                 {{"stage", config.stage_name}, {"partition", std::to_string(p)}})
          .Set(static_cast<double>(part->engine.watermark_ns()) / 1e9);
    }
    registry.Gauge("fs_correlator_active_spans", "spans held", {{"stage", config.stage_name}})
        .Set(static_cast<double>(spans));
    registry
        .Gauge("fs_correlator_held_samples", "samples waiting for the watermark",
               {{"stage", config.stage_name}})
        .Set(static_cast<double>(held));
    registry
        .Gauge("fs_correlator_pending_batches", "batches not yet written",
               {{"stage", config.stage_name}})
        .Set(static_cast<double>(pending_batches));
  }

  // --- Input ---------------------------------------------------------------------------------

  // `track`: the input offset waits for the DLQ record (always for samples; for spans when
  // their offsets are committed, else a bad spans record goes to the DLQ again after a
  // restart).
  void Dlq(const kafka::Message& msg, const Status& error, bool track = true) {
    metrics.Errors("decode").Inc();
    log::Warn("record sent to the DLQ", {{"stage", config.stage_name},
                                         {"topic", msg.topic()},
                                         {"partition", msg.partition()},
                                         {"offset", static_cast<long long>(msg.offset())},
                                         {"error", error}});
    const std::string topic(msg.topic());
    const int32_t partition = msg.partition();
    const int64_t offset = msg.offset();
    if (track) {
      acks.Track(topic, partition, offset, 1);
    }
    Status s = dlq->Write(msg, error,
                          [this, topic, partition, offset, track](const kafka::DeliveryReport& r) {
                            if (r.status.ok()) {
                              metrics.dlq_records.Inc();
                              if (track) {
                                acks.Ack(topic, partition, offset);
                              }
                            } else {
                              failure.Set(r.status.WithContext("DLQ delivery failed"));
                            }
                          });
    if (!s.ok()) {
      failure.Set(s.WithContext("DLQ produce"));
    }
  }

  // While a restart's span re-read has not reached its first offset: true (and the seek is
  // issued again) when `offset` shows the seek did not take -- a record before the target, or
  // the committed position itself; false once a record of [target, committed) arrives.
  bool AwaitingSeek(Partition& part, int64_t offset) {
    if (!part.rebuilding || !part.seek_target.has_value()) {
      return false;
    }
    const int64_t target = *part.seek_target;
    if (offset < target || (part.spans_committed > target && offset >= part.spans_committed)) {
      SeekSpansTo(part, target);
      return true;
    }
    part.seek_target.reset();  // reading from the restart offset on
    return false;
  }

  void OnSpans(const kafka::Message& msg) {
    Partition& part = Part(msg.partition());
    if (AwaitingSeek(part, msg.offset())) {
      return;
    }
    v1::SpanBatch spans;
    if (!spans.ParseFromArray(msg.value().data(), static_cast<int>(msg.value().size()))) {
      part.last_span_offset = msg.offset();
      part.spans_next = msg.offset() + 1;
      if (msg.offset() < part.spans_committed) {
        return;  // re-read: the run that committed past it wrote its DLQ record
      }
      Dlq(msg, DataLoss("not a flamestream.v1.SpanBatch ({} bytes)", msg.value().size()),
          /*track=*/config.commit_span_offsets);
      return;
    }
    if (part.rebuilding && !part.seek_checked) {
      part.seek_checked = true;
      // The partition is being read from its earliest record; skip ahead to the spans the
      // uncommitted samples may need. (Seeking only now, with the fetch under way, is what
      // makes the seek stick: one issued right after the assignment can be overridden by the
      // start position the fetcher is still resolving.)
      if (part.replay_from.has_value() &&
          SeekSpans(msg.partition(), *part.replay_from, msg.offset())) {
        return;  // this record is before the target; reading resumes there
      }
    }
    const bool replay = part.rebuilding && msg.offset() < part.rebuild_until;
    int64_t max_end = std::numeric_limits<int64_t>::min();
    std::string fallback_key;
    std::string_view key = msg.key();
    if (key.empty()) {
      fallback_key = fmt::format("{}/{}", spans.cluster(), spans.node());
      key = fallback_key;
    }
    for (const v1::KeyedSpan& ks : spans.spans()) {
      correlate::Span s;
      s.trace_id = correlate::TraceId::FromBytes(ks.trace_id());
      s.span_id = correlate::SpanId::FromBytes(ks.span_id());
      s.parent_span_id = correlate::SpanId::FromBytes(ks.parent_span_id());
      s.name = ks.name();
      s.service = ks.service_name();
      s.start_ns = static_cast<int64_t>(ks.start_time_unix_ns());
      s.end_ns = static_cast<int64_t>(ks.end_time_unix_ns());
      s.node_key = key;
      // The host pid the samples carry: the router's resolution, else process.pid when the
      // span does not come from a container or pod (there it is a namespace pid).
      if (ks.host_pid() != 0) {
        s.pid = ks.host_pid();
      } else if (ks.container_id().empty() && ks.k8s_pod_uid().empty()) {
        s.pid = ks.pid();
      }
      s.thread_id = ks.thread_id() > 0 ? static_cast<uint64_t>(ks.thread_id()) : 0;
      max_end = std::max(max_end, s.end_ns);
      part.engine.AddSpan(s,
                          replay ? correlate::SpanOrigin::kReplay : correlate::SpanOrigin::kLive);
    }
    // The engine ignores spans it already holds, so re-reading a record is harmless. The
    // committed spans offset is the position read; its metadata names the first record a
    // restart needs (see Commit()).
    if (config.commit_span_offsets) {
      if (part.span_records.empty() || part.span_records.back().first < msg.offset()) {
        part.span_records.emplace_back(msg.offset(), max_end);
      }
      acks.Track(std::string(msg.topic()), msg.partition(), msg.offset(), 0);
    }
    part.last_span_offset = msg.offset();
    part.spans_next = msg.offset() + 1;
  }

  void OnSamples(kafka::Message msg) {
    Partition& target = Part(msg.partition());
    target.samples_next = msg.offset() + 1;
    if (target.rebuilding) {
      target.deferred.push_back(std::move(msg));  // joined once the spans are back
      return;
    }
    JoinSamples(msg);
  }

  void JoinSamples(const kafka::Message& msg) {
    v1::SampleBatch in;
    if (!in.ParseFromArray(msg.value().data(), static_cast<int>(msg.value().size()))) {
      Dlq(msg, DataLoss("not a flamestream.v1.SampleBatch ({} bytes)", msg.value().size()));
      return;
    }
    if (Status s = batch::Validate(in); !s.ok()) {
      Dlq(msg, s.WithContext(batch::BatchIdString(in.id())));
      return;
    }
    if (in.stage() != v1::STAGE_SYMBOLIZED) {
      Dlq(msg, InvalidArgument("batch {} has stage {}, want STAGE_SYMBOLIZED",
                               batch::BatchIdString(in.id()), v1::Stage_Name(in.stage())));
      return;
    }
    PendingBatch pb;
    pb.offset = msg.offset();
    pb.key = std::string(msg.key());
    pb.headers = msg.headers();
    pb.rows = batch::DecodeSamples(in);
    // Direct joins: the ids the batch already carries, per row.
    std::vector<std::pair<correlate::TraceId, correlate::SpanId>> direct(pb.rows.size());
    for (size_t i = 0; i < pb.rows.size(); ++i) {
      if (const v1::SpanRef* ref = batch::SpanOf(in, pb.rows[i].span_index); ref != nullptr) {
        direct[i] = {correlate::TraceId::FromBytes(ref->trace_id()),
                     correlate::SpanId::FromBytes(ref->span_id())};
      }
    }
    in.clear_samples();
    Result<batch::BatchBuilder> builder = batch::BatchBuilder::FromBatch(std::move(in));
    if (!builder.ok()) {
      Dlq(msg, builder.error());
      return;
    }
    pb.builder = std::move(*builder);
    pb.span_index.resize(pb.rows.size());
    for (size_t i = 0; i < pb.rows.size(); ++i) {
      pb.span_index[i] = pb.rows[i].span_index;  // kept for direct joins the engine names
      pb.min_time_ns = std::min(pb.min_time_ns, pb.rows[i].timestamp_ns);
    }
    pb.remaining = pb.rows.size();

    Partition& part = Part(msg.partition());
    acks.Track(std::string(msg.topic()), msg.partition(), msg.offset(), 1);
    if (pb.remaining > 0) {
      part.uncommitted_times[msg.offset()] = pb.min_time_ns;
    }
    const uint32_t id = part.next_batch++;
    if (pb.remaining == 0) {
      Write(msg.partition(), std::move(pb));
      return;
    }
    auto [it, inserted] = part.pending.emplace(id, std::move(pb));
    (void)inserted;
    ++pending_batches;
    PendingBatch& held = it->second;
    // The join key is the record key (spans carry the same); a keyless record falls back to
    // the batch's own cluster/node. The output keeps the input's key either way.
    const std::string fallback_key =
        held.key.empty()
            ? fmt::format("{}/{}", held.builder.batch().cluster(), held.builder.batch().node())
            : std::string();
    const std::string_view key = held.key.empty() ? fallback_key : held.key;
    for (size_t i = 0; i < held.rows.size(); ++i) {
      const batch::SampleRow& r = held.rows[i];
      part.engine.AddSample({.node_key = key,
                             .pid = r.pid,
                             .tid = r.tid,
                             .time_ns = r.timestamp_ns,
                             .trace_id = direct[i].first,
                             .span_id = direct[i].second,
                             .cookie = (static_cast<uint64_t>(id) << 32) | i});
    }
  }

  // --- Output --------------------------------------------------------------------------------

  void OnEmission(Partition& part, const correlate::Emission& e) {
    const uint32_t id = static_cast<uint32_t>(e.cookie >> 32);
    const size_t row = static_cast<size_t>(e.cookie & 0xffffffffu);
    auto it = part.pending.find(id);
    if (it == part.pending.end() || row >= it->second.rows.size()) {
      return;  // cannot happen: every cookie is emitted once
    }
    PendingBatch& pb = it->second;
    if (e.kind != correlate::MatchKind::kUnmatched) {
      v1::SpanRef ref;
      ref.set_trace_id(e.trace_id.ToBytes());
      ref.set_span_id(e.span_id.ToBytes());
      ref.set_name(std::string(e.span_name));
      ref.set_service_name(std::string(e.service_name));
      const uint32_t idx = pb.builder.InternSpan(ref);
      pb.span_index[row] = idx;
      // A direct join to a span the batch already listed without a name: name it now.
      v1::SpanRef* existing = pb.builder.mutable_batch().mutable_spans(static_cast<int>(idx) - 1);
      if (existing->name().empty() && !e.span_name.empty()) {
        existing->set_name(std::string(e.span_name));
      }
      if (existing->service_name().empty() && !e.service_name.empty()) {
        existing->set_service_name(std::string(e.service_name));
      }
    }
    // Unmatched: span_index stays as received (0, or ids the agent set that name no held span).
    if (!e.service_name.empty()) {
      std::string& svc = pb.services[pb.rows[row].pid];
      // The engine's rule (smallest non-empty name) so the batch agrees with it.
      if (svc.empty() || e.service_name < svc) {
        svc = std::string(e.service_name);
      }
    }
    if (--pb.remaining == 0) {
      PendingBatch done = std::move(pb);
      part.pending.erase(it);
      --pending_batches;
      Write(part.partition, std::move(done));
    }
  }

  void Write(int32_t partition, PendingBatch pb) {
    batch::BatchBuilder& b = pb.builder;
    for (auto& [pid, svc] : pb.services) {
      v1::Process proc;
      proc.set_host_pid(pid);
      for (const v1::Process& p : b.batch().processes()) {
        if (p.host_pid() == pid) {
          proc = p;
          break;
        }
      }
      proc.set_service_name(svc);
      b.AddProcess(proc);
    }
    for (size_t i = 0; i < pb.rows.size(); ++i) {
      const batch::SampleRow& r = pb.rows[i];
      b.AddSample({.stack_index = r.stack_index,
                   .pid = r.pid,
                   .tid = r.tid,
                   .cpu = r.cpu,
                   .timestamp_ns = r.timestamp_ns,
                   .value_ns = r.value_ns,
                   .span_index = pb.span_index[i]});
    }
    b.mutable_batch().set_stage(v1::STAGE_CORRELATED);
    const v1::SampleBatch out = b.Finish();
    const stage::InputPosition in{config.samples_topic, partition, pb.offset};
    Result<std::vector<stage::Output>> pieces =
        stage::FitOutput({config.output_topic, pb.key, out.SerializeAsString(), pb.headers},
                         producer->max_message_bytes(), config.split);
    if (!pieces.ok()) {
      // The input was read long ago (held for the watermark): a reference record to it.
      metrics.Errors("too_large").Inc();
      const kafka::FailedRecord record{in.topic, in.partition, in.offset, pb.key, "", pb.headers};
      Status s = dlq->Write(record, pieces.error(), [this, in](const kafka::DeliveryReport& r) {
        if (r.status.ok()) {
          metrics.dlq_records.Inc();
          acks.Ack(in.topic, in.partition, in.offset);
        } else {
          failure.Set(r.status.WithContext("DLQ delivery failed"));
        }
      });
      if (!s.ok()) failure.Set(s.WithContext("DLQ produce"));
      return;
    }
    if (pieces->size() > 1) {
      acks.Extend(in.topic, in.partition, in.offset, static_cast<uint32_t>(pieces->size() - 1));
    }
    for (const stage::Output& piece : *pieces) {
      Status s = stage::ProduceAcked(*producer, in, Clock::now(), piece.topic, piece.key,
                                     piece.value, piece.headers, metrics, acks, failure, &refused);
      if (s.code() == StatusCode::kOutOfRange) {
        refused.Push({in, piece});  // over the limit after all: split like a refusal
      } else if (!s.ok()) {
        metrics.Errors("produce").Inc();
        failure.Set(s.WithContext("produce"));
      }
    }
  }

  // Outputs the broker refused as too large: sent again in halves (stage/oversize.h).
  void ProduceRefused() {
    if (refused.empty()) return;
    if (Status s =
            stage::ProduceRefused(refused, config.split, *producer, *dlq, metrics, acks, failure);
        !s.ok()) {
      failure.Set(s.WithContext("produce split output"));
    }
  }

  // Whether (topic, p) has records at or after `next` (high watermark from the last fetch; no
  // broker round trip). Unknown watermark: assumed behind until a fetch answers.
  bool Behind(const std::string& topic, int32_t p, int64_t next) {
    if (next < 0) {
      return false;  // start position unknown: cannot tell; keep the plain idle rule
    }
    Result<kafka::Watermarks> w = consumer->GetWatermarks(topic, p);
    if (!w.ok() || w->high < 0) return true;
    return next < w->high;
  }

  // Idle means caught up: a partition whose samples or spans are not all read yet (a backlog
  // after a pause, the span rebuild, deferred records) must not have its watermark moved by
  // processing time, or the spans its backlog needs expire before the backlog is joined.
  void RefreshPending() {
    for (auto& [p, part] : parts) {
      const bool pending = part->rebuilding || !part->deferred.empty() ||
                           Behind(config.samples_topic, p, part->samples_next) ||
                           Behind(config.spans_topic, p, part->spans_next);
      part->engine.SetInputPending(pending);
    }
  }

  void Advance(bool flush) {
    for (auto& [p, part] : parts) {
      Partition& pr = *part;
      auto emit = [this, &pr](const correlate::Emission& e) { OnEmission(pr, e); };
      if (flush) {
        pr.engine.Flush(emit);
      } else {
        pr.engine.Advance(emit);
      }
    }
  }

  // --- Assignment and rebuild ----------------------------------------------------------------

  // The replay-from time in the committed metadata of samples partition `p`, if any.
  std::optional<int64_t> CommittedReplayFrom(int32_t p) {
    return ParseMetadata(QueryCommitted(*consumer, config.samples_topic, p).metadata,
                         kMetadataPrefix);
  }

  // On assignment of samples partition `p`: where reading starts (for the pending state).
  void StartSamples(int32_t p) {
    Partition& part = Part(p);
    const kafka::TopicPartition c = QueryCommitted(*consumer, config.samples_topic, p);
    if (c.offset >= 0) {
      part.samples_next = c.offset;
    } else if (Result<kafka::Watermarks> w =
                   consumer->GetWatermarks(config.samples_topic, p, std::chrono::seconds(10));
               w.ok()) {
      part.samples_next = w->low;  // auto.offset.reset=earliest
    }
  }

  void SeekSpansTo(Partition& part, int64_t target) {
    part.last_seek = Clock::now();
    // Asynchronous (timeout 0): the main loop must not block on a partition whose fetch is
    // still starting. Issued again until a record at the target arrives (CheckRebuilds).
    (void)consumer->Seek({config.spans_topic, part.partition, target, {}},
                         std::chrono::milliseconds(0));
  }

  // Seeks spans partition `p` forward to the first record at or after `from_ns` minus the
  // clock skew, when that is past `current`. True when it sought.
  bool SeekSpans(int32_t p, int64_t from_ns, int64_t current) {
    const int64_t skew = config.join.max_clock_skew.count();
    const int64_t ts_ms = std::max<int64_t>(0, (from_ns - skew) / 1'000'000);
    Result<int64_t> found =
        consumer->OffsetForTime(config.spans_topic, p, ts_ms, std::chrono::seconds(5));
    if (!found.ok() || *found <= current) {
      return false;  // no answer (the dev broker gives none): read on from here
    }
    const int64_t target = *found;
    if (!consumer->Seek({config.spans_topic, p, target, {}}, std::chrono::seconds(5)).ok()) {
      return false;
    }
    log::Info("span replay skips ahead", {{"stage", config.stage_name},
                                          {"partition", p},
                                          {"offset", static_cast<long long>(target)}});
    return true;
  }

  // On assignment: the samples of `p` wait until its spans partition has been re-read up to
  // its current end.
  //
  // Where the re-read starts: with a committed spans offset, the first record the committed
  // samples still need (the commit's metadata), so a restart re-reads about one lateness
  // window of spans, not the topic. Without one (first start, replay mode), the earliest
  // record, skipping ahead by time where the broker can look offsets up by time (OnSpans).
  void StartRebuild(int32_t p) {
    Partition& part = Part(p);
    part.replay_from = CommittedReplayFrom(p);
    part.seek_checked = false;
    part.seek_target.reset();
    part.span_records.clear();
    const kafka::TopicPartition committed =
        config.commit_span_offsets
            ? QueryCommitted(*consumer, config.spans_topic, p)
            : kafka::TopicPartition{config.spans_topic, p, kafka::kOffsetInvalid, {}};
    part.spans_committed = committed.offset;
    part.spans_commit_pos = committed.offset;
    part.spans_commit_from = kafka::kOffsetInvalid;
    Result<kafka::Watermarks> marks =
        consumer->GetWatermarks(config.spans_topic, p, std::chrono::seconds(10));
    if (!marks.ok()) {
      part.rebuilding = false;
      return;
    }
    const int64_t low = marks->low;
    const int64_t high = marks->high;
    int64_t start = low;
    if (committed.offset >= 0) {
      start = committed.offset;
      if (std::optional<int64_t> from = ParseMetadata(committed.metadata, kSpansMetadataPrefix);
          from.has_value() && *from < committed.offset) {
        start = std::max(*from, low);
        if (start < committed.offset) {
          part.seek_target = start;
          part.seek_checked = true;  // the offset is exact: no lookup by time
        }
      }
    }
    part.spans_next = start;
    if (high <= start) {
      part.rebuilding = false;
      part.seek_target.reset();
      return;
    }
    part.rebuilding = true;
    part.rebuild_until = high;
    part.rebuild_started = Clock::now();
    part.last_span_offset = start - 1;
    PauseSamples(p);
    if (part.seek_target.has_value()) {
      SeekSpansTo(part, *part.seek_target);
    }
    log::Info("rebuilding span state",
              {{"stage", config.stage_name},
               {"partition", p},
               {"from_offset", static_cast<long long>(start)},
               {"committed_offset", static_cast<long long>(committed.offset)},
               {"from_time", part.replay_from.has_value() ? std::to_string(*part.replay_from)
                                                          : std::string("-")},
               {"until_offset", static_cast<long long>(high)}});
  }

  void PauseSamples(int32_t p) {
    Part(p).Freeze();
    if (paused.insert(p).second) {
      (void)consumer->Pause({{config.samples_topic, p, kafka::kOffsetInvalid}});
    }
  }
  void ResumeSamples(int32_t p) {
    Part(p).Thaw();
    if (paused.erase(p) > 0) {
      (void)consumer->Resume({{config.samples_topic, p, kafka::kOffsetInvalid}});
    }
  }

  void CheckRebuilds() {
    for (auto& [p, part] : parts) {
      if (!part->rebuilding) {
        continue;
      }
      if (part->seek_target.has_value() && Clock::now() - part->last_seek >= kSeekRetry) {
        SeekSpansTo(*part, *part->seek_target);  // no record yet: the seek may not have taken
      }
      const bool done = part->last_span_offset + 1 >= part->rebuild_until;
      const bool timed_out = Clock::now() - part->rebuild_started >= config.rebuild_timeout;
      if (done || timed_out) {
        part->rebuilding = false;
        part->seek_target.reset();
        if (timed_out && !done) {
          log::Warn("span state rebuild timed out; joining anyway",
                    {{"stage", config.stage_name}, {"partition", p}});
        }
        while (!part->deferred.empty()) {
          kafka::Message m = std::move(part->deferred.front());
          part->deferred.pop_front();
          JoinSamples(m);
        }
        if (!backpressure) {
          ResumeSamples(p);
        }
      }
    }
  }

  void Backpressure() {
    const bool over = producer->OutstandingCount() > config.max_in_flight ||
                      pending_batches > config.max_pending_batches;
    const bool under = producer->OutstandingCount() <= config.max_in_flight / 2 &&
                       pending_batches <= config.max_pending_batches / 2;
    if (!backpressure && over) {
      backpressure = true;
      for (auto& [p, part] : parts) {
        PauseSamples(p);
      }
    } else if (backpressure && under) {
      backpressure = false;
      for (auto& [p, part] : parts) {
        if (!part->rebuilding) {
          ResumeSamples(p);
        }
      }
    }
  }

  // --- Commit --------------------------------------------------------------------------------

  // The span end from which partition `part`'s uncommitted samples may still need spans after a
  // restart: those the engine still holds, and those around every batch from the committed
  // offset on (emitted but not yet acknowledged batches, late samples).
  int64_t SpanReplayStart(const Partition& part) const {
    int64_t from = part.engine.SpanReplayStartNs();
    for (const auto& [offset, t] : part.uncommitted_times) {
      from = std::min(from, t - config.join.allowed_lateness.count());
    }
    return from;
  }

  // The first keyed-span record (offset) a restart must re-read: every record before it holds
  // only spans ending before `from_ns`. At most `position` (nothing needed: the position).
  static int64_t SpanRestartOffset(Partition& part, int64_t from_ns, int64_t position) {
    while (!part.span_records.empty() && part.span_records.front().second < from_ns) {
      part.span_records.pop_front();
    }
    return part.span_records.empty() ? position
                                     : std::min(part.span_records.front().first, position);
  }

  Status Commit(bool async = false) {
    if (async && consumer->commits_in_flight() > 0) return OkStatus();
    kafka::TopicPartitions offsets = acks.CommittableOffsets();
    // A spans partition being rebuilt is read below its committed position: not committed
    // until the rebuild is over.
    std::erase_if(offsets, [this](const kafka::TopicPartition& tp) {
      if (tp.topic != config.spans_topic) return false;
      auto it = parts.find(tp.partition);
      return it == parts.end() || it->second->rebuilding || tp.offset < it->second->spans_committed;
    });
    // Spans partitions whose position did not move but whose restart offset would: commit the
    // same position with the new metadata.
    if (config.commit_span_offsets) {
      for (auto& [p, part] : parts) {
        if (part->rebuilding || part->spans_commit_pos < 0) continue;
        const bool listed = std::any_of(offsets.begin(), offsets.end(), [&](const auto& tp) {
          return tp.topic == config.spans_topic && tp.partition == p;
        });
        if (!listed && part->spans_commit_from < part->spans_commit_pos &&
            SpanRestartOffset(*part, SpanReplayStart(*part), part->spans_commit_pos) !=
                part->spans_commit_from) {
          offsets.push_back({config.spans_topic, p, part->spans_commit_pos});
        }
      }
    }
    if (offsets.empty()) {
      return OkStatus();
    }
    // First what this commit takes off the uncommitted samples, then the replay starts.
    for (const kafka::TopicPartition& tp : offsets) {
      if (tp.topic != config.samples_topic) continue;
      if (auto it = parts.find(tp.partition); it != parts.end()) {
        Partition& part = *it->second;
        part.uncommitted_times.erase(part.uncommitted_times.begin(),
                                     part.uncommitted_times.lower_bound(tp.offset));
      }
    }
    std::vector<std::pair<int32_t, int64_t>> span_commits;  // (partition, restart offset)
    for (kafka::TopicPartition& tp : offsets) {
      auto it = parts.find(tp.partition);
      if (it == parts.end()) {
        continue;
      }
      Partition& part = *it->second;
      const int64_t from = SpanReplayStart(part);
      if (config.samples_topic == tp.topic) {
        if (from > 0) tp.metadata = fmt::format("{}{}", kMetadataPrefix, from);
      } else {
        const int64_t restart = SpanRestartOffset(part, from, tp.offset);
        span_commits.emplace_back(tp.partition, restart);
        tp.metadata = fmt::format("{}{}", kSpansMetadataPrefix, restart);
      }
    }
    if (!async) {
      Status s = consumer->Commit(offsets);
      CommitDone(offsets, span_commits, s);
      return s;
    }
    // Periodic: without waiting (a sync commit waits behind the fetch the coordinator holds,
    // up to fetch.wait.max.ms); the result is handled inside a later Poll, on this thread.
    Status s = consumer->CommitAsync(
        offsets, [this, offsets, span_commits](const kafka::TopicPartitions&, const Status& r) {
          if (!r.ok()) {
            log::Warn("commit failed; will retry", {{"stage", config.stage_name}, {"error", r}});
          }
          CommitDone(offsets, span_commits, r);
        });
    if (!s.ok()) CommitDone(offsets, span_commits, s);
    return s;
  }

  void CommitDone(const kafka::TopicPartitions& offsets,
                  const std::vector<std::pair<int32_t, int64_t>>& span_commits,
                  const Status& result) {
    if (!result.ok()) {
      metrics.Errors("commit").Inc();
      return;
    }
    acks.MarkCommitted(offsets);
    for (const kafka::TopicPartition& tp : offsets) {
      if (tp.topic != config.spans_topic) continue;
      if (auto it = parts.find(tp.partition); it != parts.end()) {
        it->second->spans_commit_pos = tp.offset;
      }
    }
    for (auto [p, restart] : span_commits) {
      if (auto it = parts.find(p); it != parts.end()) it->second->spans_commit_from = restart;
    }
  }

  void RefreshLag() {
    auto lag = consumer->Lag();
    if (lag.ok()) {
      for (const kafka::PartitionLag& p : *lag) {
        if (p.lag >= 0) {
          metrics.Lag(p.topic, p.partition).Set(static_cast<double>(p.lag));
        }
      }
    }
  }

  void Forget(const kafka::TopicPartitions& revoked) {
    for (const kafka::TopicPartition& tp : revoked) {
      if (tp.topic == config.samples_topic) {
        auto it = parts.find(tp.partition);
        if (it != parts.end()) {
          ExportCounters(*it->second);
          pending_batches -= it->second->pending.size();
          parts.erase(it);
        }
        paused.erase(tp.partition);
      }
    }
    acks.Forget(revoked);
  }
};

CorrelatorStage::CorrelatorStage(StageConfig config, obs::Registry& metrics)
    : config_(std::move(config)), metrics_(metrics) {}

CorrelatorStage::~CorrelatorStage() = default;

Status CorrelatorStage::Run(service::Context& ctx) {
  State st(config_, metrics_);

  kafka::ProducerConfig pcfg;
  pcfg.properties = config_.kafka;
  pcfg.on_fatal = [&st](const Status& s) { st.failure.Set(s.WithContext("producer fatal")); };
  FS_ASSIGN_OR_RETURN(st.producer, kafka::Producer::Create(pcfg));
  st.dlq = std::make_unique<kafka::DlqWriter>(*st.producer, config_.stage_name);

  // Co-partitioning: refuse to start rather than join the wrong partitions.
  {
    Status check;
    for (int attempt = 0; attempt < 5 && !ctx.stop.stop_requested(); ++attempt) {
      check = CheckCopartitioned(*st.producer, config_.samples_topic, config_.spans_topic,
                                 std::chrono::seconds(5));
      if (check.ok() || check.code() == StatusCode::kFailedPrecondition) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    if (!check.ok()) {
      log::Error("refusing to start", {{"stage", config_.stage_name}, {"error", check}});
      return check;
    }
  }

  kafka::ConsumerConfig ccfg;
  ccfg.properties = config_.kafka;
  ccfg.group_id = config_.group;
  ccfg.topics = {config_.samples_topic, config_.spans_topic};
  ccfg.assignor = kafka::Assignor::kRange;
  // Only range gives one instance partition p of both topics; a librdkafka property must not
  // override that (e.g. a cooperative-sticky setting shared with the other stages' configs).
  if (auto it = ccfg.properties.find("partition.assignment.strategy");
      it != ccfg.properties.end() && it->second != "range") {
    log::Warn("ignoring kafka.partition.assignment.strategy: the correlator needs range",
              {{"stage", config_.stage_name}, {"configured", it->second}});
    ccfg.properties.erase(it);
  }
  bool assigned_once = false;
  ccfg.on_assigned = [&](const kafka::TopicPartitions& parts, bool) {
    ctx.set_ready(true);
    assigned_once = true;
    st.newly_assigned.insert(st.newly_assigned.end(), parts.begin(), parts.end());
  };
  ccfg.on_revoked = [&](const kafka::TopicPartitions& parts, bool lost) {
    if (abandon_) {
      return;
    }
    if (!lost) {
      // Let in-flight outputs land and commit them. Held samples are dropped: whoever owns
      // the partition next re-reads them from the committed offset with rebuilt spans.
      (void)st.producer->Flush(config_.drain_timeout);
      (void)st.Commit();
    }
    st.Forget(parts);
  };
  ccfg.on_offset_reset = [&st](const kafka::OffsetReset& r) {
    st.metrics.Skipped(r.topic).Inc(static_cast<uint64_t>(r.skipped));
  };
  FS_ASSIGN_OR_RETURN(st.consumer, kafka::Consumer::Create(ccfg));

  Clock::time_point last_commit = Clock::now();
  Clock::time_point last_record = Clock::now();
  Clock::time_point last_pending_refresh = Clock::now();
  Status result;
  while (!ctx.stop.stop_requested()) {
    if (Status f = st.failure.Get(); !f.ok()) {
      result = f;
      break;
    }
    if (!st.newly_assigned.empty()) {
      kafka::TopicPartitions fresh;
      fresh.swap(st.newly_assigned);
      for (const kafka::TopicPartition& tp : fresh) {
        if (tp.topic == config_.spans_topic) {
          st.StartRebuild(tp.partition);
        } else {
          st.StartSamples(tp.partition);
        }
      }
      if (st.backpressure) {
        for (auto& [p, part] : st.parts) st.PauseSamples(p);
      }
    }
    st.Backpressure();
    auto polled = st.consumer->Poll(config_.poll_timeout);
    if (!polled.ok()) {
      result = polled.error().WithContext("consumer");
      break;
    }
    if (polled->has_value()) {
      last_record = Clock::now();
      st.metrics.records_in.Inc();
      st.metrics.bytes_in.Inc((*polled)->value().size());
      if ((*polled)->topic() == config_.spans_topic) {
        st.OnSpans(**polled);
      } else {
        st.OnSamples(std::move(**polled));
      }
    }
    st.CheckRebuilds();
    if (Clock::now() - last_pending_refresh >= kPendingRefresh) {
      st.RefreshPending();
      last_pending_refresh = Clock::now();
    }
    st.Advance(/*flush=*/false);
    st.ProduceRefused();
    if (Clock::now() - last_commit >= config_.commit_interval) {
      if (Status s = st.Commit(/*async=*/true); !s.ok()) {
        log::Warn("commit failed; will retry", {{"stage", config_.stage_name}, {"error", s}});
      }
      st.RefreshLag();
      st.UpdateGauges();
      last_commit = Clock::now();
    }
    const bool rebuilding = std::any_of(st.parts.begin(), st.parts.end(),
                                        [](const auto& p) { return p.second->rebuilding; });
    if (!polled->has_value() && config_.stop_when_caught_up && assigned_once && !rebuilding &&
        Clock::now() - last_record >= config_.caught_up_idle) {
      auto lag = st.consumer->Lag(std::chrono::seconds(5));
      const bool caught_up = lag.ok() && std::all_of(lag->begin(), lag->end(), [](const auto& p) {
                               return p.lag == 0 || p.high_watermark == 0;
                             });
      if (caught_up) {
        log::Info("caught up; stopping", {{"stage", config_.stage_name}});
        break;
      }
    }
  }

  if (abandon_) {
    log::Warn("abandoning without drain", {{"stage", config_.stage_name}});
    st.consumer->Abandon();
    return result;
  }
  // Drain: nothing new is consumed; emit everything held, let it land, commit, leave.
  st.Advance(/*flush=*/true);
  log::Info("draining",
            {{"stage", config_.stage_name}, {"outstanding", st.producer->OutstandingCount()}});
  if (Status s = st.producer->Flush(config_.drain_timeout); !s.ok() && result.ok()) {
    result = s.WithContext("flush on drain");
  }
  for (int round = 0; round < 32 && !st.refused.empty(); ++round) {
    st.ProduceRefused();
    (void)st.producer->Flush(config_.drain_timeout);
  }
  if (Status s = st.Commit(); !s.ok()) {
    log::Warn("commit on drain failed", {{"stage", config_.stage_name}, {"error", s}});
  }
  st.UpdateGauges();
  if (Status s = st.consumer->Close(); !s.ok()) {
    log::Warn("consumer close failed", {{"stage", config_.stage_name}, {"error", s}});
  }
  if (Status f = st.failure.Get(); !f.ok() && result.ok()) {
    result = f;
  }
  return result;
}

}  // namespace flamestream::correlator
