// OtlpKafkaIntake: consumes the topic the OpenTelemetry Collector's Kafka exporter writes
// (`otlp_spans`; each record value one ExportTraceServiceRequest, encoding otlp_proto or
// otlp_json; key null or the 32-char hex trace id, which we do not need) and feeds the router.
//
//   spans::OtlpKafkaIntakeConfig kcfg{.properties = cfg.kafka};   // kcfg.Declare(schema)
//   FS_ASSIGN_OR_RETURN(auto intake,
//                       spans::OtlpKafkaIntake::Create(kcfg, router, ctx.metrics));
//   std::jthread t([&](std::stop_token st) { Status s = intake->Run(st); ... });
//
// At-least-once: a record's offset is committed only after its spans are acknowledged by
// Kafka (or it went to the DLQ). While the router answers Unavailable (Kafka slow or down) the
// same record is retried after a backoff, so nothing is skipped. A poison record is never
// retried: undecodable records and records over the decode limits (`limits`, the receivers'
// correlator.otlp.max_* keys) go to `otlp_spans.dlq` with the reason in the `error` header
// (counted in fs_spans_refused_total{source="kafka",reason}) and the intake goes on with the
// next record. Keyed output larger than a Kafka message (MSG_SIZE_TOO_LARGE) is split by the
// router; when a single span is too large for any message, its record goes to the DLQ as well
// (after the rest of its spans are written). A DLQ record that is itself too large is written
// without its value, the error header saying so.
// Runs on the shared stage loop (libs/stage), which writes the DLQ records.
// Records are processed one at a time: the Collector batches many spans per record, so the
// per-record ack round trip is cheap relative to the work per record.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <utility>

#include "flamestream/common/status.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/spans/router.h"

namespace flamestream::config {
class Schema;
}

namespace flamestream::spans {

struct OtlpKafkaIntakeConfig {
  // librdkafka properties (bootstrap.servers, security, ...), verbatim.
  kafka::Properties properties;
  std::string topic = std::string(kafka::topics::kOtlpSpans);
  std::string group_id = "flamestream-span-router";
  // "otlp_proto", "otlp_json" (as the Collector's traces::encoding), or "auto" (by first byte).
  std::string encoding = "otlp_proto";
  // Per record: how long to wait for the keyed spans' ack before retrying the record.
  std::chrono::nanoseconds ack_timeout = std::chrono::seconds(30);
  // Pause between retries of a record while Kafka is unavailable.
  std::chrono::nanoseconds retry_backoff = std::chrono::seconds(1);
  // How often processed offsets are committed.
  std::chrono::nanoseconds commit_interval = std::chrono::seconds(1);
  // Decode limits per record (the service passes the receivers' correlator.otlp.max_*).
  DecodeLimits limits;

  // Declares <prefix>.topic, .group, .encoding, .ack_timeout, ... (not `properties`: the
  // service passes its shared `kafka.*` passthrough).
  void Declare(config::Schema& schema, const std::string& prefix = "spans.kafka");
};

class OtlpKafkaIntake {
 public:
  // `router` and `metrics` must outlive the intake.
  static Result<std::unique_ptr<OtlpKafkaIntake>> Create(OtlpKafkaIntakeConfig config,
                                                         SpanRouter& router,
                                                         obs::Registry& metrics);
  ~OtlpKafkaIntake();
  OtlpKafkaIntake(const OtlpKafkaIntake&) = delete;
  OtlpKafkaIntake& operator=(const OtlpKafkaIntake&) = delete;

  // Consumes on the shared stage loop (stage "span-intake") until `stop`, then commits what is
  // processed and leaves the group. Returns an error only for settings the Kafka clients
  // refuse; other failures restart the loop from the last commit after retry_backoff.
  Status Run(std::stop_token stop);
  // Handles one record: OK once its spans are acknowledged (retrying while unavailable), an
  // error for a record that belongs in the DLQ, Cancelled when `stop` came first.
  Status Process(const kafka::Message& msg, std::stop_token stop);

 private:
  OtlpKafkaIntake(OtlpKafkaIntakeConfig config, SpanRouter& router, obs::Registry& metrics);

  OtlpKafkaIntakeConfig config_;
  SpanRouter& router_;
  obs::Counter& records_;
  obs::Counter& dlq_records_;
  obs::Counter& retries_;
  obs::Registry& metrics_;
};

}  // namespace flamestream::spans
