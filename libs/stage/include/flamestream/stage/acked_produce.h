// Produces one output of an input record and, once Kafka acknowledges it, counts it in the
// stage's metrics and acks the input (so its offset can be committed); a failed delivery
// latches the error. Shared by the map stage and the correlator, which commit the same way.
//
//   Status s = stage::ProduceAcked(*producer, {topic, partition, offset}, started, out_topic,
//                                  key, value, headers, metrics, acks, failure, &refused);
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "flamestream/kafka/ack_tracker.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/stage/failure_latch.h"
#include "flamestream/stage/output.h"
#include "flamestream/stage/oversize.h"

namespace flamestream::stage {

// Returns Produce's own status (the record was not queued); delivery outcomes arrive later
// through `metrics`, `acks` and `failure`, which must outlive the producer's flush. With
// `refused`, a record the broker refuses as too large goes there (for ProduceRefused to split
// it) instead of failing the stage; the input stays unacknowledged until its pieces are.
inline Status ProduceAcked(kafka::Producer& producer, InputPosition in,
                           std::chrono::steady_clock::time_point started,
                           std::string_view out_topic, std::string_view key,
                           std::string_view value, const kafka::Headers& headers,
                           obs::StageMetrics& metrics, kafka::AckTracker& acks,
                           FailureLatch& failure, RefusedOutputs* refused = nullptr) {
  const size_t bytes = value.size();
  kafka::Headers kept;
  if (refused != nullptr) {
    kept = headers;
  }
  return producer.Produce(
      out_topic, key, value, headers,
      [&metrics, &acks, &failure, refused, in = std::move(in), bytes, started,
       topic = refused != nullptr ? std::string(out_topic) : std::string(),
       kept = std::move(kept)](const kafka::DeliveryReport& r) mutable {
        if (r.status.ok()) {
          metrics.records_out.Inc();
          metrics.bytes_out.Inc(bytes);
          metrics.processing_seconds.Observe(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
          acks.Ack(in.topic, in.partition, in.offset);
        } else if (r.too_large && refused != nullptr) {
          metrics.Errors("too_large").Inc();
          refused->Push({std::move(in), Output{std::move(topic), std::string(r.key),
                                               std::string(r.value), std::move(kept)}});
        } else {
          metrics.Errors("produce").Inc();
          failure.Set(r.status.WithContext("delivery failed"));
        }
      });
}

}  // namespace flamestream::stage
