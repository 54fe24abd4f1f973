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
#include <map>
#include <memory>
#include <optional>
#include <set>
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

// A partition whose next offset was no longer (or not yet) in the broker's log: retention
// deleted records before this consumer read them (on the dev broker, its in-memory cap of
// 5 MiB per partition did), or the topic was recreated. The consumer resumes where
// auto.offset.reset says; `skipped` records in [requested, resumed_at) were never read.
struct OffsetReset {
  std::string topic;
  int32_t partition = 0;
  int64_t requested = kOffsetInvalid;   // the offset it asked for
  int64_t resumed_at = kOffsetInvalid;  // where it reads next (-2: beginning, -1: end)
  int64_t skipped = 0;                  // records lost to this consumer (0 when none or unknown)
  int64_t log_start = -1;               // the broker's low watermark when it happened
  int64_t log_end = -1;                 // the high watermark
};
using OffsetResetCallback = std::function<void(const OffsetReset&)>;

struct ConsumerConfig {
  // librdkafka properties, verbatim (config `kafka.*`); they override the defaults, except
  // that auto commit and auto offset store cannot be turned on (Create() rejects them).
  Properties properties;
  std::string group_id;
  std::vector<std::string> topics;
  Assignor assignor = Assignor::kRange;
  // Where a partition without a committed offset starts, and where a consumer whose offset
  // fell out of the log resumes (auto.offset.reset: earliest | latest | error, which makes
  // Poll() fail instead). A `kafka.auto.offset.reset` property overrides it. Either way the
  // fall-out is never silent: it is logged as an error with the lost range, counted in
  // records_skipped() and passed to `on_offset_reset`.
  std::string auto_offset_reset = "earliest";
  OffsetResetCallback on_offset_reset;
  // Table mode: no group; every partition of `topics` is read from the beginning by this
  // consumer alone (a replica that needs the whole compacted processes table, not a share of
  // it). Partitions added later are picked up within `partition_refresh`. Commit() is refused.
  bool whole_topics = false;
  std::chrono::milliseconds partition_refresh{30000};
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
  // A record with a null value: a delete marker on a compacted topic (an empty value is not).
  [[nodiscard]] bool tombstone() const { return msg_->payload == nullptr; }
  // Create or log-append time in Unix milliseconds; -1 when unknown.
  [[nodiscard]] int64_t timestamp_ms() const;
  [[nodiscard]] Headers headers() const;
  // The last header named `name`, if any.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
  [[nodiscard]] TopicPartition position() const {
    return {std::string(topic()), partition(), offset()};
  }

 private:
  KafkaMessage msg_;
};

// A partition's offsets range: low = first retained offset, high = the next offset written.
struct Watermarks {
  int64_t low = -1;
  int64_t high = -1;
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

  // Commits explicit offsets (each the next offset to read). Empty input is a no-op. Waits
  // for the coordinator, which answers after any fetch it is holding on the same connection
  // (up to fetch.wait.max.ms): for revocation and shutdown, where the answer matters.
  Status Commit(const TopicPartitions& offsets);
  // The same without waiting: `done` runs inside a later Poll() on the caller's thread (never
  // after the consumer is destroyed). For periodic commits from a loop that must keep going.
  using CommitCallback = std::function<void(const TopicPartitions& offsets, const Status& status)>;
  Status CommitAsync(const TopicPartitions& offsets, CommitCallback done);
  [[nodiscard]] size_t commits_in_flight() const { return commits_in_flight_.size(); }
  // Committed offsets of `partitions` (kOffsetInvalid where none).
  Result<TopicPartitions> Committed(const TopicPartitions& partitions,
                                    std::chrono::milliseconds timeout);

  // Paused partitions stay paused until Resume(), across rebalances: a partition that leaves
  // and comes back (or is assigned again after an offset reset) is paused again.
  Status Pause(const TopicPartitions& partitions);
  Status Resume(const TopicPartitions& partitions);
  // Pauses every partition, those assigned later included, until ResumeAll() (backpressure,
  // a sink outage): a rebalance does not let input in behind the caller's back. The two
  // compose: Resume() meanwhile takes effect at ResumeAll(), which leaves Pause()d ones paused.
  Status PauseAll();
  Status ResumeAll();
  [[nodiscard]] bool paused_all() const { return pause_all_; }
  // True from a commit the group refused because it is rebalancing (REBALANCE_IN_PROGRESS,
  // ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID) until this consumer's next rebalance callback has
  // run, or for at most `session.timeout.ms`: the partitions' next owner reads again whatever
  // is handled meanwhile, so a caller stops handling new records (the stage loop pauses).
  [[nodiscard]] bool rebalance_pending() const;
  Result<TopicPartitions> Assignment() const;

  // Moves every assigned partition to the first offset whose timestamp is >= `timestamp_ms`.
  // Where the broker cannot answer (the dev broker answers every lookup with -1), it falls
  // back to the earliest retained offset, so callers must filter by their records' own
  // event times (replay does anyway, record timestamps are not ordered).
  Status SeekToTimestamp(int64_t timestamp_ms, std::chrono::milliseconds timeout);

