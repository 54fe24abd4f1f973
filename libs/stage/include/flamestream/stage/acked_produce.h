// Produces one output of an input record and, once Kafka acknowledges it, counts it in the
// stage's metrics and acks the input (so its offset can be committed); a failed delivery
// latches the error. Shared by the map stage and the correlator, which commit the same way.
//
//   Status s = stage::ProduceAcked(*producer, {topic, partition, offset}, started, out_topic,
//                                  key, value, headers, metrics, acks, failure);
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "flamestream/kafka/ack_tracker.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/stage/failure_latch.h"

namespace flamestream::stage {

// The input record an output belongs to.
struct InputPosition {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
};

// Returns Produce's own status (the record was not queued); delivery outcomes arrive later
// through `metrics`, `acks` and `failure`, which must outlive the producer's flush.
inline Status ProduceAcked(kafka::Producer& producer, InputPosition in,
                           std::chrono::steady_clock::time_point started,
                           std::string_view out_topic, std::string_view key,
                           std::string_view value, const kafka::Headers& headers,
                           obs::StageMetrics& metrics, kafka::AckTracker& acks,
                           FailureLatch& failure) {
  const size_t bytes = value.size();
  return producer.Produce(
      out_topic, key, value, headers,
      [&metrics, &acks, &failure, in = std::move(in), bytes,
       started](const kafka::DeliveryReport& r) {
        if (r.status.ok()) {
          metrics.records_out.Inc();
          metrics.bytes_out.Inc(bytes);
          metrics.processing_seconds.Observe(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
          acks.Ack(in.topic, in.partition, in.offset);
        } else {
          metrics.Errors("produce").Inc();
          failure.Set(r.status.WithContext("delivery failed"));
        }
      });
}

}  // namespace flamestream::stage
