#include "flamestream/stage/loop.h"

#include <fmt/format.h>

#include <iterator>
#include <mutex>

#include "flamestream/kafka/ack_tracker.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/log/log.h"
#include "flamestream/stage/acked_produce.h"
#include "flamestream/stage/caught_up.h"
#include "flamestream/stage/failure_latch.h"

namespace flamestream::stage {
namespace {

using Clock = std::chrono::steady_clock;

// Every input is tracked with one extra "guard" output while its handler runs: whatever the
// handler emits, dead-letters or holds adds to it, and the guard is acknowledged after the
// handler returns. So a record is committable exactly when everything it led to is done, in
// any combination (some samples to the DLQ, the rest held by windows, ...).
class LoopImpl final : public Loop {
 public:
  LoopImpl(const LoopConfig& config, const LoopEnv& env, Handler& handler)
      : config_(config),
        env_(env),
        handler_(handler),
        metrics_(env.metrics, config.stage),
        caught_up_(config.caught_up_idle) {}

  Status Run();

  Status Emit(const kafka::Message& in, std::vector<Output> outputs) override;
  Status EmitHeld(const InputToken& token, std::vector<Output> outputs) override;
  Status DeadLetter(const kafka::Message& in, const Status& reason) override {
    return DeadLetter(kafka::FailedRecord{in.topic(), in.partition(), in.offset(), in.key(),
                                          in.value(), in.headers()},
                      reason);
  }
  Status DeadLetter(const kafka::FailedRecord& in, const Status& reason) override;
  Status Seek(const kafka::TopicPartition& to, std::chrono::milliseconds timeout) override {
    FS_RETURN_IF_ERROR(consumer_->Seek(to, timeout));
    acks_.Rewind(to.topic, to.partition);
    return OkStatus();
  }
  InputToken Hold(const kafka::Message& in) override {
    InputToken t{{std::string(in.topic()), in.partition(), in.offset()}};
    acks_.Extend(t.position.topic, t.position.partition, t.position.offset, 1);
    return t;
  }
  void Release(const InputToken& t) override {
    acks_.Ack(t.position.topic, t.position.partition, t.position.offset);
  }
  void Fail(Status error) override { failure_.Set(std::move(error)); }
  [[nodiscard]] bool paused() const override { return paused_; }
  [[nodiscard]] bool stopping() const override { return env_.stop.stop_requested(); }
  kafka::Producer& producer() override { return *producer_; }
  kafka::Consumer& consumer() override { return *consumer_; }
  obs::StageMetrics& metrics() override { return metrics_; }
  [[nodiscard]] const LoopConfig& config() const override { return config_; }

 private:
  Status Create();
  [[nodiscard]] bool crashing() const { return env_.crash != nullptr && env_.crash->load(); }
  // Produces `outputs` for input `pos` (handled since `started`); one that does not fit goes
  // to `too_large`.
  Status Produce(const InputPosition& pos, Clock::time_point started, std::vector<Output> outputs,
                 const std::function<Status(const Status&, const Output&)>& too_large);
  kafka::TopicPartitions CommitPlan();
  void Commit(const char* when);
  void CommitAsync();
  void CommitDone(const kafka::TopicPartitions& offsets, const Status& result, const char* when);
  void RefreshLag();
  void UpdatePause();
  Status HandleRecord(const kafka::Message& msg);
  Status Drain(Status result);
  Status WriteDlqReferences();
  void DeliveredToDlq(const InputPosition& in, const kafka::DeliveryReport& r, const Status& reason,
                      const kafka::Headers* headers);
  // Queues a reference record for `in` whose `value_bytes` value the DLQ refused (`why`).
  void QueueDlqReference(const InputPosition& in, std::string_view key, kafka::Headers headers,
                         const Status& reason, size_t value_bytes, const Status& why);

  // A DLQ record the broker refused as too large: written again without its value (a
  // reference: the input stays at source.offset), from the loop thread.
  struct DlqReference {
    InputPosition input;
    std::string key;
    kafka::Headers headers;
    Status reason;
  };
  std::mutex dlq_refs_mu_;
  std::vector<DlqReference> dlq_refs_;

