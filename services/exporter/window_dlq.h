// Dead-lettering a window the sink refused for good (a 4xx other than 408/429): the DLQ gets
// the input records that made the window, not the profile, so an operator can fix the cause
// and re-drive them into the correlated topic.
//
//   auto rec = std::make_shared<const InputRecord>(InputRecord::Of(msg));  // kept per window
//   ...
//   WindowDlq dlq(producer, "pyroscope");
//   Status st = dlq.Write(inputs, window.start_ns, window_ns, done.status, done.response,
//                         [&](const InputRecord& r) { acks.Ack(r.topic, r.partition, r.offset); });
//
// Each record is cut down to its samples inside the refused window ([start, start + window)),
// so re-driving it cannot count the samples of its other windows, which were delivered, a
// second time; the batch id is kept, so a re-driven record is still deduplicated. It goes to
// `<source topic>.dlq` with the original key and headers plus DlqWriter's (`error`, `stage`,
// `source.*`) and: `reason`, `sink`, `window.start_ns`, `window.end_ns`, `response.status`
// (HTTP status or gRPC code) and `response.body` (at most 4 KiB). When the sink refused only
// some series of the window (sinks::SeriesFailure), each record is cut further to the samples
// of those series, and carries `series.service`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/sinks/sink.h"

namespace flamestream::exporter {

// A consumed record, copied out of librdkafka's buffers (holding the Message would pin whole
// fetch buffers), kept while windows built from it are undelivered.
struct InputRecord {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
  kafka::Headers headers;

  static InputRecord Of(const kafka::Message& msg);
};

// DLQ header names added for refused windows.
inline constexpr std::string_view kDlqHeaderReason = "reason";
inline constexpr std::string_view kDlqHeaderSink = "sink";
inline constexpr std::string_view kDlqHeaderWindowStart = "window.start_ns";
inline constexpr std::string_view kDlqHeaderWindowEnd = "window.end_ns";
inline constexpr std::string_view kDlqHeaderResponseStatus = "response.status";
inline constexpr std::string_view kDlqHeaderResponseBody = "response.body";
// Only on records of refused series (the rest of the window was delivered): the services of
// those series, comma-separated.
inline constexpr std::string_view kDlqHeaderSeries = "series.service";

// The series of a window a sink refused while delivering the others: DLQ records are cut to
// the samples that made those series (Window::batch_series).
struct SeriesSelection {
  const profile::Window* window = nullptr;
  std::vector<uint32_t> series;
};

class WindowDlq {
 public:
  // `producer` must outlive this.
  WindowDlq(kafka::Producer& producer, std::string sink)
      : dlq_(producer, "exporter-" + sink), sink_(std::move(sink)) {}

  // Produces one DLQ record per input (asynchronously); `on_delivered(input)` runs once that
  // record is acknowledged, or at once for an input with no sample in the window (a
  // duplicate). An input whose DLQ write fails is never passed to `on_delivered`, so its
  // offset is not committed and the window is rebuilt on restart.
  // With `only`, each record is also cut to the samples of the selected series.
  Status Write(const std::vector<std::shared_ptr<const InputRecord>>& inputs, int64_t start_ns,
               int64_t window_ns, const Status& error, const sinks::Response& response,
               const std::function<void(const InputRecord&)>& on_delivered,
               const SeriesSelection* only = nullptr);

 private:
  kafka::DlqWriter dlq_;
  std::string sink_;
};

}  // namespace flamestream::exporter
