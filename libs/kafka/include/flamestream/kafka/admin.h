// The Kafka Admin API for what `flamestream topics` and tests need: list topics with their
// partition counts, create topics with partitions, replication and configs, and describe
// topic configs.
//
//   FS_ASSIGN_OR_RETURN(std::unique_ptr<kafka::Admin> admin,
//                       kafka::Admin::Create({{"bootstrap.servers", "kafka-0:9092"}}));
//   FS_ASSIGN_OR_RETURN(auto topics, admin->ListTopics(5s));   // name -> partitions, replication
//   FS_ASSIGN_OR_RETURN(std::vector<kafka::CreateTopicResult> created,
//                       admin->CreateTopics({{.name = "t", .partitions = 8, .replication = 3,
//                                             .configs = {{"cleanup.policy", "compact"}}}},
//                                           15s));
//   // created[0].status: OK, AlreadyExists, or the cluster's reason
//   FS_ASSIGN_OR_RETURN(auto configs, admin->DescribeTopicConfigs({"t"}, 15s));
//   // configs["t"].values["cleanup.policy"] == "compact"
//
// CreateTopics and DescribeTopicConfigs go to the cluster's controller. The dev broker
// (librdkafka's mock cluster) implements neither: there they fail or time out, and it creates
// the Flamestream topics itself when it starts (testing::DevBroker).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/kafka/handles.h"
#include "flamestream/kafka/types.h"

namespace flamestream::kafka {

struct TopicDescription {
  std::string name;
  int partitions = 0;
  int replication = 0;  // replicas of partition 0
};

struct NewTopic {
  std::string name;
  int partitions = 1;
  int replication = 1;
  // Topic configs (cleanup.policy, retention.ms, ...), validated by the cluster.
  std::map<std::string, std::string> configs;
};

// One topic's answer to CreateTopics.
struct CreateTopicResult {
  std::string name;
  // OK: created. AlreadyExists: the topic was there already (and is left as it is). Otherwise
  // the topic was not created; the message is the cluster's reason, verbatim.
  Status status;
};

// One topic's configs, or why the cluster would not describe them (e.g. an ACL: the status
// message is then the cluster's reason, verbatim).
struct TopicConfigs {
  std::map<std::string, std::string> values;
  Status status;
};

// Whether the linked librdkafka accepts the property `key`=`value`; InvalidArgument with its
// reason otherwise. For callers that name a bad property the way the user typed it (`-X k=v`).
Status CheckProperty(const std::string& key, const std::string& value);

class Admin {
 public:
  // A client for Admin requests on a producer handle (the lightest client that can run them);
  // `properties` are librdkafka's, verbatim: bootstrap.servers at least, and security settings.
  static Result<std::unique_ptr<Admin>> Create(const Properties& properties);
  ~Admin() = default;
  Admin(const Admin&) = delete;
  Admin& operator=(const Admin&) = delete;

  // Every topic in the cluster's metadata, by name. Topics the cluster reports an error for
  // (e.g. one still being created, without a leader) are left out.
  Result<std::map<std::string, TopicDescription>> ListTopics(std::chrono::milliseconds timeout);

  // The broker id of the cluster's controller, or nullopt when none is known within `timeout`
  // (Admin requests would then only time out).
  std::optional<int32_t> ControllerId(std::chrono::milliseconds timeout);

  // Creates `topics` in one request; `timeout` is both the broker's operation timeout and the
  // request timeout. An error status when the request as a whole fails (InvalidArgument for a
  // topic librdkafka refuses to send, DeadlineExceeded without an answer, Unavailable with
  // the cluster's error); otherwise one result per topic.
  Result<std::vector<CreateTopicResult>> CreateTopics(const std::vector<NewTopic>& topics,
                                                      std::chrono::milliseconds timeout);

  // Every config of each of `topics`, by topic name; an error status when the request as a
  // whole fails (as for CreateTopics).
  Result<std::map<std::string, TopicConfigs>> DescribeTopicConfigs(
      const std::vector<std::string>& topics, std::chrono::milliseconds timeout);

 private:
  explicit Admin(KafkaHandle rk) : rk_(std::move(rk)) {}

  KafkaHandle rk_;
};

}  // namespace flamestream::kafka
