// The span router half of the correlator (ARCHITECTURE.md): OTLP receivers, the otlp_spans
// intake and the processes table, all writing flamestream.spans.keyed.v1 with the samples' key.
//
//   SpanIntakeConfig cfg;                  // cfg.Declare(schema) binds correlator.otlp.*, spans.*
//   FS_ASSIGN_OR_RETURN(auto intake, SpanIntake::Start(cfg, kafka_props, ctx));
//   ...                                    // the join stage runs
//   intake->Stop();                        // receivers first, then the intake, then flush
#pragma once

#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>

#include "flamestream/common/status.h"
#include "flamestream/config/config.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/service/service.h"
#include "flamestream/spans/kafka_intake.h"
#include "flamestream/spans/kafka_writer.h"
#include "flamestream/spans/receivers.h"
#include "flamestream/spans/router.h"

namespace flamestream::correlator {

struct SpanIntakeConfig {
  bool enabled = true;         // correlator.spans: run the span router in this process
  bool otlp_receivers = true;  // correlator.otlp.enabled
  bool kafka_intake = true;    // correlator.otlp_spans.enabled
  spans::SpanRouterConfig router;
  spans::ReceiverConfig receivers;
  spans::OtlpKafkaIntakeConfig intake;
  void Declare(config::Schema& schema);
};

class SpanIntake {
 public:
  static Result<std::unique_ptr<SpanIntake>> Start(const SpanIntakeConfig& config,
                                                   const kafka::Properties& kafka,
                                                   service::Context& ctx);
  ~SpanIntake();
  SpanIntake(const SpanIntake&) = delete;
  SpanIntake& operator=(const SpanIntake&) = delete;
  // Stops taking spans, waits for those in flight and flushes. Idempotent.
  void Stop();

 private:
  SpanIntake() = default;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<spans::KafkaSpanWriter> sink_;
  std::unique_ptr<spans::SpanRouter> router_;
  std::unique_ptr<spans::OtlpReceivers> receivers_;
  std::unique_ptr<spans::OtlpKafkaIntake> intake_;
  std::jthread intake_thread_;
  std::jthread processes_thread_;
  bool stopped_ = false;
};

}  // namespace flamestream::correlator
