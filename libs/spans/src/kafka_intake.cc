#include "flamestream/spans/kafka_intake.h"

#include "counters.h"

#include <future>
#include <thread>

#include "flamestream/config/config.h"
#include "flamestream/log/log.h"
#include "flamestream/spans/kafka_sink.h"

namespace flamestream::spans {

void OtlpKafkaIntakeConfig::Declare(config::Schema& schema, const std::string& prefix) {
  schema.Add(prefix + ".topic", &topic, "topic the OTel Collector's Kafka exporter writes");
  schema.Add(prefix + ".group", &group_id, "consumer group for the span topic");
  schema.AddChoice(prefix + ".encoding", &encoding, {"otlp_proto", "otlp_json", "auto"},
                   "record encoding (the Collector's traces::encoding), or auto-detect");
  schema.Add(prefix + ".ack_timeout", &ack_timeout,
             "how long a record waits for its keyed spans' ack before it is retried");
  schema.Add(prefix + ".retry_backoff", &retry_backoff,
             "pause between retries of a record while Kafka is unavailable");
  schema.Add(prefix + ".commit_interval", &commit_interval, "how often offsets are committed");
}

OtlpKafkaIntake::OtlpKafkaIntake(OtlpKafkaIntakeConfig config, SpanRouter& router,
                                 kafka::Producer& producer, obs::Registry& metrics)
    : config_(std::move(config)),
      router_(router),
      producer_(producer),
      dlq_(producer, "span-router"),
      records_(metrics.Counter("fs_span_intake_records_total",
                               "records consumed from the OTLP span topic")),
      dlq_records_(metrics.Counter("fs_span_intake_dlq_records_total",
                                   "undecodable OTLP span records written to the DLQ")),
      retries_(metrics.Counter("fs_span_intake_retries_total",
                               "OTLP span records retried because Kafka was unavailable")),
      metrics_(metrics) {}

OtlpKafkaIntake::~OtlpKafkaIntake() {
  if (consumer_ != nullptr) (void)consumer_->Close();
}

Result<std::unique_ptr<OtlpKafkaIntake>> OtlpKafkaIntake::Create(OtlpKafkaIntakeConfig config,
                                                                 SpanRouter& router,
                                                                 kafka::Producer& producer,
                                                                 obs::Registry& metrics) {
  if (config.encoding != "otlp_proto" && config.encoding != "otlp_json" &&
      config.encoding != "auto") {
    return InvalidArgument("span intake encoding \"{}\": want otlp_proto, otlp_json or auto",
                           config.encoding);
  }
  std::unique_ptr<OtlpKafkaIntake> intake(
      new OtlpKafkaIntake(std::move(config), router, producer, metrics));
  OtlpKafkaIntake* self = intake.get();
  kafka::ConsumerConfig ccfg;
  ccfg.properties = self->config_.properties;
  ccfg.group_id = self->config_.group_id;
  ccfg.topics = {self->config_.topic};
  ccfg.on_revoked = [self](const kafka::TopicPartitions& parts, bool lost) {
    if (!lost) (void)self->CommitProcessed();
    std::lock_guard lock(self->offsets_mu_);
    for (const auto& tp : parts) {
      self->processed_.erase({tp.topic, tp.partition});
      self->committed_.erase({tp.topic, tp.partition});
    }
  };
  FS_ASSIGN_OR_RETURN(intake->consumer_, kafka::Consumer::Create(std::move(ccfg)));
  return intake;
}

Status OtlpKafkaIntake::DeadLetter(const kafka::Message& msg, const Status& error,
                                   std::stop_token stop) {
  const auto backoff = std::chrono::duration_cast<std::chrono::milliseconds>(config_.retry_backoff);
  kafka::FailedRecord record{msg.topic(), msg.partition(), msg.offset(),
                             msg.key(),   msg.value(),     msg.headers()};
  Status reason = error;
  while (!stop.stop_requested()) {
    auto done = std::make_shared<std::promise<Status>>();
    std::future<Status> f = done->get_future();
    Status st = dlq_.Write(record, reason, [done](const kafka::DeliveryReport& r) {
      done->set_value(r.status);
    });
    if (st.ok()) {
      if (f.wait_for(config_.ack_timeout) == std::future_status::ready) {
        st = f.get();
      } else {
        st = Unavailable("DLQ record not acknowledged in time");
      }
    }
    if (st.ok()) {
      dlq_records_.Inc();
      log::Warn("OTLP span record sent to the DLQ",
                {{"topic", std::string(msg.topic())}, {"partition", msg.partition()},
                 {"offset", static_cast<long long>(msg.offset())}, {"error", reason}});
      return OkStatus();
    }
    if (IsMessageTooLarge(st) && !record.value.empty()) {
      // The record fits the source topic but not the DLQ's limits: keep the reason and where
      // the record is (source.* headers), not its value. Retrying as is would never succeed.
      reason = Status(error.code(),
                      fmt::format("{} (the record's {} byte value is not kept: {})",
                                  error.message(), record.value.size(), st.message()));
      record.value = {};
      continue;
    }
    retries_.Inc();
    log::Warn("DLQ write failed; retrying", {{"error", st}});
    std::this_thread::sleep_for(backoff);
  }
  return CancelledError("stopped before the record was written to the DLQ");
}

Status OtlpKafkaIntake::Process(const kafka::Message& msg, std::stop_token stop) {
  records_.Inc();
  Encoding encoding = Encoding::kProtobuf;
  if (config_.encoding == "otlp_json") {
    encoding = Encoding::kJson;
  } else if (config_.encoding == "auto") {
    encoding = SniffEncoding(msg.value());
  }
  DecodeStats stats;
  Result<otlp::ExportTraceServiceRequest> req =
      DecodeExport(msg.value(), encoding, config_.limits, &stats);
  const auto backoff = std::chrono::duration_cast<std::chrono::milliseconds>(config_.retry_backoff);
  if (!req.ok()) {
    // The record is bad, not the pipeline: DLQ it (retrying only the DLQ write itself).
    CountRefused(metrics_, "kafka", stats.refusal.empty() ? "invalid" : stats.refusal);
    return DeadLetter(msg, req.error(), stop);
  }
  CountTruncated(metrics_, "kafka", stats.truncated_values);
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config_.ack_timeout);
  while (!stop.stop_requested()) {
    RouteResult r = router_.Route(*req, v1::SPAN_SOURCE_OTLP_KAFKA, timeout);
    if (r.status.ok()) {
      if (auto it = r.rejected_by.find("too_large_for_kafka"); it != r.rejected_by.end()) {
        CountRefused(metrics_, "kafka", "too_large_for_kafka");
        return DeadLetter(
            msg,
            OutOfRange("{} spans of the record are each larger than a Kafka message and were not "
                       "written ({} others were): {}",
                       it->second, r.accepted, r.rejection),
            stop);
      }
      return OkStatus();
    }
    retries_.Inc();
    log::Warn("keyed spans not acknowledged; retrying the record",
              {{"partition", msg.partition()}, {"offset", static_cast<long long>(msg.offset())},
               {"error", r.status}});
    std::this_thread::sleep_for(backoff);
  }
  return CancelledError("stopped before the record's spans were acknowledged");
}

