#include "flamestream/obs/admin_server.h"

#include <httplib.h>

#include "flamestream/common/strings.h"

namespace flamestream::obs {

Result<HostPort> ParseHostPort(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    return InvalidArgument("\"{}\" is not host:port", text);
  }
  HostPort hp;
  hp.host = text.substr(0, colon);
  if (hp.host.size() >= 2 && hp.host.front() == '[' && hp.host.back() == ']') {
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  if (hp.host.empty()) {
    hp.host = "0.0.0.0";
  }
  auto port = common::ParseInt<int>(text.substr(colon + 1));
  if (!port.ok() || *port < 0 || *port > 65535) {
    return InvalidArgument("\"{}\": port must be 0..65535", text);
  }
  hp.port = *port;
  return hp;
}

AdminServer::AdminServer(Registry& registry) : registry_(registry) {}

Result<std::unique_ptr<AdminServer>> AdminServer::Start(const std::string& listen,
                                                        Registry& registry, AdminOptions options) {
  FS_ASSIGN_OR_RETURN(HostPort hp, ParseHostPort(listen));
  std::unique_ptr<AdminServer> admin(new AdminServer(registry));
  admin->options_ = std::move(options);
  FS_ASSIGN_OR_RETURN(admin->server_, NewHttpServer(admin->options_.tls));
  AdminServer* self = admin.get();
  httplib::Server& srv = *admin->server_;
  // httplib's default sets SO_REUSEPORT, which lets a second process share a busy port
  // silently; we want "port in use" to be an error that names the setting.
  srv.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  srv.Get("/metrics", [self](const httplib::Request& req, httplib::Response& res) {
    if (!self->options_.bearer_token.empty() &&
        !BearerMatches(req.get_header_value("Authorization"), self->options_.bearer_token)) {
      res.status = 401;
      res.set_header("WWW-Authenticate", "Bearer");
      res.set_content("bearer token required (admin.bearer_token_file)\n", "text/plain");
      return;
    }
    res.set_content(self->registry_.Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  srv.Get("/healthz", [self](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(self->mu_);
    if (self->unhealthy_reason_.empty()) {
      res.set_content("ok\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content(self->unhealthy_reason_ + "\n", "text/plain");
    }
  });
  srv.Get("/readyz", [self](const httplib::Request&, httplib::Response& res) {
    if (self->ready_.load()) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content("not ready\n", "text/plain");
    }
  });
  if (hp.port == 0) {
    admin->port_ = srv.bind_to_any_port(hp.host);
    if (admin->port_ < 0) {
      return Unavailable("cannot listen on {}", listen);
    }
  } else {
    if (!srv.bind_to_port(hp.host, hp.port)) {
      return Unavailable("cannot listen on {} (port in use?)", listen);
    }
    admin->port_ = hp.port;
  }
  admin->thread_ = std::thread([self] { self->server_->listen_after_bind(); });
  // stop() is a no-op until the loop runs, so a server destroyed right away would never
  // stop: wait for it to start.
  for (int i = 0; i < 5000 && !srv.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return admin;
}

void AdminServer::SetUnhealthy(const std::string& reason) {
  std::lock_guard lock(mu_);
  unhealthy_reason_ = reason;
}

AdminServer::~AdminServer() {
  if (server_ == nullptr) {
    return;
  }
  server_->stop();
  if (thread_.joinable()) {
    thread_.join();
  }
}

}  // namespace flamestream::obs
