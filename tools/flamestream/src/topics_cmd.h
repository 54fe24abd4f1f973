// `flamestream topics create|check`: every Flamestream topic on a real cluster, with
// partitions, replication and retention (compaction for the processes topic).
//
//   TopicsOptions o{.brokers = "kafka-0:9092", .partitions = 8, .replication = 3};
//   FS_ASSIGN_OR_RETURN(std::string report, CreateTopics(o));   // "created"/"exists" per topic
//   FS_ASSIGN_OR_RETURN(TopicsCheck check, CheckTopics(o));     // check.ok(), check.report
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "flamestream/common/status.h"

namespace flamestream::cli {

struct TopicsOptions {
  std::string brokers;
  int partitions = 8;
  int replication = 3;
  std::chrono::nanoseconds retention = std::chrono::hours(24 * 7);
  std::map<std::string, std::string> properties;  // extra librdkafka properties (-X k=v)
  std::chrono::milliseconds timeout{15000};
};

// The topics to create with their configs (cleanup.policy, retention.ms).
struct TopicPlan {
  std::string name;
  std::map<std::string, std::string> configs;
};
std::vector<TopicPlan> PlanTopics(const TopicsOptions& o);

// Creates every missing topic; an existing topic is left alone and reported as "exists".
Result<std::string> CreateTopics(const TopicsOptions& o);

struct TopicsCheck {
  std::vector<std::string> problems;  // empty when everything is in place
  std::string report;                 // one line per topic
  [[nodiscard]] bool ok() const { return problems.empty(); }
};
// Every topic exists, symbolized samples and keyed spans have equal partition counts (the
// correlator co-partitions them), the processes topic is compacted; retention differing
// from --retention is reported, not failed.
Result<TopicsCheck> CheckTopics(const TopicsOptions& o);

}  // namespace flamestream::cli
