#include "flamestream/sinks/pyroscope_sink.h"

#include <algorithm>

#include "flamestream/profile/pprof.h"
#include "http.h"

namespace flamestream::sinks {

PyroscopeSink::PyroscopeSink(PyroscopeConfig config) : config_(std::move(config)) {}
PyroscopeSink::~PyroscopeSink() = default;

Result<std::vector<push::v1::PushRequest>> BuildPushRequests(const profile::Window& window,
                                                             const PyroscopeConfig& config) {
  std::vector<push::v1::PushRequest> out;
  const int per_request = std::max(1, config.max_series_per_request);
  const profile::LabelPolicy policy = profile::LabelPolicy::Pyroscope(config.span_name);
  for (uint32_t s = 0; s < window.series.size(); ++s) {
    const profile::SeriesKey& key = window.series[s].key;
    if (out.empty() || out.back().series_size() >= per_request) out.emplace_back();
    push::v1::RawProfileSeries* series = out.back().add_series();
    std::map<std::string, std::string> labels = config.labels;
    labels["__name__"] = "process_cpu";
    labels["__delta__"] = "false";
    labels["service_name"] = key.service;
    if (!key.cluster.empty()) labels["cluster"] = key.cluster;
    if (!key.host.empty()) labels["node"] = key.host;
    if (!key.container_id.empty()) labels["container_id"] = key.container_id;
    if (!key.pod_uid.empty()) labels["k8s_pod_uid"] = key.pod_uid;
    for (const auto& [name, value] : labels) {  // std::map: sorted by name
      types::v1::LabelPair* l = series->add_labels();
      l->set_name(name);
      l->set_value(value);
    }
    perftools::profiles::Profile p = profile::EncodePprof(window, {s}, {.labels = policy});
    FS_ASSIGN_OR_RETURN(std::string gz, profile::GzipPprof(p));
    series->add_samples()->set_raw_profile(std::move(gz));
  }
  return out;
}

Status PyroscopeSink::Start() {
  if (poster_) return OkStatus();
  FS_ASSIGN_OR_RETURN(poster_, internal::HttpPoster::Create({.url = config_.url,
                                                             .basic_user = config_.basic_user,
                                                             .basic_password = config_.basic_password,
                                                             .bearer_token = config_.bearer_token,
                                                             .tls = config_.tls,
                                                             .timeout = config_.timeout},
                                                            "exporter.pyroscope"));
  return OkStatus();
}

Status PyroscopeSink::Export(const profile::Window& window) {
  last_response_ = {};
  FS_ASSIGN_OR_RETURN(std::vector<push::v1::PushRequest> requests,
                      BuildPushRequests(window, config_));
  FS_RETURN_IF_ERROR(Start());
  std::map<std::string, std::string> headers = {{"Connect-Protocol-Version", "1"}};
  if (!config_.tenant.empty()) headers["X-Scope-OrgID"] = config_.tenant;
  if (progress_window_ != window.start_ns) {
    progress_window_ = window.start_ns;
    progress_done_ = 0;
  }
  for (size_t i = progress_done_; i < requests.size(); ++i) {
    std::string body;
    if (!requests[i].SerializeToString(&body)) return InternalError("pyroscope: serialize PushRequest");
    FS_RETURN_IF_ERROR(poster_->Post("/push.v1.PusherService/Push", body, "application/proto",
                                     headers, &last_response_));
    progress_done_ = i + 1;
  }
  progress_window_ = INT64_MIN;
  return OkStatus();
}

}  // namespace flamestream::sinks
