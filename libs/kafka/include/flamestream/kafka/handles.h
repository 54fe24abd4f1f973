// RAII owners for librdkafka C handles.
//
//   KafkaConf conf(rd_kafka_conf_new());
//   ...
//   KafkaProducerHandle rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.release(), err, sizeof err));
//   // on scope exit: rd_kafka_flush (bounded), then rd_kafka_destroy
//
// The producer deleter flushes first so queued messages are not silently dropped; the consumer
// deleter closes first so the group sees a clean leave (and the rebalance callback's revoke
// hook runs) instead of waiting out the session timeout.
#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>

namespace flamestream::kafka {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
using KafkaConf = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

struct ProducerDeleter {
  // How long the deleter waits for in-flight deliveries; Producer::Flush() is the place for a
  // configured drain deadline, this is the last resort.
  static constexpr int kFlushTimeoutMs = 10000;
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_flush(rk, kFlushTimeoutMs);
    rd_kafka_destroy(rk);
  }
};
using KafkaProducerHandle = std::unique_ptr<rd_kafka_t, ProducerDeleter>;

struct ConsumerDeleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
};
using KafkaConsumerHandle = std::unique_ptr<rd_kafka_t, ConsumerDeleter>;

// A handle used only as a container (e.g. for the mock cluster): destroyed without flushing.
struct PlainDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using KafkaHandle = std::unique_ptr<rd_kafka_t, PlainDeleter>;

struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
using KafkaMessage = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

struct HeadersDeleter {
  void operator()(rd_kafka_headers_t* h) const { rd_kafka_headers_destroy(h); }
};
using KafkaHeaders = std::unique_ptr<rd_kafka_headers_t, HeadersDeleter>;

struct ErrorDeleter {
  void operator()(rd_kafka_error_t* e) const { rd_kafka_error_destroy(e); }
};
using KafkaError = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;

struct TopicDeleter {
  void operator()(rd_kafka_topic_t* t) const { rd_kafka_topic_destroy(t); }
};
using KafkaTopic = std::unique_ptr<rd_kafka_topic_t, TopicDeleter>;

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
using KafkaQueue = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;

struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* m) const { rd_kafka_metadata_destroy(m); }
};
using KafkaMetadata = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;

// Admin API (kafka::Admin).
struct NewTopicDeleter {
  void operator()(rd_kafka_NewTopic_t* t) const { rd_kafka_NewTopic_destroy(t); }
};
using KafkaNewTopic = std::unique_ptr<rd_kafka_NewTopic_t, NewTopicDeleter>;

struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};
using KafkaAdminOptions = std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter>;

struct ConfigResourceDeleter {
  void operator()(rd_kafka_ConfigResource_t* r) const { rd_kafka_ConfigResource_destroy(r); }
};
using KafkaConfigResource = std::unique_ptr<rd_kafka_ConfigResource_t, ConfigResourceDeleter>;

struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
using KafkaEvent = std::unique_ptr<rd_kafka_event_t, EventDeleter>;

}  // namespace flamestream::kafka
