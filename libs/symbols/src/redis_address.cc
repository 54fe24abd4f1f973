// Redis addresses: host:port, redis://[user:password@]host[:port][/db], unix:///path.
#include <fmt/format.h>

#include <string>
#include <string_view>

#include "flamestream/common/strings.h"
#include "flamestream/symbols/redis_cache.h"

namespace flamestream::symbols {
namespace {

Result<int> ParsePort(std::string_view s, std::string_view address) {
  auto port = common::ParseInt<int>(s);
  if (!port.ok() || *port < 1 || *port > 65535) {
    return InvalidArgument("redis address {}: bad port '{}'", address, s);
  }
  return *port;
}

// "redis://user:secret@h:1/0" -> "redis://***@h:1/0" (anything else unchanged).
std::string RedactUserinfo(std::string_view address) {
  const size_t scheme = address.find("://");
  if (scheme == std::string_view::npos) return std::string(address);
  const size_t host = scheme + 3;
  const size_t at = address.rfind('@', address.find('/', host));
  if (at == std::string_view::npos || at < host) return std::string(address);
  return std::string(address.substr(0, host)) + "***" + std::string(address.substr(at));
}

}  // namespace

Result<RedisAddress> ParseRedisAddress(std::string_view address) {
  RedisAddress a;
  std::string_view rest = address;
  const std::string shown = RedactUserinfo(address);  // errors never show a password
  if (rest.empty()) {
    return InvalidArgument("redis address is empty");
  }
  if (rest.starts_with("rediss://")) {
    // hiredis gained TLS (hiredis_ssl) in 1.0; Debian 12 ships 0.14.1.
    return Unimplemented(
        "redis address {}: TLS (rediss://) is not supported by this build's hiredis (0.14); "
        "connect through a local TLS tunnel (e.g. stunnel) with redis:// or unix://",
        shown);
  }
  if (rest.starts_with("unix://")) {
    rest.remove_prefix(7);
    if (!rest.starts_with('/')) {
      return InvalidArgument("redis address {}: unix:// needs an absolute path", shown);
    }
    a.host.clear();
    a.unix_path = std::string(rest);
    return a;
  }
  bool url = false;
  if (rest.starts_with("redis://")) {
    url = true;
    rest.remove_prefix(8);
    // [[user]:password@]host[:port][/db]
    if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
      std::string_view db = rest.substr(slash + 1);
      rest = rest.substr(0, slash);
      if (!db.empty()) {
        auto n = common::ParseInt<int>(db);
        if (!n.ok() || *n < 0) {
          return InvalidArgument("redis address {}: bad database '{}'", shown, db);
        }
        a.db = *n;
      }
    }
    if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
      std::string_view userinfo = rest.substr(0, at);
      rest = rest.substr(at + 1);
      // As redis-cli: "user:password", ":password", or just "password".
      if (size_t colon = userinfo.find(':'); colon != std::string_view::npos) {
        a.username = std::string(userinfo.substr(0, colon));
        a.password = std::string(userinfo.substr(colon + 1));
      } else {
        a.password = std::string(userinfo);
      }
    }
  } else if (rest.find("://") != std::string_view::npos) {
    return InvalidArgument("redis address {}: unknown scheme (use redis:// or unix://)", shown);
  }
  // host[:port], [v6]:port
  if (rest.starts_with('[')) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return InvalidArgument("redis address {}: unterminated '['", shown);
    }
    a.host = std::string(rest.substr(1, close - 1));
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) {
        return InvalidArgument("redis address {}: expected ':' after ']'", shown);
      }
      FS_ASSIGN_OR_RETURN(a.port, ParsePort(after.substr(1), shown));
    }
  } else {
    size_t colon = rest.find(':');
    if (colon != std::string_view::npos && rest.find(':', colon + 1) != std::string_view::npos) {
      return InvalidArgument("redis address {}: write IPv6 hosts as [addr]:port", shown);
    }
    a.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) {
      FS_ASSIGN_OR_RETURN(a.port, ParsePort(rest.substr(colon + 1), shown));
    }
  }
  if (a.host.empty()) {
    return InvalidArgument("redis address {}: no host{}", shown, url ? " in URL" : "");
  }
  return a;
}

}  // namespace flamestream::symbols
