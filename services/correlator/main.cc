// flamestream-correlator: joins symbolized samples with trace spans (see ARCHITECTURE.md).
#include "correlator_stage.h"
#include "flamestream/batch/split.h"
#include "flamestream/log/log.h"
#include "flamestream/service/service.h"
#include "flamestream_service_keys.h"
#include "span_intake.h"

namespace {

namespace correlator = flamestream::correlator;
namespace keys = flamestream::keys;

struct CorrelatorConfig {
  std::map<std::string, std::string> kafka;
  std::string group = "flamestream-correlator";
  // Defaults are the libraries' own (correlate::JoinConfig, correlator::StageConfig).
  std::chrono::nanoseconds lateness = correlator::StageConfig{}.join.allowed_lateness;
  std::chrono::nanoseconds idle_timeout = correlator::StageConfig{}.join.idle_timeout;
  std::chrono::nanoseconds max_clock_skew = correlator::StageConfig{}.join.max_clock_skew;
  uint64_t max_spans = correlator::StageConfig{}.join.max_spans;
  uint64_t max_held_samples = correlator::StageConfig{}.join.max_held_samples;
  int max_in_flight = correlator::StageConfig{}.max_in_flight;
  std::chrono::nanoseconds drain_timeout = correlator::StageConfig{}.drain_timeout;
  bool replay = false;
  correlator::SpanIntakeConfig spans;

  void Declare(flamestream::config::Schema& s) {
    spans.Declare(s);
    s.AddPassthrough("kafka", &kafka, "librdkafka properties, e.g. kafka.bootstrap.servers");
    s.Add("correlator.group", &group, "consumer group id", "--group");
    s.Add(keys::correlator::kLateness, &lateness,
          "how long a sample waits for its span (allowed lateness of the event-time join)",
          "--lateness");
    s.Add("correlator.idle_timeout", &idle_timeout,
          "with no sample for this long, a partition's watermark follows processing time");
    s.Add("correlator.max_clock_skew", &max_clock_skew,
          "timestamps further ahead than this do not move the watermark; also how far before "
          "the replay start the spans topic is re-read after a restart");
    s.Add("correlator.max_spans", &max_spans,
          "spans held per partition; above it the earliest-ending are evicted (counted)");
    s.Add("correlator.max_held_samples", &max_held_samples,
          "samples held per partition waiting for the watermark; above it the oldest are "
          "emitted early (counted)");
    s.Add("correlator.max_in_flight", &max_in_flight,
          "unacknowledged output batches above which the samples partitions are paused");
    s.Add("correlator.drain_timeout", &drain_timeout,
          "how long draining waits for outstanding outputs on stop");
    s.Add(keys::correlator::kReplay, &replay,
          "replay mode: read flamestream.samples.symbolized.v1.replay, write "
          "flamestream.samples.correlated.v1.replay in group <group>-replay, stop when caught up",
          "--replay");
  }

  correlator::StageConfig ToStage() const {
    correlator::StageConfig c;
    c.kafka = kafka;
    c.group = group;
    c.join.allowed_lateness = lateness;
    c.join.idle_timeout = idle_timeout;
    c.join.max_clock_skew = max_clock_skew;
    c.join.max_spans = max_spans;
    c.join.max_held_samples = max_held_samples;
    c.max_in_flight = max_in_flight;
    c.drain_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(drain_timeout);
    // Correlated batches grow (spans, service names): one over the message limit is split.
    c.split = [](std::string_view value, size_t max_bytes) {
      return flamestream::batch::SplitSerializedBatch(value, max_bytes);
    };
    if (replay) {
      correlator::ApplyReplayMode(c);
    }
    return c;
  }
};

}  // namespace

int main(int argc, char** argv) {
  namespace service = flamestream::service;
  CorrelatorConfig cfg;
  return service::Main(
      argc, argv,
      {.name = "correlator",
       .summary = "joins symbolized samples with OpenTelemetry spans by node, process, thread, "
                  "time and trace ids",
       .declare = [&](flamestream::config::Schema& s) { cfg.Declare(s); },
       .run = [&](service::Context& ctx) -> flamestream::Status {
         // The span router runs beside the join (not in replay: spans are already keyed).
         std::unique_ptr<correlator::SpanIntake> intake;
         if (!cfg.replay) {
           auto started = correlator::SpanIntake::Start(cfg.spans, cfg.kafka, ctx);
           if (!started.ok()) {
             return started.error().WithContext("span intake");
           }
           intake = std::move(*started);
         }
         correlator::CorrelatorStage stage(cfg.ToStage(), ctx.metrics);
         flamestream::Status status = stage.Run(ctx);
         if (intake != nullptr) {
           intake->Stop();
         }
         return status;
       },
       .default_admin_listen = "127.0.0.1:9402"});
}
