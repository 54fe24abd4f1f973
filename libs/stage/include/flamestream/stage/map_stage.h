// The loop of a Kafka stage that maps each input record to zero or more output records:
// consume -> transform -> produce, committing an input only after all its outputs are
// acknowledged, sending undecodable input to `<topic>.dlq`, pausing when the producer falls
// behind, and draining on stop.
//
//   stage::MapStageConfig cfg;
//   cfg.stage = "symbolizer";
//   cfg.group_id = "flamestream-symbolizer";
//   cfg.input_topics = {"flamestream.samples.raw.v1"};
//   cfg.kafka = kafka_props;                                  // config `kafka.*`
//   return stage::RunMapStage(cfg, ctx, [&](const kafka::Message& in)
//       -> Result<std::vector<stage::Output>> {
//     FS_ASSIGN_OR_RETURN(Batch b, Decode(in.value()));      // error -> DLQ, stage goes on
//     return std::vector<stage::Output>{{.topic = out_topic, .key = std::string(in.key()),
//                                        .value = Encode(b)}};
//   });
//
// Delivery contract (ARCHITECTURE.md): at-least-once. A failed delivery (after librdkafka's
// own retries, message.timeout.ms) stops the stage with an error instead of skipping the
// input, so a restart re-reads from the last committed offset. An output too large for Kafka
// is split by `split` or, when it cannot be, its input goes to the DLQ with the reason: it
// would fail the same way after every restart.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/types.h"
#include "flamestream/service/service.h"
#include "flamestream/stage/loop.h"
#include "flamestream/stage/output.h"
#include "flamestream/stage/oversize.h"

namespace flamestream::stage {


// Maps one input record to its outputs. An error sends the record to the DLQ with the
// error's text; the stage keeps going.
using Transform = std::function<Result<std::vector<Output>>(const kafka::Message&)>;

struct MapStageConfig {
  std::string stage;                    // metrics label and DLQ `stage` header
  std::string group_id;
  std::vector<std::string> input_topics;
  kafka::Properties kafka;              // librdkafka properties for both clients
  kafka::Assignor assignor = kafka::Assignor::kRange;
  std::string auto_offset_reset = "earliest";
  std::chrono::milliseconds poll_timeout{100};
  std::chrono::milliseconds commit_interval{1000};
  // Outputs queued or in flight above which input is paused (bounded memory).
  int max_in_flight = kDefaultMaxInFlight;
  // How long draining may wait for outstanding outputs.
  std::chrono::milliseconds drain_timeout{20000};
  // Called on the loop thread after each poll (idle or not), for periodic work.
  std::function<void()> on_tick;
  // Replay: once partitions are assigned, seek them to the first record at or after this
  // time (Unix ms; 0 = no seek). Where the broker cannot say, they start at the earliest
  // retained record, so the transform must filter by event time anyway.
  int64_t seek_to_timestamp_ms = 0;
  // Replay: return (after draining) once every assigned partition has been read to the end
  // and nothing arrived for `caught_up_idle`.
  bool stop_when_caught_up = false;
  std::chrono::milliseconds caught_up_idle{3000};
  // Splits an output larger than Kafka takes (see oversize.h); without one such an output
  // sends its input to the DLQ.
  Splitter split;
};

Status RunMapStage(const MapStageConfig& config, service::Context& ctx, const Transform& transform);

}  // namespace flamestream::stage
