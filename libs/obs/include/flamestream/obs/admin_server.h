// The admin listener every service runs: Prometheus /metrics, /healthz and /readyz.
//
//   FS_ASSIGN_OR_RETURN(auto admin, obs::AdminServer::Start("127.0.0.1:9401", registry));
//   admin->SetReady(true);           // /readyz answers 200 from now on
//   admin->SetUnhealthy("kafka fatal error: ...");   // /healthz answers 503 with the reason
//
// /healthz means "the process works" (restart it when failing); /readyz means "it is doing its
// job" (consumer assigned, BPF attached, ...). Stops when destroyed.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "flamestream/common/status.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/obs/server_security.h"

namespace httplib {
class Server;
}

namespace flamestream::obs {

struct HostPort {
  std::string host;
  int port = 0;
};
// Parses "host:port", ":port" (all interfaces) or "[::1]:port". Port 0 picks a free one.
Result<HostPort> ParseHostPort(const std::string& text);

struct AdminOptions {
  // Non-empty: /metrics answers 401 unless the request carries "Authorization: Bearer <token>"
  // (Prometheus `authorization: {credentials_file: ...}`). /healthz and /readyz stay open:
  // kubelet probes send no credentials, and they reveal nothing but up/ready.
  std::string bearer_token;
  // Set: the listener speaks HTTPS only (admin.tls.cert_file / admin.tls.key_file).
  std::optional<ServerTls> tls;
};

class AdminServer {
 public:
  static Result<std::unique_ptr<AdminServer>> Start(const std::string& listen, Registry& registry,
                                                    AdminOptions options = {});
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  void SetReady(bool ready) { ready_.store(ready); }
  void SetUnhealthy(const std::string& reason);
  [[nodiscard]] int port() const { return port_; }

 private:
  explicit AdminServer(Registry& registry);
  Registry& registry_;
  AdminOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> ready_{false};
  std::mutex mu_;
  std::string unhealthy_reason_;
  int port_ = 0;
};

}  // namespace flamestream::obs
