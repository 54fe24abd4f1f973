#include "flamestream/kafka/producer.h"

#include <array>
#include <cstdlib>
#include <utility>
#include <vector>

#include "conf.h"
#include "flamestream/log/log.h"
#include "metadata.h"

namespace flamestream::kafka {

using internal::ErrStatus;

Result<Properties> EffectiveProducerProperties(const ProducerConfig& config) {
  Properties props = {
      {"enable.idempotence", "true"},
      {"acks", "all"},
      // Same key -> same partition as the Java client (and every stage); null keys spread.
      {"partitioner", "murmur2_random"},
      {"compression.type", config.compression},
      // Batches are already compact; a short linger still merges a poll's worth of records.
      {"linger.ms", "5"},
  };
  for (const auto& [key, value] : config.properties) {
    props[key] = value;
  }
  if (props["enable.idempotence"] != "true") {
    return InvalidArgument("kafka property enable.idempotence must stay true (got \"{}\")",
                           props["enable.idempotence"]);
  }
  const std::string& acks = props["acks"];
  if (acks != "all" && acks != "-1") {
    return InvalidArgument("kafka property acks must stay all (got \"{}\")", acks);
  }
  return props;
}

Producer::Producer(ProducerConfig config) : config_(std::move(config)) {}

Result<std::unique_ptr<Producer>> Producer::Create(ProducerConfig config) {
  FS_ASSIGN_OR_RETURN(Properties props, EffectiveProducerProperties(config));
  FS_ASSIGN_OR_RETURN(KafkaConf conf, internal::MakeConf(props));
  std::unique_ptr<Producer> p(new Producer(std::move(config)));
  {
    std::array<char, 32> buf{};
    size_t size = buf.size();
    if (rd_kafka_conf_get(conf.get(), "message.max.bytes", buf.data(), &size) == RD_KAFKA_CONF_OK) {
      p->max_message_bytes_ = std::strtoull(buf.data(), nullptr, 10);
    }
  }
  internal::SetLogger(conf.get());
  rd_kafka_conf_set_opaque(conf.get(), p.get());
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &Producer::DeliveryReportCallback);
  rd_kafka_conf_set_error_cb(conf.get(), &Producer::ErrorCallback);
  std::array<char, 512> err{};
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err.data(), err.size());
  if (rk == nullptr) {
    return InvalidArgument("kafka producer: {}", err.data());
  }
  (void)conf.release();  // rd_kafka_new owns it now
  p->rk_.reset(rk);
  if (p->config_.poll_thread) {
    p->poll_thread_ = std::thread([raw = p.get()] { raw->RunPollThread(); });
  }
  return p;
}

Producer::~Producer() {
  stop_.store(true);
  if (poll_thread_.joinable()) {
    poll_thread_.join();
  }
  // rk_'s deleter flushes (serving the remaining callbacks here) and destroys.
  rk_.reset();
}

void Producer::RunPollThread() {
  while (!stop_.load(std::memory_order_relaxed)) {
    rd_kafka_poll(rk_.get(), 100);
  }
}

void Producer::DeliveryReportCallback(rd_kafka_t* /*rk*/, const rd_kafka_message_t* msg,
                                      void* /*opaque*/) {
  // The per-message callback was moved to the heap in Produce(); it is owned here now.
  std::unique_ptr<DeliveryCallback> cb(static_cast<DeliveryCallback*>(msg->_private));
  if (!cb || !*cb) {
    return;
  }
  DeliveryReport report;
  report.status =
      msg->err == RD_KAFKA_RESP_ERR_NO_ERROR ? OkStatus() : ErrStatus(msg->err, "delivery");
  report.topic = msg->rkt != nullptr ? rd_kafka_topic_name(msg->rkt) : "";
  report.partition = msg->partition;
  report.offset = msg->offset;
  report.too_large = msg->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
  if (msg->key != nullptr) {
    report.key = std::string_view(static_cast<const char*>(msg->key), msg->key_len);
  }
  if (msg->payload != nullptr) {
    report.value = std::string_view(static_cast<const char*>(msg->payload), msg->len);
  }
  try {
    (*cb)(report);
  } catch (const std::exception& e) {
    // A callback must not unwind through librdkafka's C frames.
    log::Error("delivery callback threw", {{"error", e.what()}, {"topic", report.topic}});
  } catch (...) {
    log::Error("delivery callback threw", {{"topic", report.topic}});
  }
}

