// OTLP profiles sink: ExportProfilesServiceRequest (v1development) over gRPC or HTTP.
//
//   sinks::OtlpSink sink({.protocol = "grpc", .endpoint = "collector:4317"});
//   sinks::OtlpSink http({.protocol = "http", .endpoint = "https://collector:4318",
//                         .headers = {{"authorization", "Bearer x"}}});
//   Status st = sink.Export(window);
//
// One request per window: one ResourceProfiles per series (resource attributes service.name,
// host.name, k8s.cluster.name, container.id, k8s.pod.uid, process.executable.name and the
// configured ones), each with one Profile of sample type samples/count and period type
// cpu/nanoseconds (no second CPU-time profile a receiver could add twice). All profiles share
// the request's dictionary, whose every table starts with its zero entry. Samples in a span
// carry a Link (trace_id, span_id) and span_name / thread.name attributes; mappings carry
// process.executable.build_id.gnu. gRPC: /opentelemetry.proto.collector.profiles.
// v1development.ProfilesService/Export; HTTP: POST <endpoint>/v1development/profiles,
// application/x-protobuf (optionally gzip). HTTP answers' Retry-After and gRPC RetryInfo
// (in the rich status) are honoured (DeliveryQueue); RESOURCE_EXHAUSTED is retried only with
// RetryInfo, as OTLP asks.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "flamestream/common/status.h"
#include "flamestream/sinks/sink.h"
#include "opentelemetry/proto/collector/profiles/v1development/profiles_service.pb.h"

namespace flamestream::sinks::internal {
class HttpPoster;
}

namespace flamestream::sinks {

struct OtlpConfig {
  // "grpc" or "http".
  std::string protocol = "grpc";
  // gRPC: host:port (4317). HTTP: http(s)://host:port[/prefix] (4318).
  std::string endpoint = "localhost:4317";
  // Request headers / gRPC metadata (keys lower case for gRPC).
  std::map<std::string, std::string> headers;
  // TLS: gRPC when tls.enabled (system roots or tls.ca_file), HTTP when the endpoint is
  // https://; client certificate + key for mTLS; insecure_skip_verify for dev.
  TlsConfig tls;
  // HTTP: gzip the body (Content-Encoding: gzip).
  bool gzip = false;
  std::chrono::milliseconds timeout{10'000};
  // Extra resource attributes for every profile.
  std::map<std::string, std::string> resource_attributes;
};

class OtlpSink : public Sink {
 public:
  explicit OtlpSink(OtlpConfig config);
  ~OtlpSink() override;
  [[nodiscard]] std::string_view name() const override { return "otlp"; }
  [[nodiscard]] profile::LabelPolicy labels() const override { return profile::LabelPolicy::Full(); }
  [[nodiscard]] profile::SeriesGranularity granularity() const override {
    return profile::SeriesGranularity::kServiceHost;
  }
  Status Export(const profile::Window& window) override;
  Status Start() override;
  [[nodiscard]] Response last_response() const override { return last_response_; }

 private:
  struct Grpc;
  OtlpConfig config_;
  Response last_response_;
  std::unique_ptr<Grpc> grpc_;
  std::unique_ptr<internal::HttpPoster> http_;
};

// The request for a window (exposed for tests and the DLQ payload).
opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest
BuildExportRequest(const profile::Window& window, const OtlpConfig& config);

}  // namespace flamestream::sinks
