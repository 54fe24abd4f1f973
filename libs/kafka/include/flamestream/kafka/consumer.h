// A Kafka group consumer with manual, explicit offset commits.
//
//   kafka::AckTracker acks;
//   kafka::ConsumerConfig cfg;
//   cfg.properties = {{"bootstrap.servers", brokers}};
//   cfg.group_id = "flamestream-symbolizer";
//   cfg.topics = {std::string(kafka::topics::kSamplesRaw)};
//   cfg.on_revoked = [&](const kafka::TopicPartitions& parts, bool lost) {
//     if (!lost) (void)consumer->Commit(acks.CommittableOffsets());   // before they go
//     acks.Forget(parts);
//   };
//   FS_ASSIGN_OR_RETURN(std::unique_ptr<kafka::Consumer> consumer, kafka::Consumer::Create(cfg));
//   while (!stop) {
//     FS_ASSIGN_OR_RETURN(std::optional<kafka::Message> msg, consumer->Poll(100ms));
//     if (msg) Process(*msg);                  // ... outputs ack into `acks` ...
//     (void)consumer->Commit(acks.CommittableOffsets());
//   }
//
// Offsets are never stored or committed automatically (enable.auto.commit=false,
// enable.auto.offset.store=false): a stage commits an input only after everything it produced
// from it is acknowledged (see AckTracker). Rebalancing is `range` (eager) by default: it keeps
// co-partitioned topics on one instance (the correlator needs partition p of samples and spans
// together), and librdkafka before 2.2.1 (Debian 12 ships 2.0.2) aborts in
// rd_kafka_sticky_assignor_state_destroy when a cooperative-sticky consumer is closed before
// its first assignment completes (confluentinc/librdkafka#4312) -- a SIGTERM during a rolling
// restart would crash a stage instead of draining it. With a newer librdkafka,
// `kafka.partition.assignment.strategy=cooperative-sticky` (config) or kCooperativeSticky
// moves only the partitions that change owner. The rebalance and revoke callbacks run inside
// Poll() and Close(), on the polling thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/kafka/handles.h"
#include "flamestream/kafka/types.h"

namespace flamestream::kafka {

enum class Assignor {
  kRange,              // partition.assignment.strategy=range: same partition numbers together
  kCooperativeSticky,  // partition.assignment.strategy=cooperative-sticky (librdkafka >= 2.2.1)
};

using PartitionsCallback = std::function<void(const TopicPartitions& partitions, bool lost)>;

struct ConsumerConfig {
  // librdkafka properties, verbatim (config `kafka.*`); they override the defaults, except
  // that auto commit and auto offset store cannot be turned on (Create() rejects them).
  Properties properties;
  std::string group_id;
  std::vector<std::string> topics;
  Assignor assignor = Assignor::kRange;
  // Where a partition without a committed offset starts (auto.offset.reset).
  std::string auto_offset_reset = "earliest";
  // After partitions are assigned (lost is always false).
  PartitionsCallback on_assigned;
  // Before partitions are taken away: commit what is acknowledged here. `lost` means the
  // group already moved them on (session timeout, fatal), so a commit would be rejected.
  PartitionsCallback on_revoked;
};

// One consumed record. Owns the librdkafka message; the views stay valid while it lives.
class Message {
 public:
  explicit Message(KafkaMessage msg) : msg_(std::move(msg)) {}

  [[nodiscard]] std::string_view topic() const;
  [[nodiscard]] int32_t partition() const { return msg_->partition; }
  [[nodiscard]] int64_t offset() const { return msg_->offset; }
  [[nodiscard]] std::string_view key() const;
  [[nodiscard]] std::string_view value() const;
  // Create or log-append time in Unix milliseconds; -1 when unknown.
  [[nodiscard]] int64_t timestamp_ms() const;
  [[nodiscard]] Headers headers() const;
  // The last header named `name`, if any.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
  [[nodiscard]] TopicPartition position() const {
    return {std::string(topic()), partition(), offset()};
  }

  [[nodiscard]] const rd_kafka_message_t* raw() const { return msg_.get(); }

 private:
  KafkaMessage msg_;
};

struct PartitionLag {
  std::string topic;
  int32_t partition = 0;
  int64_t position = kOffsetInvalid;  // next offset this consumer will read; -1001 if unknown
  int64_t high_watermark = -1;        // -1 if unknown
  int64_t lag = -1;                   // high_watermark - position, or -1 when either is unknown
};

class Consumer {
 public:
  static Result<std::unique_ptr<Consumer>> Create(ConsumerConfig config);
  // Closes (leaves the group) unless Close() or Abandon() ran.
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // The next record, or nullopt on timeout. Transient errors (broker down, rebalance) are
  // logged and return nullopt: librdkafka recovers from them by itself. Fatal errors return
  // an error status; the consumer is unusable afterwards.
  Result<std::optional<Message>> Poll(std::chrono::milliseconds timeout);

  // Commits explicit offsets (each the next offset to read). Empty input is a no-op.
  Status Commit(const TopicPartitions& offsets);
  // Committed offsets of `partitions` (kOffsetInvalid where none).
  Result<TopicPartitions> Committed(const TopicPartitions& partitions,
                                    std::chrono::milliseconds timeout);

  Status Pause(const TopicPartitions& partitions);
  Status Resume(const TopicPartitions& partitions);
  Result<TopicPartitions> Assignment() const;

  // Moves every assigned partition to the first offset whose timestamp is >= `timestamp_ms`.
  // Where the broker cannot answer (the dev broker answers every lookup with -1), it falls
  // back to the earliest retained offset, so callers must filter by their records' own
  // event times (replay does anyway, record timestamps are not ordered).
  Status SeekToTimestamp(int64_t timestamp_ms, std::chrono::milliseconds timeout);

  // Per assigned partition: high watermark - position, from the watermarks the fetcher last
  // saw (no broker round trip), or queried from the broker when `query_timeout` > 0.
  Result<std::vector<PartitionLag>> Lag(std::chrono::milliseconds query_timeout = {});

  // Leaves the group: the revoke hook runs (so acknowledged offsets can be committed), then
  // the handle closes. Idempotent.
  Status Close();
  // Drops the handle without leaving the group or committing, as a crash would: the group
  // reassigns the partitions after the session timeout. For fatal-error exits and tests.
  void Abandon();

  [[nodiscard]] Status FatalError() const;
  [[nodiscard]] rd_kafka_t* handle() const { return rk_.get(); }

 private:
  explicit Consumer(ConsumerConfig config);
  static void RebalanceCallback(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                rd_kafka_topic_partition_list_t* parts, void* opaque);
  void OnRebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts);

  ConsumerConfig config_;
  bool closed_ = false;
  KafkaConsumerHandle rk_;
};

// The consumer defaults plus `config.properties` (exposed for tests).
Result<Properties> EffectiveConsumerProperties(const ConsumerConfig& config);

// The offset to seek to for one offsetsForTimes answer: the answer when it is a real offset,
// else (-1: no such record or, on the dev broker, "not implemented") the earliest retained
// offset. Callers filter by event time, so starting earlier is safe; starting at the end
// would silently skip the range.
int64_t OffsetForTimestampAnswer(int64_t answered_offset);

// librdkafka list <-> value type conversions.
PartitionList ToPartitionList(const TopicPartitions& partitions);
TopicPartitions FromPartitionList(const rd_kafka_topic_partition_list_t* list);

}  // namespace flamestream::kafka
