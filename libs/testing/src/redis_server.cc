#include "flamestream/testing/redis_server.h"

#include <signal.h>
#include <sys/socket.h>

#include <thread>

namespace flamestream::testing {

using Clock = std::chrono::steady_clock;

Result<std::unique_ptr<RedisServer>> RedisServer::Start(std::chrono::milliseconds timeout) {
  std::unique_ptr<RedisServer> r(new RedisServer());
  FS_ASSIGN_OR_RETURN(r->port_, FreePort());
  FS_RETURN_IF_ERROR(r->Launch(timeout));
  return r;
}

Status RedisServer::Launch(std::chrono::milliseconds timeout) {
  SubprocessOptions sp;
  sp.argv = {"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no",     "--loglevel",          "warning"};
  sp.capture_stdout = true;  // keep its banner out of the test log
  FS_ASSIGN_OR_RETURN(proc_, Subprocess::Start(std::move(sp)));
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (Ping()) {
      return OkStatus();
    }
    if (!proc_->running()) {
      return Unavailable("redis-server on port {} exited during start", port_);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return DeadlineExceeded("redis-server on port {} did not answer PING", port_);
}

void RedisServer::Kill() {
  if (proc_) {
    (void)proc_->Signal(SIGKILL);
    (void)proc_->Wait(std::chrono::seconds(5));
  }
}

Status RedisServer::Restart(std::chrono::milliseconds timeout) {
  Kill();
  return Launch(timeout);
}

bool RedisServer::Ping(std::chrono::milliseconds timeout) const {
  Result<common::UniqueFd> fd = ConnectLoopback(port_, timeout);
  if (!fd.ok()) {
    return false;
  }
  static constexpr std::string_view kPing = "PING\r\n";
  if (::send(fd->get(), kPing.data(), kPing.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(kPing.size())) {
    return false;
  }
  char buf[16] = {};
  ssize_t n = ::recv(fd->get(), buf, sizeof buf, 0);
  return n >= 5 && std::string_view(buf, 5) == "+PONG";
}

}  // namespace flamestream::testing
