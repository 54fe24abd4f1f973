// Consumer offsets: commits (sync and async, with metadata), committed offsets, positions,
// watermarks, seeks and lag. The group, polling and pausing are in consumer.cc.
#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "conf.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/log/log.h"

namespace flamestream::kafka {

using internal::ErrStatus;

Status Consumer::Commit(const TopicPartitions& offsets) {
  if (!rk_) {
    return FailedPrecondition("kafka consumer {} is closed", config_.group_id);
  }
  if (config_.whole_topics) {
    return FailedPrecondition("kafka consumer {} reads whole topics and has no group", Name());
  }
  if (offsets.empty()) {
    return OkStatus();
  }
  PartitionList list = ToPartitionList(offsets);
  return CommitStatus(rd_kafka_commit(rk_.get(), list.get(), /*async=*/0), list.get());
}

Status Consumer::CommitStatus(rd_kafka_resp_err_t err,
                              const rd_kafka_topic_partition_list_t* list) {
  if (err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
      err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION || err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID) {
    commit_refused_at_ = std::chrono::steady_clock::now();
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, "kafka commit");
  }
  for (int i = 0; list != nullptr && i < list->cnt; ++i) {
    if (list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return ErrStatus(list->elems[i].err, fmt::format("kafka commit {}[{}]", list->elems[i].topic,
                                                       list->elems[i].partition));
    }
  }
  return OkStatus();
}

void Consumer::DrainCommits(std::chrono::milliseconds timeout) {
  if (!commit_queue_) return;
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!commits_in_flight_.empty() && std::chrono::steady_clock::now() < until) {
    (void)rd_kafka_queue_poll_callback(commit_queue_.get(), 50);
  }
  if (!commits_in_flight_.empty()) {
    log::Warn("kafka async commits still unanswered at close",
              {{"group", config_.group_id}, {"count", commits_in_flight_.size()}});
  }
  commits_in_flight_.clear();
  commit_queue_.reset();  // purges what is left, before the handle goes
}

Status Consumer::CommitAsync(const TopicPartitions& offsets, CommitCallback done) {
  if (!rk_) {
    return FailedPrecondition("kafka consumer {} is closed", config_.group_id);
  }
  if (config_.whole_topics) {
    return FailedPrecondition("kafka consumer {} reads whole topics and has no group", Name());
  }
  if (offsets.empty()) {
    if (done) done(offsets, OkStatus());
    return OkStatus();
  }
  const uint64_t id = next_commit_id_++;
  commits_in_flight_.emplace(id, std::move(done));
  PartitionList list = ToPartitionList(offsets);
  // The result is served from our own queue by Poll() (and Close()).
  if (!commit_queue_) commit_queue_.reset(rd_kafka_queue_new(rk_.get()));
  const rd_kafka_resp_err_t err = rd_kafka_commit_queue(
      rk_.get(), list.get(), commit_queue_.get(), &Consumer::CommitDoneCallback,
      reinterpret_cast<void*>(static_cast<uintptr_t>(id)));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    commits_in_flight_.erase(id);
    return CommitStatus(err, nullptr);
  }
  return OkStatus();
}

void Consumer::CommitDoneCallback(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t* offsets, void* opaque) {
  auto* self = static_cast<Consumer*>(rd_kafka_opaque(rk));
  const auto id = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(opaque));
  auto it = self->commits_in_flight_.find(id);
  if (it == self->commits_in_flight_.end()) return;
  CommitCallback done = std::move(it->second);
  self->commits_in_flight_.erase(it);
  const Status status = self->CommitStatus(err, offsets);
  if (!done) return;
  try {
    done(offsets != nullptr ? FromPartitionList(offsets) : TopicPartitions{}, status);
  } catch (const std::exception& ex) {
    log::Error("kafka commit callback threw",
               {{"group", self->config_.group_id}, {"error", ex.what()}});
  }
}

bool Consumer::rebalance_pending() const {
  return commit_refused_at_.has_value() &&
         std::chrono::steady_clock::now() - *commit_refused_at_ < session_timeout_;
}

Result<TopicPartitions> Consumer::Committed(const TopicPartitions& partitions,
                                            std::chrono::milliseconds timeout) {
  if (!rk_) {
    return FailedPrecondition("kafka consumer {} is closed", config_.group_id);
  }
  PartitionList list = ToPartitionList(partitions);
  rd_kafka_resp_err_t err =
      rd_kafka_committed(rk_.get(), list.get(), static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, "kafka committed");
  }
  return FromPartitionList(list.get());
}