  const LoopConfig& config_;
  const LoopEnv& env_;
  Handler& handler_;
  obs::StageMetrics metrics_;
  kafka::AckTracker acks_;
  FailureLatch failure_;
  RefusedOutputs refused_;  // outputs the broker refused as too large, to split
  CaughtUp caught_up_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<kafka::DlqWriter> dlq_;
  std::unique_ptr<kafka::Consumer> consumer_;
  bool seek_pending_ = false;
  bool paused_ = false;
  Clock::time_point started_;  // of the record being handled (processing_seconds)
};

Status LoopImpl::Create() {
  kafka::ProducerConfig pcfg = config_.producer;
  pcfg.properties = config_.kafka;
  pcfg.on_fatal = [this](const Status& s) { failure_.Set(s.WithContext("producer fatal")); };
  FS_ASSIGN_OR_RETURN(producer_, kafka::Producer::Create(pcfg));
  dlq_ = std::make_unique<kafka::DlqWriter>(*producer_, config_.stage);

  kafka::ConsumerConfig ccfg;
  ccfg.properties = config_.kafka;
  ccfg.group_id = config_.group_id;
  ccfg.topics = config_.input_topics;
  ccfg.assignor = config_.assignor;
  ccfg.auto_offset_reset = config_.auto_offset_reset;
  ccfg.on_assigned = [this](const kafka::TopicPartitions& parts, bool) {
    log::Info("partitions assigned", {{"stage", config_.stage}, {"count", parts.size()}});
    if (env_.set_ready) env_.set_ready(true);
    caught_up_.OnAssigned();
    // Seeking is only allowed once the assignment is in effect: done from the loop.
    seek_pending_ = config_.seek_to_timestamp_ms > 0;
    handler_.Assigned(*this, parts);
  };
  // Before partitions move away: let their outputs land, then commit what is acknowledged.
  // A broker may refuse that commit while the group rebalances (Kafka does once the rebalance
  // reaches its sync phase; librdkafka's mock cluster as soon as it starts): the new owner then
  // handles again what was handled since the last commit (at-least-once; batch ids let the
  // next stage drop the duplicates). Counted as a commit error and logged.
  ccfg.on_revoked = [this](const kafka::TopicPartitions& parts, bool lost) {
    if (crashing()) return;
    if (!lost) {
      (void)producer_->Flush(config_.drain_timeout);
      if (consumer_ != nullptr) Commit("before revocation");
    }
    acks_.Forget(parts);
    handler_.Revoked(*this, parts, lost);
  };
  ccfg.on_offset_reset = [this](const kafka::OffsetReset& r) {
    metrics_.Skipped(r.topic).Inc(static_cast<uint64_t>(r.skipped));
  };
  FS_ASSIGN_OR_RETURN(consumer_, kafka::Consumer::Create(ccfg));
  return OkStatus();
}

kafka::TopicPartitions LoopImpl::CommitPlan() {
  kafka::TopicPartitions offsets = acks_.CommittableOffsets();
  handler_.PrepareCommit(*this, offsets);
  return offsets;
}

void LoopImpl::Commit(const char* when) {
  const kafka::TopicPartitions offsets = CommitPlan();
  if (offsets.empty()) return;
  CommitDone(offsets, consumer_->Commit(offsets), when);
}

void LoopImpl::CommitAsync() {
  // A sync commit waits behind any fetch the coordinator holds on its connection (up to
  // fetch.wait.max.ms): periodic commits do not stop the loop. One at a time.
  if (consumer_->commits_in_flight() > 0) return;
  const kafka::TopicPartitions offsets = CommitPlan();
  if (offsets.empty()) return;
  Status s = consumer_->CommitAsync(
      offsets, [this](const kafka::TopicPartitions& committed, const Status& result) {
        CommitDone(committed, result, "periodic");
      });
  if (!s.ok()) CommitDone(offsets, s, "periodic");
}

void LoopImpl::CommitDone(const kafka::TopicPartitions& offsets, const Status& result,
                          const char* when) {
  handler_.Committed(*this, offsets, result);
  if (result.ok()) {
    acks_.MarkCommitted(offsets);
    return;
  }
  metrics_.Errors("commit").Inc();
  log::Warn(
      "commit failed; the records are read again if this partition moves or the stage "
      "restarts before a later commit",
      {{"stage", config_.stage}, {"when", when}, {"error", result}});
}

void LoopImpl::RefreshLag() {
  auto lag = consumer_->Lag();
  if (!lag.ok()) return;
  for (const kafka::PartitionLag& p : *lag) {
    if (p.lag >= 0) metrics_.Lag(p.topic, p.partition).Set(static_cast<double>(p.lag));
  }
}

void LoopImpl::UpdatePause() {
  // Backpressure: stop fetching while too many outputs are unacknowledged or the handler is
  // behind. PauseAll: partitions a rebalance assigns meanwhile stay paused too. Also while the
  // group refuses commits because it rebalances: the next owner reads again whatever is handled
  // until the partitions move, so handling more only makes duplicates.
  const int outstanding = producer_->OutstandingCount();
  const bool want = handler_.WantsPause() || outstanding > config_.max_in_flight ||
                    (paused_ && outstanding > config_.max_in_flight / 2) ||
                    consumer_->rebalance_pending();
  if (want == paused_) return;
  Status s = want ? consumer_->PauseAll() : consumer_->ResumeAll();
  if (!s.ok()) {
    log::Warn("pause/resume failed", {{"stage", config_.stage}, {"error", s}});
    return;
  }
  paused_ = want;
}

Status LoopImpl::Emit(const kafka::Message& in, std::vector<Output> outputs) {
  // Outputs larger than Kafka takes are split, or fail the input like a decode error: it
  // would fail again after every restart.
  return Produce({std::string(in.topic()), in.partition(), in.offset()}, started_,
                 std::move(outputs),
                 [&](const Status& why, const Output&) { return DeadLetter(in, why); });
}

Status LoopImpl::EmitHeld(const InputToken& token, std::vector<Output> outputs) {
  // The input was read long ago: an output that cannot be sent becomes a reference to it.
  const InputPosition& pos = token.position;
  Status s =
      Produce(pos, Clock::now(), std::move(outputs), [&](const Status& why, const Output& out) {
        return DeadLetter(
            kafka::FailedRecord{pos.topic, pos.partition, pos.offset, out.key, "", out.headers},
            why);
      });
  Release(token);
  return s;
}

Status LoopImpl::Produce(const InputPosition& pos, Clock::time_point started,
                         std::vector<Output> outputs,
                         const std::function<Status(const Status&, const Output&)>& too_large) {
  const size_t limit = producer_->max_message_bytes();
  std::vector<Output> fitted;
  for (Output& out : outputs) {
    if (RecordBytes(out.key, out.value, out.headers) <= limit) {
      fitted.push_back(std::move(out));
      continue;
    }
    Result<std::vector<Output>> pieces = FitOutput(out, limit, config_.split);  // rare: a copy
    if (!pieces.ok()) {
      metrics_.Errors("too_large").Inc();
      return too_large(pieces.error(), out);
    }
    std::move(pieces->begin(), pieces->end(), std::back_inserter(fitted));
  }
  if (fitted.empty()) return OkStatus();
  acks_.Extend(pos.topic, pos.partition, pos.offset, static_cast<uint32_t>(fitted.size()));
  for (Output& out : fitted) {
    Status s = ProduceAcked(*producer_, pos, started, out.topic, out.key, out.value, out.headers,
                            metrics_, acks_, failure_, &refused_);
    if (s.code() == StatusCode::kOutOfRange) {
      // Over the producer's own limit after all (framing): split it like a refusal.
      refused_.Push({pos, std::move(out)});
      continue;
    }
    if (!s.ok()) {
      failure_.Set(s.WithContext("produce"));
      return s;
    }
  }
  return OkStatus();
}

Status LoopImpl::DeadLetter(const kafka::FailedRecord& in, const Status& reason) {
  InputPosition pos{std::string(in.topic), in.partition, in.offset};
  log::Warn("record sent to the DLQ", {{"stage", config_.stage},
                                       {"topic", pos.topic},
                                       {"partition", pos.partition},
                                       {"offset", static_cast<long long>(pos.offset)},
                                       {"error", reason}});
  acks_.Extend(pos.topic, pos.partition, pos.offset, 1);
  // The headers are kept for a reference record, should the DLQ refuse the value.
  const kafka::Headers headers = in.value.empty() ? kafka::Headers{} : in.headers;
  Status s = dlq_->Write(in, reason, [this, pos, reason, headers](const kafka::DeliveryReport& r) {
    DeliveredToDlq(pos, r, reason, r.value.empty() ? nullptr : &headers);
  });
  if (s.code() == StatusCode::kOutOfRange && !in.value.empty()) {
    // Over the producer's own message.max.bytes: a reference record instead.
    QueueDlqReference(pos, in.key, headers, reason, in.value.size(), s);
    return OkStatus();
  }
  if (!s.ok()) failure_.Set(s.WithContext("DLQ produce"));
  return s;
}

void LoopImpl::DeliveredToDlq(const InputPosition& in, const kafka::DeliveryReport& r,
                              const Status& reason, const kafka::Headers* headers) {
  if (r.status.ok()) {
    metrics_.dlq_records.Inc();
    acks_.Ack(in.topic, in.partition, in.offset);
  } else if (r.too_large && headers != nullptr) {
    // The record fits its own topic but not the DLQ's limits. Retrying as is would never
    // succeed.
    QueueDlqReference(in, r.key, *headers, reason, r.value.size(), r.status);
  } else {
    failure_.Set(r.status.WithContext("DLQ delivery failed"));
  }
}

void LoopImpl::QueueDlqReference(const InputPosition& in, std::string_view key,
                                 kafka::Headers headers, const Status& reason, size_t value_bytes,
                                 const Status& why) {
  // Keeps the reason and where the record is (source.* headers), not its value.
  std::lock_guard lock(dlq_refs_mu_);
  dlq_refs_.push_back(
      {in, std::string(key), std::move(headers),
       Status(reason.code(), fmt::format("{} (the record's {} byte value is not kept: {})",
                                         reason.message(), value_bytes, why.message()))});
}

Status LoopImpl::WriteDlqReferences() {
  std::vector<DlqReference> refs;
  {
    std::lock_guard lock(dlq_refs_mu_);
    if (dlq_refs_.empty()) return OkStatus();
    refs.swap(dlq_refs_);
  }
  for (DlqReference& ref : refs) {
    const kafka::FailedRecord record{
        ref.input.topic, ref.input.partition, ref.input.offset, ref.key, "", ref.headers};
    FS_RETURN_IF_ERROR(
        dlq_->Write(record, ref.reason,
                    [this, in = ref.input, reason = ref.reason](const kafka::DeliveryReport& r) {
                      DeliveredToDlq(in, r, reason, /*headers=*/nullptr);
                    }));
  }
  return OkStatus();
}

Status LoopImpl::HandleRecord(const kafka::Message& msg) {
  caught_up_.OnRecord();
  started_ = Clock::now();
  const std::string topic(msg.topic());
  if (!acks_.Track(topic, msg.partition(), msg.offset(), 1)) {
    // At or below an offset this assignment already handled (a fetch repeated after an
    // error): handling it again would only duplicate its outputs.
    log::Debug("repeated record skipped", {{"stage", config_.stage},
                                           {"topic", topic},
                                           {"partition", msg.partition()},
                                           {"offset", static_cast<long long>(msg.offset())}});
    return OkStatus();
  }
  metrics_.records_in.Inc();
  metrics_.bytes_in.Inc(msg.value().size());
  Status handled = [&] {
    try {
      return handler_.Record(*this, msg);
    } catch (const std::exception& e) {
      return InternalError("handler threw: {}", e.what());
    }
  }();
  if (!handled.ok() && failure_.Get().ok()) {
    metrics_.Errors("decode").Inc();
    (void)DeadLetter(msg, handled);
  }
  acks_.Ack(topic, msg.partition(), msg.offset());  // the guard
  return failure_.Get();
}

Status LoopImpl::Run() {
  FS_RETURN_IF_ERROR(Create());
  if (Status s = handler_.Started(*this); !s.ok()) {
    log::Error("refusing to start", {{"stage", config_.stage}, {"error", s}});
    consumer_->Abandon();  // never joined: nothing to leave or commit
    return s;
  }
  Clock::time_point last_commit = Clock::now();
  Status result;
  while (!env_.stop.stop_requested()) {
    if (Status f = failure_.Get(); !f.ok()) {
      result = f;
      break;
    }
    UpdatePause();
    if (seek_pending_) {
      seek_pending_ = false;
      if (Status s =
              consumer_->SeekToTimestamp(config_.seek_to_timestamp_ms, std::chrono::seconds(10));
          !s.ok()) {
        log::Warn("seek by time failed; reading from the committed or earliest offsets",
                  {{"stage", config_.stage}, {"error", s}});
      }
    }
    auto polled = consumer_->Poll(config_.poll_timeout);
    if (!polled.ok()) {
      result = polled.error().WithContext("consumer");
      break;
    }
    if (polled->has_value()) {
      if (Status s = HandleRecord(**polled); !s.ok()) {
        result = s;
        break;
      }
    } else if (config_.stop_when_caught_up && handler_.Idle() && caught_up_.Reached(*consumer_)) {
      log::Info("caught up; stopping", {{"stage", config_.stage}});
      break;
    }
    if (!refused_.empty()) {
      if (Status s =
              ProduceRefused(refused_, config_.split, *producer_, *dlq_, metrics_, acks_, failure_);
          !s.ok()) {
        result = s.WithContext("produce split output");
        break;
      }
    }
    if (Status s = WriteDlqReferences(); !s.ok()) {
      result = s.WithContext("DLQ reference");
      break;
    }
    handler_.Tick(*this);
    if (Clock::now() - last_commit >= config_.commit_interval) {
      CommitAsync();
      RefreshLag();
      last_commit = Clock::now();
    }
  }
  if (crashing()) {
    log::Warn("stopping like a crash: no drain, no commit", {{"stage", config_.stage}});
    consumer_->Abandon();
    return result;
  }
  return Drain(result);
}

Status LoopImpl::Drain(Status result) {
  // Nothing new is consumed: the handler finishes what it can, outputs land, what they
  // acknowledge is committed, and the stage leaves.
  log::Info("draining", {{"stage", config_.stage}, {"outstanding", producer_->OutstandingCount()}});
  if (result.ok()) handler_.Drain(*this);
  if (Status s = producer_->Flush(config_.drain_timeout); !s.ok() && result.ok()) {
    result = s.WithContext("flush on drain");
  }
  // Refusals that arrived while flushing: split them and flush again (each round at least
  // halves them, so this ends).
  for (int round = 0; round < 32 && !refused_.empty() && result.ok(); ++round) {
    if (Status s =
            ProduceRefused(refused_, config_.split, *producer_, *dlq_, metrics_, acks_, failure_);
        !s.ok()) {
      result = s.WithContext("produce split output");
    } else if (Status f = producer_->Flush(config_.drain_timeout); !f.ok()) {
      result = f.WithContext("flush on drain");
    }
  }
  for (int round = 0; round < 2 && result.ok(); ++round) {
    if (Status s = WriteDlqReferences(); !s.ok()) {
      result = s.WithContext("DLQ reference");
    } else if (Status f = producer_->Flush(config_.drain_timeout); !f.ok()) {
      result = f.WithContext("flush on drain");
    }
  }
  Commit("on drain");
  if (Status s = consumer_->Close(); !s.ok()) {
    log::Warn("consumer close failed", {{"stage", config_.stage}, {"error", s}});
  }
  if (Status f = failure_.Get(); !f.ok() && result.ok()) result = f;
  return result;
}

}  // namespace

Status RunLoop(const LoopConfig& config, const LoopEnv& env, Handler& handler) {
  LoopImpl loop(config, env, handler);
  return loop.Run();
}

}  // namespace flamestream::stage
