// One exporter pipeline: consume the correlated topic with the sink's own consumer group,
// aggregate into windows, deliver closed windows to the sink, commit what was delivered.
//
//   ExporterStage stage({.kafka = cfg.kafka, .window = 10s}, std::make_unique<sinks::FileSink>(f),
//                       ctx.metrics);
//   Status st = stage.Run(ctx.stop);      // returns after draining on stop
//
// Runs on the shared stage loop (stage::RunLoop). Delivery contract (docs/reliability.md):
// each input record is held once per window it has samples in (stage::Loop::Hold), and
// released once each of those windows is delivered (or, after a permanent sink error,
// dead-lettered); its offset is committed after that,
// so a restart rebuilds exactly the windows not yet delivered from uncommitted input. A sink
// outage keeps the head window in the retry queue (exponential backoff + jitter) and pauses
// the assigned partitions until it is delivered: consumption stops, nothing is dropped.
// Windows close when the newest event time passes their end by `lateness`, or all at once
// when no record arrived for `idle_flush` (quiet topics, end of a replay). A window the sink
// delivered except for some series it refused for good (sinks::SeriesFailure) is acknowledged,
// and only the samples of those series go to the DLQ.
#pragma once

#include <chrono>
#include <memory>
#include <stop_token>
#include <string>

#include "flamestream/common/status.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/kafka/types.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/profile/labels.h"
#include "flamestream/profile/privacy.h"
#include "flamestream/sinks/sink.h"

namespace flamestream::exporter {

struct StageConfig {
  // librdkafka properties (config `kafka.*`), for the consumer and the DLQ producer.
  kafka::Properties kafka;
  // Input topic (the correlated topic, or its .replay variant).
  std::string topic = std::string(kafka::topics::kSamplesCorrelated);
  // Consumer group = prefix + sink name.
  std::string group_prefix = "flamestream-exporter-";
  std::chrono::nanoseconds window = std::chrono::seconds(10);
  // A window closes once the newest sample time is this far past its end.
  std::chrono::nanoseconds lateness = std::chrono::seconds(10);
  // With no input for this long, every open window closes.
  std::chrono::nanoseconds idle_flush = std::chrono::seconds(15);
  // Samples further ahead of this exporter's clock go to the DLQ instead of closing every
  // window at once; a batch spanning more windows than this goes to the DLQ whole.
  std::chrono::nanoseconds max_clock_skew = std::chrono::seconds(60);
  int max_windows_per_batch = 64;
  // Pause input while this many closed windows wait for the sink.
  size_t max_pending_windows = 8;
  RetryPolicy retry;
  // Series label caps (exporter.labels.*), applied where series keys are formed.
  profile::LabelLimits label_limits;
  // exporter.labels.allow/deny and exporter.paths.rewrite (profile/privacy.h).
  profile::PrivacyPolicy privacy;
  // On stop: how long to keep trying to deliver the last windows before giving up (they are
  // then rebuilt from uncommitted input on the next start).
  std::chrono::nanoseconds drain_timeout = std::chrono::seconds(20);
  // Replay: once the input is read to its end (stage::CaughtUp), deliver every window and
  // return; windows still undelivered after drain_timeout make Run() fail.
  bool stop_when_caught_up = false;
  std::chrono::milliseconds caught_up_idle{3000};
};

class ExporterStage {
 public:
  ExporterStage(StageConfig config, std::unique_ptr<sinks::Sink> sink, obs::Registry& metrics);
  ~ExporterStage();
  ExporterStage(const ExporterStage&) = delete;
  ExporterStage& operator=(const ExporterStage&) = delete;

  // Runs until `stop` (or, with stop_when_caught_up, the end of the input), then drains and
  // commits. Returns an error on fatal Kafka errors.
  Status Run(std::stop_token stop);

 private:
  StageConfig config_;
  std::unique_ptr<sinks::Sink> sink_;
  obs::Registry& metrics_;
};

}  // namespace flamestream::exporter
