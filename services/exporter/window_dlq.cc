#include "window_dlq.h"

#include "flamestream/batch/filter.h"
#include "flamestream/log/log.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::exporter {

InputRecord InputRecord::Of(const kafka::Message& msg) {
  return InputRecord{.topic = std::string(msg.topic()),
                     .partition = msg.partition(),
                     .offset = msg.offset(),
                     .key = std::string(msg.key()),
                     .value = std::string(msg.value()),
                     .headers = msg.headers()};
}

Status WindowDlq::Write(const std::vector<std::shared_ptr<const InputRecord>>& inputs,
                        int64_t start_ns, int64_t window_ns, const Status& error,
                        const sinks::Response& response,
                        std::function<void(const InputRecord&)> on_delivered) {
  Status first_error;
  for (const std::shared_ptr<const InputRecord>& in : inputs) {
    v1::SampleBatch batch;
    size_t kept = 0;
    Status cut = batch.ParseFromString(in->value)
                     ? batch::KeepSamplesInRange(batch, start_ns, start_ns + window_ns - 1, &kept)
                     : DataLoss("not a flamestream.v1.SampleBatch");
    if (!cut.ok()) {
      // It decoded when it was aggregated, so this does not happen; keep it whole.
      log::Error("exporter: cannot cut DLQ record to its window, keeping it whole",
                 {{"sink", sink_}, {"offset", static_cast<long long>(in->offset)}, {"error", cut}});
    } else if (kept == 0) {
      if (on_delivered) on_delivered(*in);  // nothing of it is in this window
      continue;
    }
    const std::string value = cut.ok() ? batch.SerializeAsString() : in->value;
    kafka::Headers headers = in->headers;
    kafka::SetHeader(headers, kDlqHeaderReason,
                     fmt::format("sink {} refused the window permanently", sink_));
    kafka::SetHeader(headers, kDlqHeaderSink, sink_);
    kafka::SetHeader(headers, kDlqHeaderWindowStart, std::to_string(start_ns));
    kafka::SetHeader(headers, kDlqHeaderWindowEnd, std::to_string(start_ns + window_ns));
    kafka::SetHeader(headers, kDlqHeaderResponseStatus, std::to_string(response.status));
    kafka::SetHeader(headers, kDlqHeaderResponseBody, response.body);
    Status st =
        dlq_.Write(kafka::FailedRecord{.topic = in->topic,
                                       .partition = in->partition,
                                       .offset = in->offset,
                                       .key = in->key,
                                       .value = value,
                                       .headers = std::move(headers)},
                   error, [in, on_delivered](const kafka::DeliveryReport& r) {
                     if (!r.status.ok()) {
                       log::Error("exporter: DLQ write failed; the window is rebuilt on restart",
                                  {{"error", r.status}});
                       return;
                     }
                     if (on_delivered) on_delivered(*in);
                   });
    if (!st.ok() && first_error.ok()) first_error = st;
  }
  return first_error;
}

}  // namespace flamestream::exporter
