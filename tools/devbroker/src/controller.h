// Fault commands for the dev broker's mock cluster, one per line (stdin or the admin port).
//
//   Controller c(mcluster, /*brokers=*/3);
//   c.Execute("broker 2 down");                        // {"ok"}
//   c.Execute("error Produce 6 BROKER_NOT_AVAILABLE"); // next 6 Produce requests fail
//   c.Execute("broker 9 up");                          // {"error: no broker 9 (1..3)"}
//
// Every command answers exactly one final line, "ok" or "error: <why>" (help prints its text
// first). The controller is used from one thread (the dev broker's event loop).
#pragma once

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"

namespace flamestream::devbroker {

struct TopicSpec {
  std::string name;
  int partitions = 0;
  friend bool operator==(const TopicSpec&, const TopicSpec&) = default;
};

// "a:4,b" -> {{"a", 4}, {"b", default_partitions}}.
Result<std::vector<TopicSpec>> ParseTopics(std::string_view spec, int default_partitions);
// "Produce", "produce" or "0" -> 0 (Kafka protocol ApiKey).
Result<int16_t> ParseApiKey(std::string_view name);
// "BROKER_NOT_AVAILABLE", "ERR_BROKER_NOT_AVAILABLE", "_TRANSPORT" or "8" -> the error code.
Result<rd_kafka_resp_err_t> ParseErrorCode(std::string_view name);

// The command reference, also shown by --help.
std::string CommandHelp();

class Controller {
 public:
  Controller(rd_kafka_mock_cluster_t* mcluster, int brokers);

  // Runs one command line; returns the reply lines (the last is "ok" or "error: ...").
  std::vector<std::string> Execute(std::string_view line);
  [[nodiscard]] bool BrokerUp(int id) const;
  [[nodiscard]] int brokers() const { return static_cast<int>(up_.size()); }

 private:
  Status Run(const std::vector<std::string>& words, std::vector<std::string>& out);
  Status RunBroker(const std::vector<std::string>& words);
  Result<int32_t> ParseBroker(std::string_view word) const;

  rd_kafka_mock_cluster_t* mcluster_;
  std::vector<bool> up_;  // index = broker id - 1
};

}  // namespace flamestream::devbroker
