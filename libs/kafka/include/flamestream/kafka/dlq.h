// Dead-letter queue: undecodable input goes to `<topic>.dlq` instead of stopping a stage.
//
//   kafka::DlqWriter dlq(*producer, "symbolizer");
//   Result<Batch> batch = Decode(msg.value());
//   if (!batch.ok()) {
//     acks.Track(tp, msg.offset(), 1);
//     return dlq.Write(msg, batch.error(), [&, off = msg.offset()](const kafka::DeliveryReport& r)
//     {
//       if (r.status.ok()) acks.Ack(tp, off);
//     });
//   }
//
// The DLQ record keeps the original key, value and headers and adds `error` (the status text),
// `stage`, `source.topic`, `source.partition` and `source.offset`, so it can be inspected and
// replayed into the source topic once the cause is fixed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "flamestream/common/status.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/types.h"

namespace flamestream::kafka {

// Header names on DLQ records.
inline constexpr std::string_view kDlqHeaderError = "error";
inline constexpr std::string_view kDlqHeaderStage = "stage";
inline constexpr std::string_view kDlqHeaderSourceTopic = "source.topic";
inline constexpr std::string_view kDlqHeaderSourcePartition = "source.partition";
inline constexpr std::string_view kDlqHeaderSourceOffset = "source.offset";

// A record that failed, as the DLQ needs it (Message converts to this).
struct FailedRecord {
  std::string_view topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string_view key;
  std::string_view value;
  Headers headers;
};

class DlqWriter {
 public:
  // `producer` must outlive the writer.
  DlqWriter(Producer& producer, std::string stage)
      : producer_(producer), stage_(std::move(stage)) {}

  Status Write(const Message& original, const Status& error, DeliveryCallback on_delivery = {});
  Status Write(const FailedRecord& original, const Status& error,
               DeliveryCallback on_delivery = {});

 private:
  Producer& producer_;
  std::string stage_;
};

}  // namespace flamestream::kafka