void Producer::ErrorCallback(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  auto* self = static_cast<Producer*>(opaque);
  if (err != RD_KAFKA_RESP_ERR__FATAL) {
    // Informational: librdkafka retries by itself (broker down, transport errors).
    log::Warn(
        "kafka producer error",
        {{"error", rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(err))}, {"reason", reason}});
    return;
  }
  std::array<char, 512> buf{};
  rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf.data(), buf.size());
  Status fatal =
      FailedPrecondition("kafka producer fatal error {}: {}", rd_kafka_err2name(orig), buf.data());
  log::Error("kafka producer fatal error", {{"error", fatal}});
  {
    std::lock_guard<std::mutex> lock(self->fatal_mu_);
    self->fatal_ = fatal;
  }
  if (self->config_.on_fatal) {
    self->config_.on_fatal(fatal);
  }
}

Status Producer::Produce(std::string_view topic, std::string_view key, std::string_view value,
                         const Headers& headers, DeliveryCallback on_delivery, int32_t partition,
                         int64_t timestamp_ms) {
  FS_RETURN_IF_ERROR(FatalError());
  KafkaHeaders hdrs;
  if (!headers.empty()) {
    hdrs.reset(rd_kafka_headers_new(headers.size()));
    for (const Header& h : headers) {
      rd_kafka_header_add(hdrs.get(), h.key.data(), static_cast<ssize_t>(h.key.size()),
                          h.value.data(), static_cast<ssize_t>(h.value.size()));
    }
  }
  std::unique_ptr<DeliveryCallback> cb;
  if (on_delivery) {
    cb = std::make_unique<DeliveryCallback>(std::move(on_delivery));
  }
  const std::string topic_name(topic);
  const auto deadline = std::chrono::steady_clock::now() + config_.queue_full_timeout;
  while (true) {
    // On success librdkafka owns the headers and the opaque; on failure we still do.
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk_.get(), RD_KAFKA_V_TOPIC(topic_name.c_str()), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key.empty() ? nullptr : const_cast<char*>(key.data()), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_HEADERS(hdrs.get()), RD_KAFKA_V_TIMESTAMP(timestamp_ms),
        RD_KAFKA_V_OPAQUE(cb.get()), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      (void)hdrs.release();
      (void)cb.release();
      return OkStatus();
    }
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      return ErrStatus(err, fmt::format("produce to {}", topic_name));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return ResourceExhausted("produce to {}: local queue full for {}ms", topic_name,
                               config_.queue_full_timeout.count());
    }
    // Serve delivery reports so the queue drains, then retry (librdkafka's documented way).
    rd_kafka_poll(rk_.get(), 50);
  }
}

int Producer::Poll(std::chrono::milliseconds timeout) {
  return rd_kafka_poll(rk_.get(), static_cast<int>(timeout.count()));
}

void Producer::PurgeQueued() { (void)rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE); }

Result<int> Producer::PartitionCount(const std::string& topic, std::chrono::milliseconds timeout) {
  FS_ASSIGN_OR_RETURN(const std::vector<internal::TopicMetadata> md,
                      internal::DescribeTopics(rk_.get(), std::nullopt, timeout));
  for (const internal::TopicMetadata& t : md) {
    if (t.name == topic && t.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      return static_cast<int>(t.partitions.size());
    }
  }
  return NotFound("topic {} does not exist", topic);
}

Status Producer::Flush(std::chrono::milliseconds timeout) {
  rd_kafka_resp_err_t err = rd_kafka_flush(rk_.get(), static_cast<int>(timeout.count()));
  if (err == RD_KAFKA_RESP_ERR__TIMED_OUT) {
    return DeadlineExceeded("kafka flush: {} records still in flight after {}ms",
                            rd_kafka_outq_len(rk_.get()), timeout.count());
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, "kafka flush");
  }
  return FatalError();
}

int Producer::OutstandingCount() const { return rd_kafka_outq_len(rk_.get()); }

Status Producer::FatalError() const {
  std::lock_guard<std::mutex> lock(fatal_mu_);
  return fatal_;
}

}  // namespace flamestream::kafka
