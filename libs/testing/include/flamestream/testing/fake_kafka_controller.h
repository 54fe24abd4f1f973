// fake_kafka_controller.py as a test fixture: a single-node Kafka-protocol server that answers
// what the dev broker (librdkafka's mock cluster, which has no controller) cannot: CreateTopics
// and DescribeConfigs, validated like a broker would, plus the Metadata and ApiVersions around
// them. For tests of kafka::Admin and `flamestream topics`.
//
//   FS_ASSIGN_OR_RETURN(std::unique_ptr<FakeKafkaController> fake, FakeKafkaController::Start(
//       {"--brokers", "1", "--topic", "t:8:1:cleanup.policy=compact"}));
//   kafka::Properties props = {{"bootstrap.servers", fake->bootstrap()}};
//   ...
//   std::vector<std::string> sent = fake->Requests();   // one JSON object per request
//
// Arguments are the script's (see its --help): --brokers N (replication is limited to N),
// --topic NAME:PARTITIONS:REPLICATION[:k=v,...] (exists from the start),
// --deny-describe-configs TOPIC (answered with TOPIC_AUTHORIZATION_FAILED).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream::testing {

class FakeKafkaController {
 public:
  // Starts `python3 fake_kafka_controller.py --record <temp file> <args>` on a free loopback
  // port and waits until it listens.
  static Result<std::unique_ptr<FakeKafkaController>> Start(
      std::vector<std::string> args = {},
      std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Kills the server and removes its temp directory.
  ~FakeKafkaController();
  FakeKafkaController(const FakeKafkaController&) = delete;
  FakeKafkaController& operator=(const FakeKafkaController&) = delete;

  // "127.0.0.1:<port>".
  [[nodiscard]] const std::string& bootstrap() const { return bootstrap_; }
  // Every CreateTopics and DescribeConfigs request decoded so far, in order, each as one line
  // of JSON ({"api": "CreateTopics", "version": 2, "topics": [...], ...}).
  [[nodiscard]] std::vector<std::string> Requests() const;

 private:
  FakeKafkaController() = default;

  std::filesystem::path dir_;
  std::unique_ptr<Subprocess> proc_;
  std::string bootstrap_;
};

}  // namespace flamestream::testing
