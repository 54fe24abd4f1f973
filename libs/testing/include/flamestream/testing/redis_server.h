// A throwaway redis-server on 127.0.0.1 for tests (no persistence).
//
//   FS_ASSIGN_OR_RETURN(std::unique_ptr<RedisServer> redis, RedisServer::Start());
//   Connect("127.0.0.1", redis->port());
//   redis->Kill();                          // outage
//   ASSERT_TRUE(redis->Restart().ok());     // same port, empty data set
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "flamestream/common/status.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream::testing {

class RedisServer {
 public:
  // redis-server --port <free> --bind 127.0.0.1 --save '' --appendonly no; waits for PONG.
  static Result<std::unique_ptr<RedisServer>> Start(
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~RedisServer() = default;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // SIGKILL and reap (connections see a reset, as in a crash).
  void Kill();
  // Starts again on the same port and waits for PONG.
  Status Restart(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Sends PING, true on "+PONG".
  [[nodiscard]] bool Ping(std::chrono::milliseconds timeout = std::chrono::milliseconds(500)) const;

 private:
  RedisServer() = default;
  Status Launch(std::chrono::milliseconds timeout);

  int port_ = 0;
  std::unique_ptr<Subprocess> proc_;
};

}  // namespace flamestream::testing