Status OtlpKafkaIntake::CommitProcessed() {
  kafka::TopicPartitions offsets;
  {
    std::lock_guard lock(offsets_mu_);
    for (const auto& [tp, next] : processed_) {
      auto it = committed_.find(tp);
      if (it == committed_.end() || it->second != next) {
        offsets.push_back({tp.first, tp.second, next});
      }
    }
  }
  if (offsets.empty()) return OkStatus();
  FS_RETURN_IF_ERROR(consumer_->Commit(offsets));
  std::lock_guard lock(offsets_mu_);
  for (const auto& tp : offsets) committed_[{tp.topic, tp.partition}] = tp.offset;
  return OkStatus();
}

Status OtlpKafkaIntake::Run(std::stop_token stop) {
  auto last_commit = std::chrono::steady_clock::now();
  while (!stop.stop_requested()) {
    FS_ASSIGN_OR_RETURN(std::optional<kafka::Message> msg,
                        consumer_->Poll(std::chrono::milliseconds(100)));
    if (msg.has_value()) {
      if (Status st = Process(*msg, stop); st.ok()) {
        std::lock_guard lock(offsets_mu_);
        processed_[{std::string(msg->topic()), msg->partition()}] = msg->offset() + 1;
      } else {
        break;  // stopping: the record stays uncommitted and is read again
      }
    }
    if (std::chrono::steady_clock::now() - last_commit >= config_.commit_interval) {
      if (Status st = CommitProcessed(); !st.ok()) {
        log::Warn("span intake commit failed", {{"error", st}});
      }
      last_commit = std::chrono::steady_clock::now();
    }
  }
  if (Status st = CommitProcessed(); !st.ok()) {
    log::Warn("span intake final commit failed", {{"error", st}});
  }
  return consumer_->Close();
}

}  // namespace flamestream::spans
