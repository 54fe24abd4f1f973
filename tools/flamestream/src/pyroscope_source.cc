#include "pyroscope_source.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include <fmt/format.h>

#include "flamestream/common/strings.h"
#include "flamestream/common/units.h"
#include "flamestream/pprofutil/profile_io.h"
#include "pyroscope/querier/v1/querier.pb.h"

namespace flamestream::cli {
namespace {

constexpr std::string_view kSelectMergeProfile = "/querier.v1.QuerierService/SelectMergeProfile";
constexpr int64_t kNsPerMs = 1'000'000;

Result<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) {
        return InvalidArgument("truncated %-escape in \"{}\"", s);
      }
      Result<std::string> byte = common::HexDecode(s.substr(i + 1, 2));
      if (!byte.ok()) return InvalidArgument("bad %-escape \"{}\"", s.substr(i, 3));
      out += *byte;
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// "now", "now-1h", Unix seconds/milliseconds (as Pyroscope's UI writes them), or any form
// common::ParseTimestampNs takes.
Result<int64_t> ParseTime(std::string_view text, int64_t now_ns) {
  std::string t(text);
  if (t.starts_with("now-")) t = t.substr(3);  // "now-1h" -> "-1h"
  FS_ASSIGN_OR_RETURN(int64_t ns, common::ParseTimestampNs(t, now_ns));
  return ns / kNsPerMs;
}

// Splits "a=\"x\", b=~\"y\"" on commas outside quotes.
Result<std::vector<std::string>> SplitMatchers(std::string_view body) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (quoted && c == '\\' && i + 1 < body.size()) {
      cur += c;
      cur += body[++i];
      continue;
    }
    if (c == '"') quoted = !quoted;
    if (c == ',' && !quoted) {
      out.emplace_back(common::Trim(cur));
      cur.clear();
      continue;
    }
    cur += c;
  }
  if (quoted) return InvalidArgument("unterminated quote in selector {{{}}}", body);
  if (!common::Trim(cur).empty()) out.emplace_back(common::Trim(cur));
  return out;
}

Status ParseSelector(std::string_view query, PyroscopeQuery& q) {
  const size_t brace = query.find('{');
  const std::string_view type = common::Trim(query.substr(0, brace));
  if (!type.empty()) {
    if (std::count(type.begin(), type.end(), ':') != 4) {
      return InvalidArgument(
          "query: profile type \"{}\" is not <name>:<type>:<unit>:<period type>:<period unit>",
          type);
    }
    q.profile_type = std::string(type);
  }
  if (brace == std::string_view::npos) return OkStatus();
  if (query.back() != '}') return InvalidArgument("query: selector must end with '}}'");
  FS_ASSIGN_OR_RETURN(std::vector<std::string> items,
                      SplitMatchers(query.substr(brace + 1, query.size() - brace - 2)));
  std::vector<std::string> rest;
  for (const std::string& item : items) {
    const size_t op = item.find_first_of("=!");
    if (op == std::string::npos || op == 0) {
      return InvalidArgument("query: \"{}\" is not a label matcher (label=\"value\")", item);
    }
    const bool equality = item[op] == '=' && item.size() > op + 1 && item[op + 1] == '"';
    if (!equality) {
      rest.push_back(item);  // =~, !=, !~ go through as written
      continue;
    }
    std::string value = item.substr(op + 1);
    if (value.size() < 2 || value.back() != '"') {
      return InvalidArgument("query: \"{}\": value must be quoted", item);
    }
    value = common::ReplaceAll(value.substr(1, value.size() - 2), "\\\"", "\"");
    q.matchers[std::string(common::Trim(item.substr(0, op)))] = common::ReplaceAll(value, "\\\\", "\\");
  }
  q.selector_rest = common::Join(rest, ",");
  return OkStatus();
}

std::string Quote(const std::string& v) {
  return "\"" + common::ReplaceAll(common::ReplaceAll(v, "\\", "\\\\"), "\"", "\\\"") + "\"";
}

}  // namespace

bool IsPyroscopeUrl(std::string_view input) {
  return input.starts_with("http://") || input.starts_with("https://");
}

