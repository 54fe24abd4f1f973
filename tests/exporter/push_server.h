// A Pyroscope push endpoint for the exporter tests: Connect unary over HTTP or HTTPS (optionally
// requiring client certificates), protobuf bodies. A callback decides each answer, so a test
// can script outages (503 with or without Retry-After) and permanent refusals (4xx).
//
//   PushServer server([](const PushServer::Seen& s) {
//     return s.since_first < 30s ? PushServer::Answer{.status = 503, .retry_after = "2"}
//                                : PushServer::Answer{};
//   });
//   sinks::PyroscopeSink sink({.url = server.url()});
//   ... server.log() ...   // every request with its answer and decoded push
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pyroscope/push/v1/push.pb.h"

namespace httplib {
class Server;
}

namespace flamestream::exporter_test {

class PushServer {
 public:
  struct Answer {
    int status = 200;
    std::string retry_after;  // Retry-After header value; empty = not sent
    std::string body;
  };
  struct Seen {
    int index = 0;                          // 0-based request number
    std::chrono::milliseconds since_first;  // wall time since the first request
    const push::v1::PushRequest* push;      // nullptr when the body did not decode
  };
  struct Request {
    std::chrono::steady_clock::time_point at;
    Answer answer;
    bool decoded = false;
    push::v1::PushRequest push;
  };
  struct Tls {
    std::string cert_file, key_file;
    std::string client_ca_file;  // non-empty: client certificates are required
  };
  using Decide = std::function<Answer(const Seen&)>;

  explicit PushServer(Decide decide = {}, const Tls* tls = nullptr);
  ~PushServer();
  PushServer(const PushServer&) = delete;
  PushServer& operator=(const PushServer&) = delete;

  // http(s)://127.0.0.1:<port>
  [[nodiscard]] std::string url() const;
  [[nodiscard]] std::vector<Request> log() const;
  // Pushes answered 2xx, in order.
  [[nodiscard]] std::vector<push::v1::PushRequest> accepted() const;

 private:
  Decide decide_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string scheme_;
  int port_ = 0;
  mutable std::mutex mu_;
  std::vector<Request> log_;
};

// Per pushed series: the pprof's window start (time_nanos), service_name and samples/CPU ns.
struct PushedSeries {
  int64_t window_start_ns = 0;
  std::string service;
  int64_t count = 0;
  int64_t nanos = 0;
};
std::vector<PushedSeries> DecodePushes(const std::vector<push::v1::PushRequest>& pushes);

}  // namespace flamestream::exporter_test
