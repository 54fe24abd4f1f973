// Outputs larger than Kafka takes: split them (a SampleBatch by samples) or dead-letter their
// input, so one oversized record never stops a stage or makes it re-read the same input
// forever.
//
//   FS_ASSIGN_OR_RETURN(std::vector<Output> pieces,
//                       stage::FitOutput(std::move(out), producer->max_message_bytes(), split));
//   // OutOfRange: cannot be made to fit -> the input goes to <topic>.dlq with the reason
//
// Two limits apply. The producer's own message.max.bytes is known up front: FitOutput splits
// before producing. A broker (or topic, max.message.bytes) limit below it shows only in the
// delivery report: ProduceAcked hands such refused outputs to RefusedOutputs, and the loop
// thread sends each in halves (ProduceRefused; a half refused again is halved again), or,
// when it cannot be split, writes a reference record (empty value; the input stays at
// source.offset of its topic) to the DLQ with the reason, and goes on. No global limit is
// learned from a refusal: Kafka refuses a whole produce batch when one record in it is too
// large, so small records refused beside a large one say nothing about the limit. (Set
// kafka.message.max.bytes to the broker's limit to split before producing.)
#pragma once

#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/kafka/ack_tracker.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/stage/failure_latch.h"
#include "flamestream/stage/output.h"

namespace flamestream::stage {

// Splits one value into two or more values that together carry the same content, each at
// most `max_value_bytes` (e.g. batch::SplitSerializedBatch). An error: it cannot.
using Splitter =
    std::function<Result<std::vector<std::string>>(std::string_view value, size_t max_value_bytes)>;

// What a record counts against message.max.bytes: key, value, headers and the record framing.
[[nodiscard]] size_t RecordBytes(std::string_view key, std::string_view value,
                                 const kafka::Headers& headers);

// `out` as records that each fit `max_bytes`: itself when it fits, else the splitter's pieces
// (same topic, key and headers). OutOfRange naming the sizes when there is no splitter or the
// splitter cannot make it fit.
[[nodiscard]] Result<std::vector<Output>> FitOutput(Output out, size_t max_bytes,
                                                    const Splitter& split);

// Outputs the broker refused as too large after they were queued, handed from the producer's
// delivery callback to the loop thread. Thread-safe.
class RefusedOutputs {
 public:
  struct Item {
    InputPosition input;
    Output output;
  };
  void Push(Item item);
  [[nodiscard]] std::vector<Item> Take();
  [[nodiscard]] bool empty() const;

 private:
  mutable std::mutex mu_;
  std::vector<Item> items_;
};

// Re-produces every refused output in halves (each piece acked against its input), or, when
// it cannot be split, as a reference record in the DLQ. Returns Produce errors.
Status ProduceRefused(RefusedOutputs& refused, const Splitter& split,
                      kafka::Producer& producer, kafka::DlqWriter& dlq,
                      obs::StageMetrics& metrics, kafka::AckTracker& acks, FailureLatch& failure);

}  // namespace flamestream::stage