Result<PyroscopeQuery> ParsePyroscopeUrl(std::string_view url, int64_t now_ns) {
  if (!IsPyroscopeUrl(url)) return InvalidArgument("{}: not an http:// or https:// URL", url);
  PyroscopeQuery q;
  const size_t scheme_end = url.find("://") + 3;
  const size_t qmark = url.find('?');
  std::string_view base = url.substr(0, qmark);
  std::string_view params = qmark == std::string_view::npos ? "" : url.substr(qmark + 1);
  if (const size_t frag = params.find('#'); frag != std::string_view::npos) {
    params = params.substr(0, frag);
  }
  // user:password@host
  const size_t path_start = base.find('/', scheme_end);
  std::string_view authority = base.substr(scheme_end, path_start - scheme_end);
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    const size_t colon = userinfo.find(':');
    FS_ASSIGN_OR_RETURN(q.user, PercentDecode(userinfo.substr(0, colon)));
    if (colon != std::string_view::npos) {
      FS_ASSIGN_OR_RETURN(q.password, PercentDecode(userinfo.substr(colon + 1)));
    }
    authority = authority.substr(at + 1);
  }
  if (authority.empty()) return InvalidArgument("{}: no host", url);
  std::string prefix =
      path_start == std::string_view::npos ? "" : std::string(base.substr(path_start));
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  q.base_url = std::string(url.substr(0, scheme_end)) + std::string(authority) + prefix;

  std::string from = "now-1h", until = "now";
  for (const std::string& kv : common::SplitNonEmpty(params, '&')) {
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq);
    FS_ASSIGN_OR_RETURN(std::string value,
                        PercentDecode(eq == std::string::npos ? "" : kv.substr(eq + 1)));
    if (key == "query") {
      if (Status s = ParseSelector(value, q); !s.ok()) return s.WithContext(std::string(url));
    } else if (key == "from") {
      from = value;
    } else if (key == "until" || key == "to") {
      until = value;
    }  // other UI parameters (groupBy, maxNodes, ...) do not change the merged profile
  }
  Result<int64_t> start = ParseTime(from, now_ns);
  if (!start.ok()) return InvalidArgument("{}: from={}: {}", url, from, start.error().message());
  Result<int64_t> end = ParseTime(until, now_ns);
  if (!end.ok()) return InvalidArgument("{}: until={}: {}", url, until, end.error().message());
  if (*end <= *start) return InvalidArgument("{}: until={} is not after from={}", url, until, from);
  q.start_ms = *start;
  q.end_ms = *end;
  return q;
}

std::string Selector(const PyroscopeQuery& q) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : q.matchers) parts.push_back(k + "=" + Quote(v));
  if (!q.selector_rest.empty()) parts.push_back(q.selector_rest);
  return "{" + common::Join(parts, ",") + "}";
}

Result<perftools::profiles::Profile> FetchMergedProfile(const PyroscopeQuery& q,
                                                        const std::string& tenant) {
  const size_t path_start = q.base_url.find('/', q.base_url.find("://") + 3);
  const std::string host = q.base_url.substr(0, path_start);
  const std::string path =
      (path_start == std::string::npos ? "" : q.base_url.substr(path_start)) +
      std::string(kSelectMergeProfile);

  querier::v1::SelectMergeProfileRequest req;
  req.set_profile_type_id(q.profile_type);
  req.set_label_selector(Selector(q));
  req.set_start(q.start_ms);
  req.set_end(q.end_ms);

  httplib::Client client(host);
  if (!client.is_valid()) return InvalidArgument("{}: cannot build an HTTP client", q.base_url);
  client.set_connection_timeout(10, 0);
  client.set_read_timeout(60, 0);
  if (!q.user.empty()) client.set_basic_auth(q.user, q.password);
  httplib::Headers headers = {{"Connect-Protocol-Version", "1"}};
  if (!tenant.empty()) headers.emplace("X-Scope-OrgID", tenant);
  const std::string body = req.SerializeAsString();
  httplib::Result res = client.Post(path, headers, body, "application/proto");
  if (!res) {
    return Unavailable("POST {}{}: {}", host, path, httplib::to_string(res.error()));
  }
  if (res->status != 200) {
    // Connect errors are JSON {"code": "...", "message": "..."}; show them as they came.
    std::string reason = std::string(common::Trim(res->body));
    if (reason.size() > 500) reason = reason.substr(0, 500) + "...";
    return InvalidArgument("POST {}{}: HTTP {}: {}", host, path, res->status, reason);
  }
  Result<perftools::profiles::Profile> profile = pprofutil::ParseProfile(res->body);
  if (!profile.ok()) {
    return DataLoss("{}: the reply is not a pprof profile: {}", q.base_url,
                    profile.error().message());
  }
  return profile;
}

}  // namespace flamestream::cli
