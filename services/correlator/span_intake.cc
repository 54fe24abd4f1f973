#include "span_intake.h"

#include "flamestream/kafka/topics.h"
#include "flamestream/log/log.h"
#include "flamestream_service_keys.h"

namespace flamestream::correlator {

void SpanIntakeConfig::Declare(config::Schema& schema) {
  schema.Add("correlator.spans", &enabled,
             "run the span router (OTLP receivers, otlp_spans intake) in this process");
  schema.Add("correlator.otlp.enabled", &otlp_receivers,
             "serve OTLP/gRPC and OTLP/HTTP trace receivers");
  schema.Add("correlator.otlp_spans.enabled", &kafka_intake,
             "read spans the OpenTelemetry Collector's Kafka exporter writes (otlp_spans)");
  router.Declare(schema, "spans");
  receivers.Declare(schema, keys::correlator::kOtlpPrefix);
  intake.Declare(schema, "spans.kafka");
}

Result<std::unique_ptr<SpanIntake>> SpanIntake::Start(const SpanIntakeConfig& config,
                                                      const kafka::Properties& kafka,
                                                      service::Context& ctx) {
  std::unique_ptr<SpanIntake> self(new SpanIntake());
  if (!config.enabled) {
    return self;
  }
  if (config.otlp_receivers) {
    // Certificate and token mistakes are config errors (exit 2), found before Kafka is dialed.
    FS_RETURN_IF_ERROR(config.receivers.LoadSecurity().status());
  }
  // Well under the receivers' ack timeout, so a full queue becomes a 503, not a stuck thread.
  kafka::ProducerConfig pcfg;
  pcfg.properties = kafka;
  pcfg.queue_full_timeout = std::chrono::seconds(1);
  FS_ASSIGN_OR_RETURN(self->producer_, kafka::Producer::Create(pcfg));
  self->sink_ = std::make_unique<spans::KafkaSpanWriter>(*self->producer_);
  self->router_ = std::make_unique<spans::SpanRouter>(config.router, *self->sink_, ctx.metrics);

  // The processes table: every agent's process records, from the start of the compacted topic.
  // Every replica needs all of it (a span may name any node), so no group shares it out: a
  // group named from getpid() was the same in every container, and replicas split the table.
  kafka::ConsumerConfig ccfg;
  ccfg.properties = kafka;
  ccfg.whole_topics = true;
  ccfg.topics = {std::string(kafka::topics::kProcesses)};
  ccfg.auto_offset_reset = "earliest";
  FS_ASSIGN_OR_RETURN(std::unique_ptr<kafka::Consumer> processes, kafka::Consumer::Create(ccfg));
  spans::SpanRouter* router = self->router_.get();
  self->processes_thread_ =
      std::jthread([router, consumer = std::move(processes)](std::stop_token stop) mutable {
        while (!stop.stop_requested()) {
          auto m = consumer->Poll(std::chrono::milliseconds(200));
          if (!m.ok()) {
            log::Error("processes consumer failed", {{"error", m.error()}});
            return;
          }
          if (!m->has_value()) {
            continue;
          }
          const kafka::Message& msg = **m;
          std::optional<std::string_view> value;
          if (!msg.tombstone()) {
            value = msg.value();
          }
          if (Status s = router->ApplyProcessRecord(msg.key(), value); !s.ok()) {
            log::Warn("undecodable process record skipped", {{"error", s}});
          }
        }
        (void)consumer->Close();
      });

  if (config.otlp_receivers) {
    FS_ASSIGN_OR_RETURN(self->receivers_,
                        spans::OtlpReceivers::Start(config.receivers, *router, ctx.metrics));
    log::Info("OTLP receivers listening", {{"grpc_port", self->receivers_->grpc_port()},
                                           {"http_port", self->receivers_->http_port()}});
  }
  if (config.kafka_intake) {
    spans::OtlpKafkaIntakeConfig icfg = config.intake;
    icfg.properties = kafka;
    // One set of limits for every span source: correlator.otlp.max_*.
    icfg.limits = config.receivers.decode_limits();
    FS_ASSIGN_OR_RETURN(self->intake_, spans::OtlpKafkaIntake::Create(icfg, *router, ctx.metrics));
    spans::OtlpKafkaIntake* intake = self->intake_.get();
    self->intake_thread_ = std::jthread([intake](std::stop_token stop) {
      if (Status s = intake->Run(stop); !s.ok()) {
        log::Error("otlp_spans intake stopped", {{"error", s}});
      }
    });
  }
  return self;
}

void SpanIntake::Stop() {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  if (receivers_ != nullptr) {
    receivers_->Stop();
  }
  if (intake_thread_.joinable()) {
    intake_thread_.request_stop();
    intake_thread_.join();
  }
  if (processes_thread_.joinable()) {
    processes_thread_.request_stop();
    processes_thread_.join();
  }
  if (producer_ != nullptr) {
    (void)producer_->Flush(std::chrono::seconds(10));
  }
}

SpanIntake::~SpanIntake() { Stop(); }

}  // namespace flamestream::correlator
