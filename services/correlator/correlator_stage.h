// The correlator stage: joins symbolized sample batches with keyed spans, per partition, and
// writes each batch, every sample carrying its span, as STAGE_CORRELATED.
//
//   correlator::StageConfig cfg;
//   cfg.kafka = {{"bootstrap.servers", brokers}};
//   cfg.join.allowed_lateness = std::chrono::seconds(30);
//   correlator::CorrelatorStage stage(cfg, ctx.metrics);
//   Status st = stage.Run(ctx);        // until ctx.stop; then flushes, produces, commits
//
// How it works (ARCHITECTURE.md, "Correlation" and "Contracts"), on the shared stage loop
// (stage/loop.h) with a handler:
// - The loop's consumer reads the samples topic and the keyed-spans topic with range
//   assignment, so partition p of both lands on the same instance; Run() refuses to start
//   when the two topics' partition counts differ.
// - One correlate::JoinEngine per owned partition. Spans go in with AddSpan; each sample of a
//   batch with AddSample (cookie = batch, row); samples whose batch already names their span
//   (span_index) join on those ids directly. Advance() runs after every poll.
// - A batch's input is held until all its samples are emitted; it is then written with the
//   input's key and headers (batch_assembly.h: span_index per sample, Process.service_name).
// - Commits follow the restart protocol (commit_plan.h): samples offsets once their batches
//   are acknowledged, with the earliest span end the uncommitted samples may need; keyed-span
//   offsets as the position read, with the first record a restart must re-read.
// - Rebuild (span_rebuild.h): on every assignment the samples partition stays paused until the
//   spans partition has been re-read from that record up to its end as of the assignment, so
//   matches do not change across restarts (spans are idempotent in the engine). Without a
//   spans commit (first start; replay mode, which commits no spans) the re-read starts at the
//   earliest record, skipping ahead by time to R minus max_clock_skew where the broker can
//   look offsets up by time.
// - Idle partitions: the engine's idle rule (watermark follows processing time) runs only
//   while the partition is caught up -- both its samples and its spans read up to their high
//   watermarks, no rebuild, nothing deferred -- so a backlog after a pause keeps its spans.
// - On stop: stop consuming, Flush every engine, produce, flush the producer, commit, leave.
//   Abandon() instead makes the next stop behave like a crash (tests).
#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include "flamestream/common/status.h"
#include "flamestream/correlate/join_engine.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/kafka/types.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/service/service.h"
#include "flamestream/stage/oversize.h"
#include "flamestream/stage/loop.h"

namespace flamestream::correlator {

struct StageConfig {
  // librdkafka properties (config `kafka.*`) for the consumer and the producer.
  kafka::Properties kafka;
  std::string group = "flamestream-correlator";
  std::string samples_topic = std::string(kafka::topics::kSamplesSymbolized);
  std::string spans_topic = std::string(kafka::topics::kSpansKeyed);
  std::string output_topic = std::string(kafka::topics::kSamplesCorrelated);
  correlate::JoinConfig join;
  std::chrono::milliseconds poll_timeout{100};
  std::chrono::milliseconds commit_interval{1000};
  // Pause the samples partitions while this many outputs are unacknowledged, or this many
  // batches wait in the engines (bounded memory).
  int max_in_flight = stage::kDefaultMaxInFlight;
  size_t max_pending_batches = 20000;
  // How long draining may wait for outstanding outputs.
  std::chrono::milliseconds drain_timeout{20000};
  // Upper bound on waiting for the span state rebuild before the samples resume anyway.
  std::chrono::milliseconds rebuild_timeout{60000};
  // Commit keyed-span offsets (with the first offset a restart must re-read as metadata), so a
  // restart re-reads about one lateness window of spans instead of the whole topic. Off in
  // replay mode.
  bool commit_span_offsets = true;
  // Replay: stop (after draining) once every partition is read to its end and nothing arrived
  // for `caught_up_idle`.
  bool stop_when_caught_up = false;
  std::chrono::milliseconds caught_up_idle{3000};
  // Metrics label and DLQ `stage` header.
  std::string stage_name = "correlator";
  // Splits an output batch larger than Kafka takes (batch::SplitSerializedBatch); one that
  // cannot be split becomes a DLQ reference record to its input (stage/oversize.h).
  stage::Splitter split;
};

// Applies replay mode: `.replay` input and output topics and the `<group>-replay` group; the
// keyed-span topic stays the live one (the replay reads the spans of its time range).
void ApplyReplayMode(StageConfig& config);

class CorrelatorStage {
 public:
  CorrelatorStage(StageConfig config, obs::Registry& metrics);
  ~CorrelatorStage();
  CorrelatorStage(const CorrelatorStage&) = delete;
  CorrelatorStage& operator=(const CorrelatorStage&) = delete;

  // Runs until ctx.stop (or, with stop_when_caught_up, the end of the input), then drains.
  // FailedPrecondition when the samples and spans topics' partition counts differ.
  Status Run(service::Context& ctx);

  // Makes the stop that follows a crash: no flush, no commit, the consumer is abandoned.
  void Abandon() { abandon_ = true; }

 private:
  struct State;
  StageConfig config_;
  obs::Registry& metrics_;
  std::atomic<bool> abandon_{false};
};

// OK when both topics exist with the same partition count (read through `producer`'s
// metadata); FailedPrecondition naming both topics and counts when they differ, NotFound when
// one is missing.
Status CheckCopartitioned(kafka::Producer& producer, const std::string& samples_topic,
                          const std::string& spans_topic, std::chrono::milliseconds timeout);

}  // namespace flamestream::correlator
