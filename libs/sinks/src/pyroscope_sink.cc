#include "flamestream/sinks/pyroscope_sink.h"

#include <algorithm>
#include <array>

#include "flamestream/log/log.h"
#include "flamestream/profile/pprof.h"
#include "http.h"

namespace flamestream::sinks {
namespace {

// Labels every series may carry besides the configured ones.
constexpr std::array<std::string_view, 7> kBuiltinLabels = {
    "__name__", "__delta__", "service_name", "cluster", "node", "container_id", "k8s_pod_uid"};

}  // namespace

std::map<std::string, std::string> SanitizedExtraLabels(const PyroscopeConfig& config,
                                                        profile::LabelSanitizer* changes) {
  const profile::LabelSanitizer sanitizer(config.label_limits);
  std::map<std::string, std::string> out;
  for (const auto& [name, value] : config.labels) {
    uint32_t why = 0;
    std::string n = sanitizer.Name(name, &why);
    std::string v = sanitizer.Value(value, &why);
    if (std::find(kBuiltinLabels.begin(), kBuiltinLabels.end(), n) != kBuiltinLabels.end() ||
        out.contains(n)) {
      // Would replace a label we set (or another configured one after cleaning): dropped.
      why |= 1u << static_cast<uint32_t>(profile::LabelReason::kName);
      if (changes != nullptr) changes->Count(why);
      continue;
    }
    if (changes != nullptr && why != 0) changes->Count(why);
    out.emplace(std::move(n), std::move(v));
  }
  const size_t max = config.label_limits.max_labels;
  if (max > 0) {
    const size_t room = max > kBuiltinLabels.size() ? max - kBuiltinLabels.size() : 0;
    while (out.size() > room) {
      out.erase(std::prev(out.end()));
      if (changes != nullptr) changes->Count(profile::LabelReason::kTooMany);
    }
  }
  return out;
}

PyroscopeSink::PyroscopeSink(PyroscopeConfig config) : config_(std::move(config)) {
  config_.labels = SanitizedExtraLabels(config_, &label_changes_);
}
PyroscopeSink::~PyroscopeSink() = default;

Result<std::vector<push::v1::PushRequest>> BuildPushRequests(const profile::Window& window,
                                                             const PyroscopeConfig& config,
                                                             const std::vector<uint32_t>* only) {
  std::vector<push::v1::PushRequest> out;
  const int per_request = std::max(1, config.max_series_per_request);
  const profile::LabelPolicy policy = profile::LabelPolicy::Pyroscope(config.span_name);
  const std::map<std::string, std::string> extra = SanitizedExtraLabels(config);
  std::vector<uint32_t> all;
  if (only == nullptr) {
    for (uint32_t s = 0; s < window.series.size(); ++s) all.push_back(s);
    only = &all;
  }
  for (const uint32_t s : *only) {
    const profile::SeriesKey& key = window.series[s].key;
    if (out.empty() || out.back().series_size() >= per_request) out.emplace_back();
    push::v1::RawProfileSeries* series = out.back().add_series();
    std::map<std::string, std::string> labels = extra;
    labels["__name__"] = std::string(profile::NamesOf(key.profile).pyroscope);
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
  FS_ASSIGN_OR_RETURN(poster_,
                      internal::HttpPoster::Create({.url = config_.url,
                                                    .basic_user = config_.basic_user,
                                                    .basic_password = config_.basic_password,
                                                    .bearer_token = config_.bearer_token,
                                                    .tls = config_.tls,
                                                    .timeout = config_.timeout},
                                                   "exporter.pyroscope"));
  return OkStatus();
}

std::vector<SinkCounter> PyroscopeSink::Counters() const {
  std::vector<SinkCounter> out;
  for (size_t r = 0; r < profile::kLabelReasons; ++r) {
    const auto reason = static_cast<profile::LabelReason>(r);
    out.push_back({.name = "fs_exporter_labels_sanitized_total",
                   .help = "series labels changed by sanitizing, by reason",
                   .labels = {{"reason", std::string(profile::LabelReasonName(reason))}},
                   .value = label_changes_.count(reason)});
  }
  return out;
}

Status PyroscopeSink::Push(const push::v1::PushRequest& request,
                           const std::map<std::string, std::string>& headers) {
  std::string body;
  if (!request.SerializeToString(&body)) return InternalError("pyroscope: serialize PushRequest");
  last_response_ = {};
  return poster_->Post("/push.v1.PusherService/Push", body, "application/proto", headers,
                       &last_response_);
}

Status PyroscopeSink::Export(const profile::Window& window) {
  last_response_ = {};
  failed_.clear();
  FS_RETURN_IF_ERROR(Start());
  std::map<std::string, std::string> headers = {{"Connect-Protocol-Version", "1"}};
  if (!config_.tenant.empty()) headers["X-Scope-OrgID"] = config_.tenant;
  if (progress_window_ != window.start_ns) {
    progress_window_ = window.start_ns;
    progress_acked_.assign(window.series.size(), false);
    refused_.clear();
  }
  auto refused = [&](uint32_t s) {
    for (const SeriesFailure& f : refused_) {
      if (std::find(f.series.begin(), f.series.end(), s) != f.series.end()) return true;
    }
    return false;
  };
  std::vector<uint32_t> todo;
  for (uint32_t s = 0; s < window.series.size(); ++s) {
    if (!progress_acked_[s] && !refused(s)) todo.push_back(s);
  }
  FS_ASSIGN_OR_RETURN(std::vector<push::v1::PushRequest> requests,
                      BuildPushRequests(window, config_, &todo));
  size_t next = 0;  // index into todo of the first series of requests[i]
  for (const push::v1::PushRequest& request : requests) {
    const std::vector<uint32_t> series(
        todo.begin() + static_cast<ptrdiff_t>(next),
        todo.begin() + static_cast<ptrdiff_t>(next) + request.series_size());
    next += series.size();
    Status st = Push(request, headers);
    if (st.ok()) {
      for (uint32_t s : series) progress_acked_[s] = true;
      continue;
    }
    if (IsRetryable(st)) return st;  // resumes with the series not yet acknowledged
    if (series.size() == 1) {
      refused_.push_back({.series = series, .status = std::move(st), .response = last_response_});
      continue;
    }
    // Refused for good: find out which series, pushing each alone.
    for (size_t k = 0; k < series.size(); ++k) {
      const uint32_t s = series[k];
      push::v1::PushRequest single;
      *single.add_series() = request.series(static_cast<int>(k));
      Status one = Push(single, headers);
      if (one.ok()) {
        progress_acked_[s] = true;
      } else if (IsRetryable(one)) {
        return one;
      } else {
        refused_.push_back({.series = {s}, .status = std::move(one), .response = last_response_});
      }
    }
  }
  progress_window_ = INT64_MIN;
  const bool any_acked =
      std::find(progress_acked_.begin(), progress_acked_.end(), true) != progress_acked_.end();
  if (!refused_.empty()) {
    log::Warn("pyroscope: series refused for good",
              {{"window_start", static_cast<long long>(window.start_ns)},
               {"refused", static_cast<unsigned long>(refused_.size())},
               {"delivered", static_cast<unsigned long>(
                                 std::count(progress_acked_.begin(), progress_acked_.end(), true))},
               {"error", refused_.front().status}});
  }
  if (!refused_.empty() && !any_acked) {
    // Nothing of the window was accepted: it fails as a whole.
    last_response_ = refused_.front().response;
    Status st = refused_.front().status;
    refused_.clear();
    return st;
  }
  failed_ = std::move(refused_);
  refused_.clear();
  return OkStatus();
}

}  // namespace flamestream::sinks