Status Consumer::SeekToTimestamp(int64_t timestamp_ms, std::chrono::milliseconds timeout) {
  FS_ASSIGN_OR_RETURN(TopicPartitions assigned, Assignment());
  if (assigned.empty()) {
    return OkStatus();
  }
  for (TopicPartition& tp : assigned) {
    tp.offset = timestamp_ms;  // offsets_for_times takes the timestamp in the offset field
  }
  PartitionList list = ToPartitionList(assigned);
  rd_kafka_resp_err_t err =
      rd_kafka_offsets_for_times(rk_.get(), list.get(), static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, "kafka offsets for times");
  }
  for (int i = 0; i < list->cnt; ++i) {
    rd_kafka_topic_partition_t& e = list->elems[i];
    const int64_t answer = e.err == RD_KAFKA_RESP_ERR_NO_ERROR ? e.offset : -1;
    e.offset = OffsetForTimestampAnswer(answer);
    e.err = RD_KAFKA_RESP_ERR_NO_ERROR;
    log::Debug("kafka seek to timestamp", {{"topic", e.topic},
                                           {"partition", e.partition},
                                           {"answer", static_cast<long long>(answer)},
                                           {"offset", static_cast<long long>(e.offset)}});
  }
  KafkaError seek(
      rd_kafka_seek_partitions(rk_.get(), list.get(), static_cast<int>(timeout.count())));
  if (seek) {
    return Unavailable("kafka seek: {}", rd_kafka_error_string(seek.get()));
  }
  for (int i = 0; i < list->cnt; ++i) {
    if (list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return ErrStatus(list->elems[i].err, fmt::format("kafka seek {}[{}]", list->elems[i].topic,
                                                       list->elems[i].partition));
    }
  }
  return OkStatus();
}

Result<std::vector<PartitionLag>> Consumer::Lag(std::chrono::milliseconds query_timeout) {
  FS_ASSIGN_OR_RETURN(TopicPartitions assigned, Assignment());
  PartitionList list = ToPartitionList(assigned);
  if (rd_kafka_resp_err_t err = rd_kafka_position(rk_.get(), list.get());
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, "kafka position");
  }
  std::vector<PartitionLag> out;
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& e = list->elems[i];
    PartitionLag lag{e.topic, e.partition, e.offset, -1, -1};
    int64_t low = -1;
    int64_t high = -1;
    rd_kafka_resp_err_t err =
        query_timeout.count() > 0
            ? rd_kafka_query_watermark_offsets(rk_.get(), e.topic, e.partition, &low, &high,
                                               static_cast<int>(query_timeout.count()))
            : rd_kafka_get_watermark_offsets(rk_.get(), e.topic, e.partition, &low, &high);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0) {
      lag.high_watermark = high;
      if (lag.position >= 0) {
        lag.lag = high > lag.position ? high - lag.position : 0;
      }
    }
    out.push_back(std::move(lag));
  }
  return out;
}

Result<Watermarks> Consumer::GetWatermarks(const std::string& topic, int32_t partition,
                                           std::chrono::milliseconds query_timeout) {
  if (!rk_) {
    return FailedPrecondition("kafka consumer {} is closed", config_.group_id);
  }
  Watermarks w;
  const rd_kafka_resp_err_t err =
      query_timeout.count() > 0
          ? rd_kafka_query_watermark_offsets(rk_.get(), topic.c_str(), partition, &w.low, &w.high,
                                             static_cast<int>(query_timeout.count()))
          : rd_kafka_get_watermark_offsets(rk_.get(), topic.c_str(), partition, &w.low, &w.high);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, fmt::format("kafka watermarks {}[{}]", topic, partition));
  }
  return w;
}

std::vector<Watermarks> Consumer::QueryWatermarks(const TopicPartitions& partitions,
                                                  std::chrono::milliseconds timeout) {
  std::vector<Watermarks> out(partitions.size());
  if (!rk_) return out;
  // librdkafka's watermark query is one blocking request per partition (thread-safe): each
  // waits behind whatever the broker holds on the connection (a fetch up to fetch.wait.max.ms),
  // so they run side by side.
  std::vector<std::thread> threads;
  threads.reserve(partitions.size());
  for (size_t i = 0; i < partitions.size(); ++i) {
    threads.emplace_back([this, &partitions, &out, i, timeout] {
      Watermarks w;
      if (rd_kafka_query_watermark_offsets(
              rk_.get(), partitions[i].topic.c_str(), partitions[i].partition, &w.low, &w.high,
              static_cast<int>(timeout.count())) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        out[i] = w;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

Result<int64_t> Consumer::OffsetForTime(const std::string& topic, int32_t partition,
                                        int64_t timestamp_ms, std::chrono::milliseconds timeout) {
  if (!rk_) {
    return FailedPrecondition("kafka consumer {} is closed", config_.group_id);
  }
  // offsets_for_times takes the timestamp in the offset field.
  PartitionList list = ToPartitionList({{topic, partition, timestamp_ms, {}}});
  rd_kafka_resp_err_t err =
      rd_kafka_offsets_for_times(rk_.get(), list.get(), static_cast<int>(timeout.count()));
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) err = list->elems[0].err;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, fmt::format("kafka offsets for times {}[{}]", topic, partition));
  }
  if (list->elems[0].offset < 0) {
    return NotFound("{}[{}] has no record at or after {} ms", topic, partition, timestamp_ms);
  }
  return list->elems[0].offset;
}

Status Consumer::Seek(const TopicPartition& to, std::chrono::milliseconds timeout) {
  if (!rk_) {
    return FailedPrecondition("kafka consumer {} is closed", config_.group_id);
  }
  PartitionList list = ToPartitionList({{to.topic, to.partition, to.offset, {}}});
  KafkaError err(
      rd_kafka_seek_partitions(rk_.get(), list.get(), static_cast<int>(timeout.count())));
  if (err) {
    return Unavailable("kafka seek {}[{}]: {}", to.topic, to.partition,
                       rd_kafka_error_string(err.get()));
  }
  if (timeout.count() > 0 && list->elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(list->elems[0].err, fmt::format("kafka seek {}[{}]", to.topic, to.partition));
  }
  return OkStatus();
}

}  // namespace flamestream::kafka
