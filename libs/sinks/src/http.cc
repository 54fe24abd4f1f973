#include "http.h"

#include <httplib.h>

#include "flamestream/sinks/sink.h"

namespace flamestream::sinks::internal {

Result<std::unique_ptr<HttpPoster>> HttpPoster::Create(HttpTarget target) {
  std::unique_ptr<HttpPoster> p(new HttpPoster());
  const size_t scheme = target.url.find("://");
  if (scheme == std::string::npos) return InvalidArgument("url {}: needs http:// or https://", target.url);
  const std::string proto = target.url.substr(0, scheme);
  if (proto != "http" && proto != "https") return InvalidArgument("url {}: scheme must be http or https", target.url);
  const size_t path = target.url.find('/', scheme + 3);
  std::string host_port = target.url.substr(0, path);
  p->prefix_ = path == std::string::npos ? "" : target.url.substr(path);
  while (!p->prefix_.empty() && p->prefix_.back() == '/') p->prefix_.pop_back();
  try {
    p->client_ = std::make_unique<httplib::Client>(host_port);
  } catch (const std::exception& e) {
    return InvalidArgument("url {}: {}", target.url, e.what());
  }
  if (!p->client_->is_valid()) return InvalidArgument("url {}: cannot build a client", target.url);
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(target.timeout);
  const auto usecs = std::chrono::duration_cast<std::chrono::microseconds>(target.timeout - secs);
  p->client_->set_connection_timeout(secs.count(), usecs.count());
  p->client_->set_read_timeout(secs.count(), usecs.count());
  p->client_->set_write_timeout(secs.count(), usecs.count());
  p->client_->set_keep_alive(true);
  if (!target.basic_user.empty()) {
    p->client_->set_basic_auth(target.basic_user, target.basic_password);
  } else if (!target.bearer_token.empty()) {
    p->client_->set_bearer_token_auth(target.bearer_token);
  }
  if (proto == "https") {
    if (!target.ca_file.empty()) p->client_->set_ca_cert_path(target.ca_file.c_str());
    p->client_->enable_server_certificate_verification(!target.insecure_skip_verify);
  }
  p->target_ = std::move(target);
  return p;
}

HttpPoster::~HttpPoster() = default;

Status HttpPoster::Post(std::string_view path, std::string_view body, std::string_view content_type,
                        const std::map<std::string, std::string>& extra_headers) {
  httplib::Headers headers;
  for (const auto& [k, v] : target_.headers) headers.emplace(k, v);
  for (const auto& [k, v] : extra_headers) headers.emplace(k, v);
  const std::string full = prefix_ + std::string(path);
  httplib::Result res = client_->Post(full, headers, body.data(), body.size(), std::string(content_type));
  if (!res) {
    return Unavailable("POST {}{}: {}", target_.url, path, httplib::to_string(res.error()));
  }
  return HttpStatusToStatus(res->status, res->body).WithContext(fmt::format("POST {}{}", target_.url, path));
}

}  // namespace flamestream::sinks::internal
