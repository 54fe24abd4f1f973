// KafkaSpanWriter: writes keyed span batches to flamestream.spans.keyed.v1, one record per batch,
// keyed "<cluster>/<node>" with the samples' partitioner (the Producer's murmur2_random).
//
//   kafka::ProducerConfig pcfg{.properties = cfg.kafka, .queue_full_timeout = 1s};
//   FS_ASSIGN_OR_RETURN(auto producer, kafka::Producer::Create(pcfg));
//   spans::KafkaSpanWriter sink(*producer);
//   spans::SpanRouter router(router_cfg, sink, ctx.metrics);
//
// A batch's done callback runs from the producer's delivery report (acks=all), so a receiver
// answers its client only once the spans are durable. When librdkafka's queue stays full for
// the producer's queue_full_timeout, the batch fails at once with Unavailable: keep that
// timeout well under the receivers' ack timeout so a slow Kafka turns into 503s quickly
// instead of blocking receiver threads.
#pragma once

#include <string>

#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/spans/router.h"

namespace flamestream::spans {

// Whether a produce or delivery error is Kafka's MSG_SIZE_TOO_LARGE (a record larger than
// the producer's message.max.bytes or the topic's max.message.bytes).
bool IsMessageTooLarge(const Status& status);

// A batch Kafka refuses as too large fails with OutOfRange, so the router splits it.
class KafkaSpanWriter : public SpanWriter {
 public:
  // `producer` must outlive the sink.
  explicit KafkaSpanWriter(kafka::Producer& producer,
                         std::string topic = std::string(kafka::topics::kSpansKeyed))
      : producer_(producer), topic_(std::move(topic)) {}

  void Write(const std::string& key, v1::SpanBatch batch, Done done) override;

 private:
  kafka::Producer& producer_;
  std::string topic_;
};

}  // namespace flamestream::spans
