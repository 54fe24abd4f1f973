#include "window_dlq.h"

#include <algorithm>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/batch/filter.h"
#include "flamestream/log/log.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::exporter {
namespace {

// Keeps the samples of `batch` whose process went to one of the selected series of the window.
Status KeepSamplesOfSeries(v1::SampleBatch& batch, const SeriesSelection& only, size_t* kept) {
  const std::string id = batch::BatchIdString(batch.id());
  const std::vector<batch::SampleRow> rows = batch::DecodeSamples(batch);
  std::vector<bool> keep(rows.size(), false);
  *kept = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const batch::SampleRow& r = rows[i];
    const int64_t s = only.window->SeriesOfBatchPid(id, r.pid, r.profile_type);
    keep[i] = s >= 0 && std::find(only.series.begin(), only.series.end(),
                                  static_cast<uint32_t>(s)) != only.series.end();
    *kept += keep[i] ? 1 : 0;
  }
  if (*kept == rows.size() || *kept == 0) return OkStatus();
  return batch::RewriteSamples(batch, [&](batch::SampleInput&, size_t i) { return bool{keep[i]}; });
}

}  // namespace

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
                        const std::function<void(const InputRecord&)>& on_delivered,
                        const SeriesSelection* only) {
  std::string services;
  if (only != nullptr) {
    for (uint32_t s : only->series) {
      if (!services.empty()) services += ",";
      services += only->window->series[s].key.service;
    }
  }
  Status first_error;
  for (const std::shared_ptr<const InputRecord>& in : inputs) {
    v1::SampleBatch batch;
    size_t kept = 0;
    Status cut = batch.ParseFromString(in->value)
                     ? batch::KeepSamplesInRange(batch, start_ns, start_ns + window_ns - 1, &kept)
                     : DataLoss("not a flamestream.v1.SampleBatch");
    if (cut.ok() && kept > 0 && only != nullptr) cut = KeepSamplesOfSeries(batch, *only, &kept);
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
    kafka::SetHeader(
        headers, kDlqHeaderReason,
        only == nullptr
            ? fmt::format("sink {} refused the window permanently", sink_)
            : fmt::format(
                  "sink {} refused series {} permanently (the rest of the window was delivered)",
                  sink_, services));
    if (only != nullptr) kafka::SetHeader(headers, kDlqHeaderSeries, services);
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
