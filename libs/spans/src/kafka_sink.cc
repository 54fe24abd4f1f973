#include "flamestream/spans/kafka_sink.h"

#include <memory>

namespace flamestream::spans {

void KafkaSpanSink::Write(const std::string& key, v1::SpanBatch batch, Done done) {
  std::string value;
  if (!batch.SerializeToString(&value)) {
    done(InternalError("cannot serialize a SpanBatch of {} spans", batch.spans_size()));
    return;
  }
  // Produce() returns an error instead of running the callback, so `done` is shared.
  auto shared_done = std::make_shared<Done>(std::move(done));
  Status st = producer_.Produce(topic_, key, value, {},
                                [shared_done](const kafka::DeliveryReport& r) {
                                  (*shared_done)(r.status);
                                });
  if (!st.ok()) {
    (*shared_done)(Unavailable("produce to {}: {}", topic_, st.ToString()));
  }
}

}  // namespace flamestream::spans
