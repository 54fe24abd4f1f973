// Plain value types shared by the Kafka producer, consumer and helpers.
//
//   kafka::Properties props = {{"bootstrap.servers", "127.0.0.1:9092"}};
//   kafka::Headers headers = {{"symbol-epoch", "3"}};
//   kafka::TopicPartition tp{"flamestream.samples.raw.v1", 5, /*offset=*/42};
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace flamestream::kafka {

// librdkafka configuration properties, passed through verbatim (config keys `kafka.*`).
using Properties = std::map<std::string, std::string>;

struct Header {
  std::string key;
  std::string value;
  friend bool operator==(const Header&, const Header&) = default;
};
using Headers = std::vector<Header>;

// Sets `key` to `value`, replacing every earlier header of that name (Kafka allows repeats).
inline void SetHeader(Headers& headers, std::string_view key, std::string value) {
  std::erase_if(headers, [key](const Header& h) { return h.key == key; });
  headers.push_back({std::string(key), std::move(value)});
}

// librdkafka's logical offsets.
inline constexpr int64_t kOffsetBeginning = -2;   // RD_KAFKA_OFFSET_BEGINNING
inline constexpr int64_t kOffsetEnd = -1;         // RD_KAFKA_OFFSET_END
inline constexpr int64_t kOffsetInvalid = -1001;  // RD_KAFKA_OFFSET_INVALID ("none")
inline constexpr int32_t kAnyPartition = -1;      // RD_KAFKA_PARTITION_UA: let the partitioner pick

// A partition and, depending on the call, an offset: for commits it is the next offset to
// read (last processed + 1), as Kafka defines committed offsets.
struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = kOffsetInvalid;
  // Commit metadata: written with Consumer::Commit, read back by Consumer::Committed.
  std::string metadata;
  friend bool operator==(const TopicPartition&, const TopicPartition&) = default;
  friend auto operator<=>(const TopicPartition&, const TopicPartition&) = default;
};
using TopicPartitions = std::vector<TopicPartition>;

inline std::ostream& operator<<(std::ostream& os, const TopicPartition& tp) {
  return os << tp.topic << "[" << tp.partition << "]@" << tp.offset;
}

}  // namespace flamestream::kafka
