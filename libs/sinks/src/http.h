// Small HTTP POST helper over cpp-httplib (built with OpenSSL by Debian) for the remote sinks:
// auth, TLS with a CA file, client certificates (mTLS), and the answer of a failed POST
// (status, body, Retry-After) for retries and the DLQ.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "flamestream/common/status.h"
#include "flamestream/sinks/sink.h"

namespace httplib {
class Client;
}

namespace flamestream::sinks::internal {

struct HttpTarget {
  std::string url;  // http(s)://host[:port][/prefix]
  std::map<std::string, std::string> headers;
  std::string basic_user;
  std::string basic_password;
  std::string bearer_token;
  TlsConfig tls;
  std::chrono::milliseconds timeout{10'000};
};

class HttpPoster {
 public:
  // Fails on a bad URL or unreadable TLS files. `what` names the config prefix in errors.
  static Result<std::unique_ptr<HttpPoster>> Create(HttpTarget target, std::string_view what);
  ~HttpPoster();
  // POSTs body to <prefix><path>; the answer becomes a Status via HttpStatusToStatus;
  // connection failures are Unavailable. On failure `*response` (when given) gets the answer.
  Status Post(std::string_view path, std::string_view body, std::string_view content_type,
              const std::map<std::string, std::string>& extra_headers = {},
              Response* response = nullptr);

 private:
  HttpPoster() = default;
  HttpTarget target_;
  std::string prefix_;
  std::unique_ptr<httplib::Client> client_;
};

}  // namespace flamestream::sinks::internal
