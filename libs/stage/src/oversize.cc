#include "flamestream/stage/oversize.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "flamestream/log/log.h"
#include "flamestream/stage/acked_produce.h"

namespace flamestream::stage {
namespace {

// Kafka's record framing (record batch header share, varint lengths, attributes, timestamp
// and offset deltas, header counts): generous, so a record FitOutput passes is never refused
// by the producer's own check.
constexpr size_t kRecordOverhead = 128;
constexpr size_t kHeaderOverhead = 16;

}  // namespace

size_t RecordBytes(std::string_view key, std::string_view value, const kafka::Headers& headers) {
  size_t n = kRecordOverhead + key.size() + value.size();
  for (const kafka::Header& h : headers) {
    n += kHeaderOverhead + h.key.size() + h.value.size();
  }
  return n;
}

Result<std::vector<Output>> FitOutput(Output out, size_t max_bytes, const Splitter& split) {
  const size_t bytes = RecordBytes(out.key, out.value, out.headers);
  std::vector<Output> fitted;
  if (bytes <= max_bytes) {
    fitted.push_back(std::move(out));
    return fitted;
  }
  const size_t framing = bytes - out.value.size();
  if (!split || framing >= max_bytes) {
    return OutOfRange("output of {} bytes to {} exceeds the {}-byte message limit{}", bytes,
                      out.topic, max_bytes, split ? "" : " and cannot be split");
  }
  Result<std::vector<std::string>> pieces = split(out.value, max_bytes - framing);
  if (!pieces.ok()) {
    return OutOfRange("output of {} bytes to {} exceeds the {}-byte message limit: {}", bytes,
                      out.topic, max_bytes, pieces.error().message());
  }
  for (std::string& value : *pieces) {
    if (RecordBytes(out.key, value, out.headers) > max_bytes) {
      return OutOfRange("output of {} bytes to {}: a split piece of {} bytes still exceeds the "
                        "{}-byte message limit",
                        bytes, out.topic, value.size(), max_bytes);
    }
    fitted.push_back(Output{out.topic, out.key, std::move(value), out.headers});
  }
  return fitted;
}

void RefusedOutputs::Push(Item item) {
  std::lock_guard lock(mu_);
  items_.push_back(std::move(item));
}

std::vector<RefusedOutputs::Item> RefusedOutputs::Take() {
  std::lock_guard lock(mu_);
  return std::exchange(items_, {});
}

bool RefusedOutputs::empty() const {
  std::lock_guard lock(mu_);
  return items_.empty();
}

Status ProduceRefused(RefusedOutputs& refused, const Splitter& split,
                      kafka::Producer& producer, kafka::DlqWriter& dlq,
                      obs::StageMetrics& metrics, kafka::AckTracker& acks, FailureLatch& failure) {
  for (RefusedOutputs::Item& item : refused.Take()) {
    const size_t bytes = item.output.value.size();
    const size_t limit = std::min(
        producer.max_message_bytes(),
        RecordBytes(item.output.key, item.output.value, item.output.headers) / 2 + 1);
    Result<std::vector<Output>> pieces = FitOutput(item.output, limit, split);
    const InputPosition& in = item.input;
    if (pieces.ok()) {
      log::Warn("broker refused an output as too large; sending it in pieces (set "
                "kafka.message.max.bytes to the broker's limit to split before producing)",
                {{"topic", item.output.topic}, {"bytes", bytes}, {"limit", limit},
                 {"pieces", pieces->size()}});
      if (pieces->size() > 1) {
        acks.Extend(in.topic, in.partition, in.offset, static_cast<uint32_t>(pieces->size() - 1));
      }
      for (const Output& p : *pieces) {
        FS_RETURN_IF_ERROR(ProduceAcked(producer, in, std::chrono::steady_clock::now(), p.topic,
                                        p.key, p.value, p.headers, metrics, acks, failure,
                                        &refused));
      }
      continue;
    }
    // Cannot be split: a reference record (the input is still at source.offset) with the
    // reason, so the stage goes on and an operator can re-drive it under a higher limit.
    const Status reason = pieces.error().WithContext(
        "refused by the broker; the input record stays at source.offset");
    log::Error("output too large for the broker and cannot be split; input sent to the DLQ",
               {{"topic", in.topic}, {"partition", in.partition},
                {"offset", static_cast<long long>(in.offset)}, {"error", reason}});
    const kafka::FailedRecord record{in.topic, in.partition, in.offset, item.output.key, "",
                                     item.output.headers};
    FS_RETURN_IF_ERROR(dlq.Write(record, reason, [&metrics, &acks, &failure, in](
                                                     const kafka::DeliveryReport& r) {
      if (r.status.ok()) {
        metrics.dlq_records.Inc();
        acks.Ack(in.topic, in.partition, in.offset);
      } else {
        failure.Set(r.status.WithContext("DLQ delivery failed"));
      }
    }));
  }
  return OkStatus();
}

}  // namespace flamestream::stage