  // (topic, partition)'s watermarks: those the fetcher last saw (no broker round trip; an
  // error until a fetch answered), or queried from the broker when `query_timeout` > 0.
  Result<Watermarks> GetWatermarks(const std::string& topic, int32_t partition,
                                   std::chrono::milliseconds query_timeout = {});
  // GetWatermarks(query) of every partition, the queries running at once (an assignment's
  // worth costs one broker round trip, not one per partition). Errors per partition: the
  // watermarks stay -1.
  std::vector<Watermarks> QueryWatermarks(const TopicPartitions& partitions,
                                          std::chrono::milliseconds timeout);
  // The first offset whose timestamp is >= `timestamp_ms`; NotFound when there is none (the
  // dev broker never answers: also NotFound or an error).
  Result<int64_t> OffsetForTime(const std::string& topic, int32_t partition, int64_t timestamp_ms,
                                std::chrono::milliseconds timeout);
  // Moves an assigned partition's read position. `timeout` 0: asynchronous (the loop does not
  // block on a partition whose fetch is still starting), errors are not reported.
  Status Seek(const TopicPartition& to, std::chrono::milliseconds timeout);

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
  // Records this consumer never read because the broker no longer held them (see OffsetReset).
  [[nodiscard]] int64_t records_skipped() const { return records_skipped_; }
  [[nodiscard]] rd_kafka_t* handle() const { return rk_.get(); }

 private:
  explicit Consumer(ConsumerConfig config);
  static void RebalanceCallback(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                rd_kafka_topic_partition_list_t* parts, void* opaque);
  static void CommitDoneCallback(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                 rd_kafka_topic_partition_list_t* offsets, void* opaque);
  Status CommitStatus(rd_kafka_resp_err_t err, const rd_kafka_topic_partition_list_t* list);
  // Serves async commit results until none is in flight or `timeout`, then drops the queue.
  void DrainCommits(std::chrono::milliseconds timeout);
  void OnRebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts);
  Status OnOffsetReset(const rd_kafka_message_t& msg);
  Status AssignWholeTopics();
  // Assigns `restart` again at its offset (librdkafka stops a partition whose offset fell out
  // of the log and refuses to seek it), keeping the rest of the assignment where it is.
  Status Reassign(const TopicPartition& restart);
  // Pauses again the assigned partitions this consumer paused (an assign resumes them).
  Status Repause();
  void ResolveStartOffsets(rd_kafka_topic_partition_list_t* parts);
  [[nodiscard]] std::string Name() const;

  ConsumerConfig config_;
  bool reset_to_earliest_ = true;  // the effective auto.offset.reset (librdkafka's is `error`)
  bool reset_is_error_ = false;
  int64_t records_skipped_ = 0;
  std::set<std::pair<std::string, int32_t>> paused_;  // by Pause() until Resume()
  bool pause_all_ = false;
  std::set<std::pair<std::string, int32_t>> paused_by_all_;  // paused by PauseAll, any owner
  std::optional<std::chrono::steady_clock::time_point> commit_refused_at_;  // rebalance_pending
  std::chrono::milliseconds session_timeout_{45000};
  std::map<uint64_t, CommitCallback> commits_in_flight_;  // by request id (the opaque)
  uint64_t next_commit_id_ = 1;
  std::chrono::steady_clock::time_point next_partition_refresh_{};
  bool closed_ = false;
  KafkaConsumerHandle rk_;
  // Async commit results, served by Poll() and drained by Close(); destroyed before rk_.
  KafkaQueue commit_queue_;
};

// The consumer defaults plus `config.properties` (exposed for tests). auto.offset.reset is
// always `error` there: the consumer applies the policy itself (EffectiveResetPolicy).
Result<Properties> EffectiveConsumerProperties(const ConsumerConfig& config);
// earliest | latest | error, from `kafka.auto.offset.reset` or else `auto_offset_reset`.
Result<std::string> EffectiveResetPolicy(const ConsumerConfig& config);

// Where a consumer whose offset `requested` is not in the log [log_start, log_end) resumes,
// and how many records it never reads (exposed for tests).
struct OffsetResetPlan {
  int64_t resume_at = 0;
  int64_t skipped = 0;
  friend bool operator==(const OffsetResetPlan&, const OffsetResetPlan&) = default;
};
OffsetResetPlan PlanOffsetReset(int64_t requested, int64_t log_start, int64_t log_end,
                                bool earliest);

// The offset to seek to for one offsetsForTimes answer: the answer when it is a real offset,
// else (-1: no such record or, on the dev broker, "not implemented") the earliest retained
// offset. Callers filter by event time, so starting earlier is safe; starting at the end
// would silently skip the range.
int64_t OffsetForTimestampAnswer(int64_t answered_offset);

// librdkafka list <-> value type conversions.
PartitionList ToPartitionList(const TopicPartitions& partitions);
TopicPartitions FromPartitionList(const rd_kafka_topic_partition_list_t* list);

}  // namespace flamestream::kafka
