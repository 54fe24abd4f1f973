#include "probe.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "flamestream/common/fd.h"

namespace flamestream::cli {
namespace {

using common::UniqueFd;

template <typename Duration>
void SplitSeconds(Duration d, time_t& sec, time_t& usec) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  sec = static_cast<time_t>(us / 1'000'000);
  usec = static_cast<time_t>(us % 1'000'000);
}

}  // namespace

Status CheckPortFree(const std::string& host, int port, std::string_view flag) {
  if (port <= 0 || port > 65535) {
    return InvalidArgument("{} {}: not a port (1..65535)", flag, port);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgument("{}: '{}' is not an IPv4 address", flag, host);
  }
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError(errno, "socket");
  // Servers set SO_REUSEADDR, so a port whose old connections sit in TIME_WAIT is not "in use".
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if (err == EADDRINUSE) {
      return FailedPrecondition(
          "port {} ({}) is already in use on {}: stop what holds it (`ss -ltnp 'sport = :{}'`) "
          "or choose another port with {}",
          port, flag, host, port, flag);
    }
    return FailedPrecondition("cannot bind {}:{} ({}): {}", host, port, flag, std::strerror(err));
  }
  return OkStatus();
}

Result<int> PickFreePort() {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError(errno, "bind 127.0.0.1:0");
  }
  socklen_t len = sizeof(addr);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoError(errno, "getsockname");
  }
  return static_cast<int>(ntohs(addr.sin_port));
}

bool TcpConnects(int port, std::chrono::milliseconds timeout) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{.fd = fd.get(), .events = POLLOUT, .revents = 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  return err == 0;
}

Result<int> HttpGetStatus(int port, const std::string& path, std::chrono::milliseconds timeout) {
  httplib::Client client("127.0.0.1", port);
  time_t sec = 0;
  time_t usec = 0;
  SplitSeconds(timeout, sec, usec);
  client.set_connection_timeout(sec, usec);
  client.set_read_timeout(sec, usec);
  httplib::Result res = client.Get(path);
  if (!res) {
    return Unavailable("GET 127.0.0.1:{}{}: {}", port, path, httplib::to_string(res.error()));
  }
  return res->status;
}

double MetricSums::Series(const std::string& name, std::string_view label) const {
  double total = 0;
  for (auto it = series.lower_bound(name); it != series.end() && it->first.starts_with(name);
       ++it) {
    const std::string_view rest = std::string_view(it->first).substr(name.size());
    if ((rest.empty() || rest.front() == '{') && rest.find(label) != std::string_view::npos) {
      total += it->second;
    }
  }
  return total;
}

std::optional<double> MetricSums::Get(const std::string& name) const {
  auto it = sums.find(name);
  if (it == sums.end()) return std::nullopt;
  return it->second;
}

MetricSums ParseMetricsText(std::string_view text) {
  MetricSums out;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string_view::npos) continue;
    const std::string name(line.substr(0, name_end));
    size_t value_start = name_end;
    if (line[name_end] == '{') {
      // Label values may hold '}' inside quotes; find the closing brace outside quotes.
      bool quoted = false;
      size_t i = name_end + 1;
      for (; i < line.size(); ++i) {
        if (line[i] == '\\') {
          ++i;
        } else if (line[i] == '"') {
          quoted = !quoted;
        } else if (line[i] == '}' && !quoted) {
          break;
        }
      }
      value_start = i + 1;
    }
    if (value_start >= line.size()) continue;
    std::string value(line.substr(value_start));
    const char* begin = value.c_str();
    while (*begin == ' ') ++begin;
    char* end = nullptr;
    const double v = std::strtod(begin, &end);
    if (end == begin) continue;
    out.sums[name] += v;
    out.series[std::string(line.substr(0, value_start))] = v;
  }
  return out;
}

Result<MetricSums> ScrapeMetrics(int port, std::chrono::milliseconds timeout) {
  httplib::Client client("127.0.0.1", port);
  time_t sec = 0;
  time_t usec = 0;
  SplitSeconds(timeout, sec, usec);
  client.set_connection_timeout(sec, usec);
  client.set_read_timeout(sec, usec);
  httplib::Result res = client.Get("/metrics");
  if (!res) {
    return Unavailable("GET 127.0.0.1:{}/metrics: {}", port, httplib::to_string(res.error()));
  }
  if (res->status != 200) {
    return Unavailable("GET 127.0.0.1:{}/metrics: HTTP {}", port, res->status);
  }
  return ParseMetricsText(res->body);
}

}  // namespace flamestream::cli
