#include "http.h"

#include <httplib.h>

#include "flamestream/sinks/sink.h"

namespace flamestream::sinks::internal {

Result<std::unique_ptr<HttpPoster>> HttpPoster::Create(HttpTarget target, std::string_view what) {
  FS_RETURN_IF_ERROR(ValidateTls(target.tls, what));
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
    // With a client certificate the TLS context loads it here; an unusable pair leaves the
    // client invalid (checked below).
    p->client_ = proto == "https" && !target.tls.cert_file.empty()
                     ? std::make_unique<httplib::Client>(host_port, target.tls.cert_file, target.tls.key_file)
                     : std::make_unique<httplib::Client>(host_port);
  } catch (const std::exception& e) {
    return InvalidArgument("url {}: {}", target.url, e.what());
  }
  if (!p->client_->is_valid()) {
    return InvalidArgument("{}: cannot build a client for {} (TLS certificate/key unusable?)", what, target.url);
  }
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
    if (!target.tls.ca_file.empty()) p->client_->set_ca_cert_path(target.tls.ca_file.c_str());
    p->client_->enable_server_certificate_verification(!target.tls.insecure_skip_verify);
  } else if (!target.tls.ca_file.empty() || !target.tls.cert_file.empty()) {
    return InvalidArgument("{}.tls.* is set but the url {} is not https://", what, target.url);
  }
  p->target_ = std::move(target);
  return p;
}

HttpPoster::~HttpPoster() = default;

Status HttpPoster::Post(std::string_view path, std::string_view body, std::string_view content_type,
                        const std::map<std::string, std::string>& extra_headers, Response* response) {
  httplib::Headers headers;
  for (const auto& [k, v] : target_.headers) headers.emplace(k, v);
  for (const auto& [k, v] : extra_headers) headers.emplace(k, v);
  const std::string full = prefix_ + std::string(path);
  httplib::Result res = client_->Post(full, headers, body.data(), body.size(), std::string(content_type));
  if (!res) {
    if (response != nullptr) *response = Response{};
    return Unavailable("POST {}{}: {}", target_.url, path, httplib::to_string(res.error()));
  }
  Status st = HttpStatusToStatus(res->status, res->body);
  if (st.ok()) return st;
  if (response != nullptr) {
    *response = Response{.status = res->status, .body = res->body.substr(0, Response::kMaxBody)};
    if (res->has_header("Retry-After")) {
      response->retry_after = ParseRetryAfter(res->get_header_value("Retry-After"));
    }
  }
  return st.WithContext(fmt::format("POST {}{}", target_.url, path));
}

}  // namespace flamestream::sinks::internal
