#include "metadata.h"

#include <string>

#include "conf.h"

namespace flamestream::kafka::internal {

Result<std::vector<TopicMetadata>> DescribeTopics(rd_kafka_t* rk,
                                                  std::optional<std::string_view> topic,
                                                  std::chrono::milliseconds timeout) {
  KafkaTopic rkt;
  if (topic) {
    rkt.reset(rd_kafka_topic_new(rk, std::string(*topic).c_str(), nullptr));
  }
  const rd_kafka_metadata_t* raw = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, /*all_topics=*/topic ? 0 : 1, rkt.get(),
                                                    &raw, static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, topic ? "kafka metadata " + std::string(*topic) : "kafka metadata");
  }
  const KafkaMetadata md(raw);
  std::vector<TopicMetadata> out;
  out.reserve(static_cast<size_t>(md->topic_cnt));
  for (int i = 0; i < md->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& t = md->topics[i];
    TopicMetadata m{.name = t.topic, .err = t.err};
    m.partitions.reserve(static_cast<size_t>(t.partition_cnt));
    for (int p = 0; p < t.partition_cnt; ++p) {
      m.partitions.push_back(t.partitions[p].id);
    }
    if (t.partition_cnt > 0) {
      m.replication = t.partitions[0].replica_cnt;
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace flamestream::kafka::internal
