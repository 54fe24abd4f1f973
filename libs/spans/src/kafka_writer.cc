#include "flamestream/spans/kafka_writer.h"

#include <librdkafka/rdkafka.h>

#include <memory>

namespace flamestream::spans {

bool IsMessageTooLarge(const Status& status) {
  // libs/kafka reports MSG_SIZE_TOO_LARGE (the producer's own message.max.bytes check, or the
  // broker's max.message.bytes) as OutOfRange (DeliveryReport::too_large in reports).
  return status.code() == StatusCode::kOutOfRange;
}

void KafkaSpanWriter::Write(const std::string& key, v1::SpanBatch batch, Done done) {
  std::string value;
  if (!batch.SerializeToString(&value)) {
    done(InternalError("cannot serialize a SpanBatch of {} spans", batch.spans_size()));
    return;
  }
  const size_t bytes = value.size();
  // Produce() returns an error instead of running the callback, so `done` is shared.
  auto shared_done = std::make_shared<Done>(std::move(done));
  Status st = producer_.Produce(topic_, key, value, {},
                                [shared_done, bytes](const kafka::DeliveryReport& r) {
                                  if (IsMessageTooLarge(r.status)) {
                                    (*shared_done)(OutOfRange("a keyed span batch of {} bytes: {}",
                                                              bytes, r.status.message()));
                                    return;
                                  }
                                  (*shared_done)(r.status);
                                });
  if (IsMessageTooLarge(st)) {
    (*shared_done)(OutOfRange("a keyed span batch of {} bytes: {}", bytes, st.message()));
  } else if (!st.ok()) {
    (*shared_done)(Unavailable("produce to {}: {}", topic_, st.ToString()));
  }
}

}  // namespace flamestream::spans
