// Pyroscope (and Phlare, same API) sink: push.v1.PusherService/Push over the Connect protocol.
//
//   sinks::PyroscopeSink sink({.url = "https://pyroscope.example:4040", .tenant = "team-a",
//                              .bearer_token = token, .labels = {{"env", "prod"}}});
//   Status st = sink.Export(window);   // one or more POSTs, several series per request
//
// Each series of the window becomes one RawProfileSeries with labels __name__=process_cpu,
// service_name, __delta__=false, cluster / node / container_id / k8s_pod_uid (when set) and the
// configured ones, carrying one RawSample whose raw_profile is a gzip pprof. Sample labels are
// span_id (and span_name when enabled) only: Pyroscope makes a series per label set.
// Requests: POST <url>/push.v1.PusherService/Push, Content-Type application/proto,
// Connect-Protocol-Version 1, X-Scope-OrgID when a tenant is set, basic auth or bearer token,
// TLS with a CA file and client certificates. A 503/429 with Retry-After is retried no sooner
// than asked (see DeliveryQueue).
//
// Label values come sanitized from the aggregator (profile/labels.h); the configured labels are
// sanitized here once (names to [a-zA-Z_][a-zA-Z0-9_]*, values like series values, names of
// built-in labels dropped) and capped so that a series carries at most `label_limits.max_labels`
// labels, the built-in ones first (the configured ones sorted by name fill the rest).
// A request refused for good (a 4xx) is split: each of its series is pushed alone, so one bad
// series fails only itself (failed_series()); the others are delivered.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/sinks/sink.h"
#include "pyroscope/push/v1/push.pb.h"

namespace flamestream::sinks::internal {
class HttpPoster;
}

namespace flamestream::sinks {

struct PyroscopeConfig {
  // Base URL, http:// or https://, optionally with a path prefix.
  std::string url = "http://localhost:4040";
  // X-Scope-OrgID; empty = header not sent (single-tenant Pyroscope).
  std::string tenant;
  // Basic auth (when user is set) or bearer token (when set); at most one.
  std::string basic_user;
  std::string basic_password;
  std::string bearer_token;
  // Extra series labels, e.g. env=prod.
  std::map<std::string, std::string> labels;
  // Also send span_name as a sample label (watch cardinality).
  bool span_name = false;
  // TLS (https:// URLs): CA file, client certificate + key (mTLS), skip-verify for dev.
  TlsConfig tls;
  std::chrono::milliseconds timeout{10'000};
  // Series per Push request.
  int max_series_per_request = 64;
  // Caps of the configured labels (value length, labels per series).
  profile::LabelLimits label_limits;
};

class PyroscopeSink : public Sink {
 public:
  explicit PyroscopeSink(PyroscopeConfig config);
  ~PyroscopeSink() override;
  [[nodiscard]] std::string_view name() const override { return "pyroscope"; }
  [[nodiscard]] profile::LabelPolicy labels() const override {
    return profile::LabelPolicy::Pyroscope(config_.span_name);
  }
  [[nodiscard]] profile::SeriesGranularity granularity() const override {
    return profile::SeriesGranularity::kServiceHost;
  }
  Status Export(const profile::Window& window) override;
  Status Start() override;
  [[nodiscard]] Response last_response() const override { return last_response_; }
  [[nodiscard]] std::vector<SeriesFailure> failed_series() const override { return failed_; }
  [[nodiscard]] std::vector<SinkCounter> Counters() const override;

 private:
  Status Push(const push::v1::PushRequest& request, const std::map<std::string, std::string>& headers);

  PyroscopeConfig config_;  // labels sanitized and capped
  profile::LabelSanitizer label_changes_;
  Response last_response_;
  std::unique_ptr<internal::HttpPoster> poster_;
  // Series of the window being retried that were already acknowledged (or refused for good),
  // so a retry after a partial failure resumes instead of pushing (and counting) them twice.
  int64_t progress_window_ = INT64_MIN;
  std::vector<bool> progress_acked_;
  std::vector<SeriesFailure> refused_;
  std::vector<SeriesFailure> failed_;
};

// The configured labels as they are sent: names and values sanitized, built-in names removed,
// at most max_labels minus the built-in labels (sorted by name). What changed is counted in
// *changes when not null.
std::map<std::string, std::string> SanitizedExtraLabels(const PyroscopeConfig& config,
                                                        profile::LabelSanitizer* changes = nullptr);

// The Push requests for a window (exposed for tests and the DLQ payload): every series, or
// only `series` (indices into window.series) when given.
Result<std::vector<push::v1::PushRequest>> BuildPushRequests(
    const profile::Window& window, const PyroscopeConfig& config,
    const std::vector<uint32_t>* series = nullptr);

}  // namespace flamestream::sinks
