#include "flamestream/kafka/dlq.h"

#include <algorithm>

#include "flamestream/kafka/topics.h"

namespace flamestream::kafka {

Status DlqWriter::Write(const Message& original, const Status& error,
                        DeliveryCallback on_delivery) {
  return Write(FailedRecord{original.topic(), original.partition(), original.offset(),
                            original.key(), original.value(), original.headers()},
               error, std::move(on_delivery));
}

Status DlqWriter::Write(const FailedRecord& original, const Status& error,
                        DeliveryCallback on_delivery) {
  Headers headers;
  headers.reserve(original.headers.size() + 5);
  // Keep the original headers (symbol-epoch, trace context...), minus any that would be
  // confused with ours (a record replayed out of a DLQ and failing again).
  auto ours = [](const std::string& k) {
    return k == kDlqHeaderError || k == kDlqHeaderStage || k == kDlqHeaderSourceTopic ||
           k == kDlqHeaderSourcePartition || k == kDlqHeaderSourceOffset;
  };
  std::copy_if(original.headers.begin(), original.headers.end(), std::back_inserter(headers),
               [&](const Header& h) { return !ours(h.key); });
  headers.push_back({std::string(kDlqHeaderError), error.ToString()});
  headers.push_back({std::string(kDlqHeaderStage), stage_});
  headers.push_back({std::string(kDlqHeaderSourceTopic), std::string(original.topic)});
  headers.push_back({std::string(kDlqHeaderSourcePartition), std::to_string(original.partition)});
  headers.push_back({std::string(kDlqHeaderSourceOffset), std::to_string(original.offset)});
  return producer_.Produce(topics::Dlq(original.topic), original.key, original.value, headers,
                           std::move(on_delivery));
}

}  // namespace flamestream::kafka
