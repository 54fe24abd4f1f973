#include "flamestream/stage/map_stage.h"

#include <algorithm>
#include <iterator>
#include <atomic>
#include <mutex>

#include "flamestream/kafka/ack_tracker.h"
#include "flamestream/stage/acked_produce.h"
#include "flamestream/stage/caught_up.h"
#include "flamestream/stage/failure_latch.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/log/log.h"
#include "flamestream/obs/metrics.h"

namespace flamestream::stage {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

Status RunMapStage(const MapStageConfig& config, service::Context& ctx, const Transform& transform) {
  obs::StageMetrics metrics(ctx.metrics, config.stage);
  kafka::AckTracker acks;
  FailureLatch failure;

  kafka::ProducerConfig pcfg;
  pcfg.properties = config.kafka;
  pcfg.on_fatal = [&failure](const Status& s) { failure.Set(s.WithContext("producer fatal")); };
  FS_ASSIGN_OR_RETURN(std::unique_ptr<kafka::Producer> producer, kafka::Producer::Create(pcfg));
  kafka::DlqWriter dlq(*producer, config.stage);
  RefusedOutputs refused;  // outputs the broker refused as too large, to split

  std::unique_ptr<kafka::Consumer> consumer;
  kafka::ConsumerConfig ccfg;
  ccfg.properties = config.kafka;
  ccfg.group_id = config.group_id;
  ccfg.topics = config.input_topics;
  ccfg.assignor = config.assignor;
  ccfg.auto_offset_reset = config.auto_offset_reset;
  bool seek_pending = false;
  CaughtUp caught_up(config.caught_up_idle);
  ccfg.on_assigned = [&](const kafka::TopicPartitions& parts, bool) {
    log::Info("partitions assigned", {{"stage", config.stage}, {"count", parts.size()}});
    ctx.set_ready(true);
    caught_up.OnAssigned();
    // Seeking is only allowed once the assignment is in effect: do it from the loop.
    seek_pending = config.seek_to_timestamp_ms > 0;
  };
  // Before partitions move away: let their outputs land, then commit what is acknowledged.
  // A broker may refuse that commit while the group rebalances (Kafka does once the rebalance
  // reaches its sync phase; librdkafka's mock cluster as soon as it starts): the new owner then
  // maps again what was mapped since the last commit (at-least-once; batch ids let the next
  // stage drop the duplicates). Counted as a commit error and logged.
  ccfg.on_revoked = [&](const kafka::TopicPartitions& parts, bool lost) {
    if (!lost) {
      (void)producer->Flush(config.drain_timeout);
      const kafka::TopicPartitions offsets = acks.CommittableOffsets();
      if (consumer != nullptr && !offsets.empty()) {
        if (Status s = consumer->Commit(offsets); s.ok()) {
          acks.MarkCommitted(offsets);
        } else {
          metrics.Errors("commit").Inc();
          log::Warn("commit before revocation failed; the new owner maps those records again",
                    {{"stage", config.stage}, {"error", s}});
        }
      }
    }
    acks.Forget(parts);
  };
  ccfg.on_offset_reset = [&metrics](const kafka::OffsetReset& r) {
    metrics.Skipped(r.topic).Inc(static_cast<uint64_t>(r.skipped));
  };
  FS_ASSIGN_OR_RETURN(consumer, kafka::Consumer::Create(ccfg));

  auto commit = [&] {
    const kafka::TopicPartitions offsets = acks.CommittableOffsets();
    if (offsets.empty()) {
      return;
    }
    if (Status s = consumer->Commit(offsets); s.ok()) {
      acks.MarkCommitted(offsets);
    } else {
      metrics.Errors("commit").Inc();
      log::Warn("commit failed; will retry", {{"stage", config.stage}, {"error", s}});
    }
  };
  auto refresh_lag = [&] {
    auto lag = consumer->Lag();
    if (lag.ok()) {
      for (const kafka::PartitionLag& p : *lag) {
        if (p.lag >= 0) {
          metrics.Lag(p.topic, p.partition).Set(static_cast<double>(p.lag));
        }
      }
    }
  };

  bool paused = false;
  Clock::time_point last_commit = Clock::now();
  Status result;
  while (!ctx.stop.stop_requested()) {
    if (Status f = failure.Get(); !f.ok()) {
      result = f;
      break;
    }
    // Backpressure: stop fetching while too many outputs are unacknowledged.
    const int outstanding = producer->OutstandingCount();
    // PauseAll: partitions a rebalance assigns meanwhile stay paused too.
    if (!paused && outstanding > config.max_in_flight) {
      paused = consumer->PauseAll().ok();
    } else if (paused && outstanding <= config.max_in_flight / 2) {
      paused = !consumer->ResumeAll().ok();
    }

    if (seek_pending) {
      seek_pending = false;
      if (Status s = consumer->SeekToTimestamp(config.seek_to_timestamp_ms,
                                               std::chrono::seconds(10));
          !s.ok()) {
        log::Warn("seek by time failed; reading from the committed or earliest offsets",
                  {{"stage", config.stage}, {"error", s}});
      }
    }
    auto polled = consumer->Poll(config.poll_timeout);
    if (!polled.ok()) {
      result = polled.error().WithContext("consumer");
      break;
    }
    if (!polled->has_value() && config.stop_when_caught_up && caught_up.Reached(*consumer)) {
      log::Info("caught up; stopping", {{"stage", config.stage}});
      break;
    }
    if (polled->has_value()) {
      caught_up.OnRecord();
      const kafka::Message& msg = **polled;
      const auto started = Clock::now();
      metrics.records_in.Inc();
      metrics.bytes_in.Inc(msg.value().size());
      const std::string topic(msg.topic());
      const int32_t partition = msg.partition();
      const int64_t offset = msg.offset();
      Result<std::vector<Output>> outputs = [&]() -> Result<std::vector<Output>> {
        try {
          return transform(msg);
        } catch (const std::exception& e) {
          return InternalError("transform threw: {}", e.what());
        }
      }();
      // Outputs larger than Kafka takes are split, or fail the input like a decode error:
      // it would fail again after every restart.
      const char* error_kind = "decode";
      if (outputs.ok()) {
        const size_t limit = producer->max_message_bytes();
        std::vector<Output> fitted;
        for (Output& out : *outputs) {
          Result<std::vector<Output>> pieces = FitOutput(std::move(out), limit, config.split);
          if (!pieces.ok()) {
            outputs = pieces.error();
            error_kind = "too_large";
            break;
          }
          std::move(pieces->begin(), pieces->end(), std::back_inserter(fitted));
        }
        if (outputs.ok()) {
          *outputs = std::move(fitted);
        }
      }
      if (!outputs.ok()) {
        metrics.Errors(error_kind).Inc();
        log::Warn("record sent to the DLQ",
                  {{"stage", config.stage}, {"topic", topic}, {"partition", partition},
                   {"offset", static_cast<long long>(offset)}, {"error", outputs.error()}});
        acks.Track(topic, partition, offset, 1);
        Status s = dlq.Write(msg, outputs.error(), [&, topic, partition, offset](
                                                       const kafka::DeliveryReport& r) {
          if (r.status.ok()) {
            metrics.dlq_records.Inc();
            acks.Ack(topic, partition, offset);
          } else {
            failure.Set(r.status.WithContext("DLQ delivery failed"));
          }
        });
        if (!s.ok()) {
          result = s.WithContext("DLQ produce");
          break;
        }
      } else {
        acks.Track(topic, partition, offset, static_cast<uint32_t>(outputs->size()));
        for (Output& out : *outputs) {
          Status s = ProduceAcked(*producer, {topic, partition, offset}, started, out.topic,
                                  out.key, out.value, out.headers, metrics, acks, failure,
                                  &refused);
          if (s.code() == StatusCode::kOutOfRange) {
            // Over the producer's own limit after all (framing): split it like a refusal.
            refused.Push({{topic, partition, offset}, std::move(out)});
            continue;
          }
          if (!s.ok()) {
            result = s.WithContext("produce");
            break;
          }
        }
        if (!result.ok()) {
          break;
        }
      }
    }
    if (!refused.empty()) {
      if (Status s = ProduceRefused(refused, config.split,
                                    *producer, dlq, metrics, acks, failure);
          !s.ok()) {
        result = s.WithContext("produce split output");
        break;
      }
    }
    if (config.on_tick) {
      config.on_tick();
    }
    if (Clock::now() - last_commit >= config.commit_interval) {
      commit();
      refresh_lag();
      last_commit = Clock::now();
    }
  }

  // Drain: nothing new is consumed; wait for outputs, commit what they acknowledge, leave.
  log::Info("draining", {{"stage", config.stage}, {"outstanding", producer->OutstandingCount()}});
  if (Status s = producer->Flush(config.drain_timeout); !s.ok() && result.ok()) {
    result = s.WithContext("flush on drain");
  }
  // Refusals that arrived while flushing: split them and flush again (each round at least
  // halves them, so this ends).
  for (int round = 0; round < 32 && !refused.empty() && result.ok(); ++round) {
    if (Status s = ProduceRefused(refused, config.split,
                                  *producer, dlq, metrics, acks, failure);
        !s.ok()) {
      result = s.WithContext("produce split output");
    } else if (Status f = producer->Flush(config.drain_timeout); !f.ok()) {
      result = f.WithContext("flush on drain");
    }
  }
  commit();
  if (Status s = consumer->Close(); !s.ok()) {
    log::Warn("consumer close failed", {{"stage", config.stage}, {"error", s}});
  }
  if (Status f = failure.Get(); !f.ok() && result.ok()) {
    result = f;
  }
  return result;
}

}  // namespace flamestream::stage
