#include "flamestream/spans/kafka_intake.h"

#include <condition_variable>
#include <mutex>
#include <thread>

#include "counters.h"
#include "flamestream/config/config.h"
#include "flamestream/log/log.h"
#include "flamestream/spans/kafka_writer.h"
#include "flamestream/stage/loop.h"

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
                                 obs::Registry& metrics)
    : config_(std::move(config)),
      router_(router),
      records_(metrics.Counter("fs_span_intake_records_total",
                               "records consumed from the OTLP span topic")),
      dlq_records_(metrics.Counter("fs_span_intake_dlq_records_total",
                                   "undecodable OTLP span records written to the DLQ")),
      retries_(metrics.Counter("fs_span_intake_retries_total",
                               "OTLP span records retried because Kafka was unavailable")),
      metrics_(metrics) {}

OtlpKafkaIntake::~OtlpKafkaIntake() = default;

Result<std::unique_ptr<OtlpKafkaIntake>> OtlpKafkaIntake::Create(OtlpKafkaIntakeConfig config,
                                                                 SpanRouter& router,
                                                                 obs::Registry& metrics) {
  if (config.encoding != "otlp_proto" && config.encoding != "otlp_json" &&
      config.encoding != "auto") {
    return InvalidArgument("span intake encoding \"{}\": want otlp_proto, otlp_json or auto",
                           config.encoding);
  }
  return std::unique_ptr<OtlpKafkaIntake>(new OtlpKafkaIntake(std::move(config), router, metrics));
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
    // The record is bad, not the pipeline: the DLQ (the loop writes it).
    CountRefused(metrics_, "kafka", stats.refusal.empty() ? "invalid" : stats.refusal);
    dlq_records_.Inc();
    return req.error();
  }
  CountTruncated(metrics_, "kafka", stats.truncated_values);
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config_.ack_timeout);
  while (!stop.stop_requested()) {
    RouteResult r = router_.Route(*req, v1::SPAN_SOURCE_OTLP_KAFKA, timeout);
    if (r.status.ok()) {
      if (auto it = r.rejected_by.find("too_large_for_kafka"); it != r.rejected_by.end()) {
        CountRefused(metrics_, "kafka", "too_large_for_kafka");
        dlq_records_.Inc();
        return OutOfRange(
            "{} spans of the record are each larger than a Kafka message and were not written "
            "({} others were): {}",
            it->second, r.accepted, r.rejection);
      }
      return OkStatus();
    }
    retries_.Inc();
    log::Warn("keyed spans not acknowledged; retrying the record",
              {{"partition", msg.partition()},
               {"offset", static_cast<long long>(msg.offset())},
               {"error", r.status}});
    std::this_thread::sleep_for(backoff);
  }
  return CancelledError("stopped before the record's spans were acknowledged");
}

namespace {

// The intake on the shared stage loop: one record at a time, done when its spans are
// acknowledged; a record still waiting when the loop stops is held (never committed), so the
// next owner routes it again.
class IntakeHandler final : public stage::Handler {
 public:
  IntakeHandler(OtlpKafkaIntake& intake, std::stop_token stop) : intake_(intake), stop_(stop) {}
  Status Record(stage::Loop& loop, const kafka::Message& in) override {
    Status st = intake_.Process(in, stop_);
    if (st.code() == StatusCode::kCancelled && stop_.stop_requested()) {
      (void)loop.Hold(in);
      return OkStatus();
    }
    return st;  // an error sends the record to the DLQ
  }

 private:
  OtlpKafkaIntake& intake_;
  std::stop_token stop_;
};

}  // namespace

Status OtlpKafkaIntake::Run(std::stop_token stop) {
  const stage::LoopConfig cfg{
      .stage = "span-intake",
      .group_id = config_.group_id,
      .input_topics = {config_.topic},
      .kafka = config_.properties,
      .commit_interval =
          std::chrono::duration_cast<std::chrono::milliseconds>(config_.commit_interval)};
  IntakeHandler handler(*this, stop);
  const auto backoff = std::chrono::duration_cast<std::chrono::milliseconds>(config_.retry_backoff);
  while (true) {
    Status st = stage::RunLoop(cfg, {.metrics = metrics_, .stop = stop}, handler);
    // Settings the clients refuse are fatal; anything else (a DLQ write the broker did not
    // take, a fatal producer error) restarts from the last commit after a pause, so the
    // correlator never goes on without its span intake.
    if (st.ok() || stop.stop_requested() || st.code() == StatusCode::kInvalidArgument) return st;
    retries_.Inc();
    log::Error("otlp_spans intake failed; restarting from the last commit", {{"error", st}});
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    cv.wait_for(lock, stop, backoff, [] { return false; });
  }
}

}  // namespace flamestream::spans
