// Internal: the cluster's topic metadata as values, for every caller in libs/kafka that needs
// partitions (Producer::PartitionCount, the table consumer's assignment, Admin::ListTopics).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/kafka/handles.h"

namespace flamestream::kafka::internal {

struct TopicMetadata {
  std::string name;
  // The topic's own error (unknown, leader not available while it is being created, not
  // authorized); its partitions are then usually empty.
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::vector<int32_t> partitions;  // partition ids, in the order the cluster listed them
  int replication = 0;              // replicas of the first partition (0 without partitions)
};

// One metadata request: `topic` alone when given (a topic-level request, as a consumer makes
// it), otherwise every topic of the cluster. An error status (ErrStatus: "kafka metadata[
// <topic>]: ...") when the request fails; per-topic errors are in each entry's `err`.
Result<std::vector<TopicMetadata>> DescribeTopics(rd_kafka_t* rk,
                                                  std::optional<std::string_view> topic,
                                                  std::chrono::milliseconds timeout);

}  // namespace flamestream::kafka::internal
