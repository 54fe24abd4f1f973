// The dev broker (build/bin/flamestream-devbroker) as a test fixture.
//
//   FS_ASSIGN_OR_RETURN(std::unique_ptr<DevBroker> broker, DevBroker::Start());
//   kafka::Properties props = {{"bootstrap.servers", broker->bootstrap()}};
//   ASSERT_TRUE(broker->Command("broker 2 down").ok());
//   ...                                  // the destructor kills it
//
// It runs librdkafka's mock cluster in a child process with every Flamestream topic created
// (8 partitions unless told otherwise); all state is in memory, so each fixture starts empty.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream::testing {

struct DevBrokerOptions {
  int brokers = 3;
  int partitions = 8;
  // Extra topics, "name" or "name:partitions".
  std::vector<std::string> topics;
  // Send Command()s through the TCP admin port instead of stdin.
  bool use_admin_port = false;
  std::vector<std::string> extra_args;
  std::chrono::milliseconds start_timeout{15000};
};

class DevBroker {
 public:
  // Starts $FS_BIN_DIR/flamestream-devbroker --port 0 and waits for its bootstrap line.
  static Result<std::unique_ptr<DevBroker>> Start(DevBrokerOptions options = {});
  ~DevBroker() = default;  // the Subprocess kills the broker

  // "127.0.0.1:<port>" of the bootstrap forwarder.
  [[nodiscard]] const std::string& bootstrap() const { return bootstrap_; }
  [[nodiscard]] int admin_port() const { return admin_port_; }

  // Runs one fault command ("broker 2 down"); OK on "ok", InvalidArgument with the broker's
  // message on "error: ...".
  Status Command(std::string_view line,
                 std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // SIGTERM and wait; InternalError unless it exits 0.
  Status Stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  [[nodiscard]] Subprocess& process() { return *proc_; }

 private:
  DevBroker() = default;

  std::unique_ptr<Subprocess> proc_;
  std::string bootstrap_;
  int admin_port_ = 0;
  bool use_admin_port_ = false;
};

// $FS_BIN_DIR/<name>, or FailedPrecondition when FS_BIN_DIR is not set.
Result<std::string> BinPath(std::string_view name);

}  // namespace flamestream::testing
