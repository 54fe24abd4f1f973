// Reads a merged profile back from Pyroscope (or Phlare, Grafana Cloud Profiles), so
// `flamestream top|diff|folded` take a Pyroscope URL wherever they take a pprof file:
//
//   flamestream top 'http://pyroscope:4040/?query=process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="shop"}&from=now-1h&until=now'
//   flamestream diff http://pyroscope:4040/?from=now-2h&until=now-1h http://pyroscope:4040/?from=now-1h
//
// The URL is the one Pyroscope's UI shows: `query` is "<profile type>{selector}" (either part
// may be left out), `from`/`until` are "now", "now-1h", Unix seconds or milliseconds (default:
// the last hour). user:password@ in the URL is sent as basic auth, `tenant` as X-Scope-OrgID.
// The call is querier.v1.QuerierService/SelectMergeProfile over Connect; the reply is pprof.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "flamestream/common/status.h"
#include "pprof/profile.pb.h"

namespace flamestream::cli {

inline constexpr std::string_view kDefaultProfileType =
    "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

struct PyroscopeQuery {
  std::string base_url;  // scheme://host[:port][/prefix], no trailing slash
  std::string user, password;
  std::string profile_type{kDefaultProfileType};
  std::map<std::string, std::string> matchers;  // label -> value (equality)
  std::string selector_rest;                    // matchers we pass through verbatim (=~, !=)
  int64_t start_ms = 0;
  int64_t end_ms = 0;
};

// True for inputs that name a Pyroscope server rather than a file.
bool IsPyroscopeUrl(std::string_view input);

// Parses the URL; `now_ns` anchors "now" and relative times. Errors name the bad part.
Result<PyroscopeQuery> ParsePyroscopeUrl(std::string_view url, int64_t now_ns);

// The selector sent: {a="x",b="y",<rest>}.
std::string Selector(const PyroscopeQuery& q);

// POSTs SelectMergeProfile and decodes the pprof reply. A non-200 answer becomes an error
// carrying the server's message.
Result<perftools::profiles::Profile> FetchMergedProfile(const PyroscopeQuery& q,
                                                        const std::string& tenant);

}  // namespace flamestream::cli
