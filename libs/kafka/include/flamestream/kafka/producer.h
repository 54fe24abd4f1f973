// An idempotent Kafka producer with per-message delivery callbacks.
//
//   kafka::ProducerConfig cfg;
//   cfg.properties = {{"bootstrap.servers", "127.0.0.1:9092"}};   // from config `kafka.*`
//   FS_ASSIGN_OR_RETURN(std::unique_ptr<kafka::Producer> producer, kafka::Producer::Create(cfg));
//   FS_RETURN_IF_ERROR(producer->Produce(topic, key, bytes, {{"symbol-epoch", "3"}},
//       [&](const kafka::DeliveryReport& r) { if (r.status.ok()) acks.Ack(in_tp, in_offset); }));
//   ...
//   FS_RETURN_IF_ERROR(producer->Flush(std::chrono::seconds(10)));   // on shutdown
//
// Contract (ARCHITECTURE.md "Delivery"): enable.idempotence=true and acks=all always, so a
// broker outage never reorders or duplicates records within a partition; keyed topics use
// murmur2_random so the same key lands on the same partition as in the Java client (samples
// and keyed spans are co-partitioned by key). Delivery callbacks run on the poll thread (or
// inside Poll()/Flush() when the thread is off): keep them short and thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "flamestream/common/status.h"
#include "flamestream/kafka/handles.h"
#include "flamestream/kafka/types.h"

namespace flamestream::kafka {

struct DeliveryReport {
  Status status;  // OK when the record is durable (acks=all)
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
  // The broker refused the record as larger than its (or the topic's) message size limit;
  // status is then OutOfRange. Produce() returns OutOfRange for records over the producer's
  // own message.max.bytes before they are queued.
  bool too_large = false;
  // The record as delivered: valid only during the callback.
  std::string_view key;
  std::string_view value;
};
using DeliveryCallback = std::function<void(const DeliveryReport&)>;

struct ProducerConfig {
  // librdkafka properties, verbatim; they override the defaults below except that idempotence
  // cannot be turned off (Create() rejects enable.idempotence=false and acks other than all).
  Properties properties;
  // compression.type unless `properties` sets it: zstd suits repetitive stack batches best.
  std::string compression = "zstd";
  // Serve delivery reports on an owned thread. Off: the owner calls Poll() regularly.
  bool poll_thread = true;
  // How long Produce() keeps polling and retrying while librdkafka's queue is full before it
  // gives up with ResourceExhausted (the caller should then pause its input).
  std::chrono::milliseconds queue_full_timeout{5000};
  // Called once (from the poll thread) when librdkafka raises a fatal error; the producer is
  // unusable afterwards. The owner should flush, commit what was acknowledged and exit.
  std::function<void(const Status&)> on_fatal;
};

class Producer {
 public:
  static Result<std::unique_ptr<Producer>> Create(ProducerConfig config);
  // Stops the poll thread, flushes (bounded) and destroys the handle.
  ~Producer();
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // Queues one record. An empty key is a null key (random partition). `partition` other than
  // kAnyPartition bypasses the partitioner. The callback, if any, runs exactly once unless
  // Produce() itself returns an error (then it never runs).
  Status Produce(std::string_view topic, std::string_view key, std::string_view value,
                 const Headers& headers = {}, DeliveryCallback on_delivery = nullptr,
                 int32_t partition = kAnyPartition, int64_t timestamp_ms = 0);

  // Serves delivery reports; returns how many were served.
  int Poll(std::chrono::milliseconds timeout);
  // Waits until every queued record is delivered or failed.
  Status Flush(std::chrono::milliseconds timeout);
  // Drops records still queued locally (not yet sent to a broker); their delivery reports
  // fail with a purge error. Records in flight are left to finish (at least once).
  void PurgeQueued();
  // Partitions of `topic` per the cluster's metadata; NotFound when the topic does not exist.
  Result<int> PartitionCount(const std::string& topic, std::chrono::milliseconds timeout);
  // Records queued or in flight.
  [[nodiscard]] int OutstandingCount() const;
  // The fatal error, if librdkafka raised one (OK otherwise).
  [[nodiscard]] Status FatalError() const;
  // The largest record Produce() accepts (message.max.bytes; key, value, headers and framing
  // all count), as the producer runs with it.
  [[nodiscard]] size_t max_message_bytes() const { return max_message_bytes_; }

  // The raw handle, for APIs this class does not wrap (metadata, tests).
  [[nodiscard]] rd_kafka_t* handle() const { return rk_.get(); }

 private:
  explicit Producer(ProducerConfig config);
  static void DeliveryReportCallback(rd_kafka_t* rk, const rd_kafka_message_t* msg, void* opaque);
  static void ErrorCallback(rd_kafka_t* rk, int err, const char* reason, void* opaque);
  void RunPollThread();

  ProducerConfig config_;
  mutable std::mutex fatal_mu_;
  Status fatal_;
  std::atomic<bool> stop_{false};
  std::thread poll_thread_;
  size_t max_message_bytes_ = 1000000;
  // Declared last: destroyed (flushed) first, while the members above that its callbacks
  // touch are still alive.
  KafkaProducerHandle rk_;
};

// Applies the producer defaults and `config.properties` to a fresh librdkafka conf
// (exposed for tests: what a producer will actually run with).
Result<Properties> EffectiveProducerProperties(const ProducerConfig& config);

}  // namespace flamestream::kafka
