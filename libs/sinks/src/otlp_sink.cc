#include "flamestream/sinks/otlp_sink.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>

#include "flamestream/common/strings.h"
#include "flamestream/log/log.h"
#include "flamestream/pprofutil/profile_io.h"
#include "flamestream/profile/pprof.h"
#include "http.h"
#include "opentelemetry/proto/collector/profiles/v1development/profiles_service.grpc.pb.h"
#include "rpc/status.pb.h"

namespace flamestream::sinks {
namespace {

namespace otlp = ::opentelemetry::proto::profiles::v1development;
namespace collector = ::opentelemetry::proto::collector::profiles::v1development;
namespace common_v1 = ::opentelemetry::proto::common::v1;

// Builds the request dictionary: index 0 of every table is the zero value (OTLP rule).
class DictBuilder {
 public:
  explicit DictBuilder(otlp::ProfilesDictionary* d) : d_(d) {
    d_->add_string_table("");
    d_->add_mapping_table();
    d_->add_location_table();
    d_->add_function_table();
    otlp::Link* zero = d_->add_link_table();
    zero->set_trace_id(std::string(16, '\0'));
    zero->set_span_id(std::string(8, '\0'));
    d_->add_attribute_table();
    d_->add_stack_table();
    strings_.emplace("", 0);
  }
  int32_t Str(std::string_view s) {
    auto [it, inserted] = strings_.try_emplace(std::string(s), d_->string_table_size());
    if (inserted) d_->add_string_table(std::string(s));
    return it->second;
  }
  int32_t StringAttr(std::string_view key, std::string_view value) {
    auto [it, inserted] =
        attrs_.try_emplace({std::string(key), std::string(value)}, d_->attribute_table_size());
    if (inserted) {
      otlp::KeyValueAndUnit* kv = d_->add_attribute_table();
      kv->set_key_strindex(Str(key));
      kv->mutable_value()->set_string_value(std::string(value));
    }
    return it->second;
  }
  otlp::ProfilesDictionary* d() { return d_; }

 private:
  otlp::ProfilesDictionary* d_;
  absl::flat_hash_map<std::string, int32_t> strings_;
  absl::flat_hash_map<std::pair<std::string, std::string>, int32_t> attrs_;
};

void SetAttr(::google::protobuf::RepeatedPtrField<common_v1::KeyValue>* attrs, std::string_view key,
             std::string_view value) {
  if (value.empty()) return;
  common_v1::KeyValue* kv = attrs->Add();
  kv->set_key(std::string(key));
  kv->mutable_value()->set_string_value(std::string(value));
}

// The server's RetryInfo.retry_delay, when its rich status (grpc-status-details-bin) has one.
std::optional<std::chrono::milliseconds> GrpcRetryDelay(const grpc::Status& st) {
  if (st.error_details().empty()) return std::nullopt;
  rpc::Status details;
  if (!details.ParseFromString(st.error_details())) return std::nullopt;
  for (const rpc::Any& any : details.details()) {
    if (!any.type_url().ends_with("/google.rpc.RetryInfo")) continue;
    rpc::RetryInfo info;
    if (!info.ParseFromString(any.value()) || !info.has_retry_delay()) continue;
    const auto delay = std::chrono::seconds(info.retry_delay().seconds()) +
                       std::chrono::nanoseconds(info.retry_delay().nanos());
    return std::chrono::ceil<std::chrono::milliseconds>(std::max(delay, delay.zero()));
  }
  return std::nullopt;
}

// OTLP/gRPC's retryable codes; RESOURCE_EXHAUSTED only when the server says recovery is
// possible by sending RetryInfo (otherwise retrying would only add load).
bool IsRetryableGrpc(grpc::StatusCode code, bool has_retry_info) {
  switch (code) {
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DATA_LOSS:
      return true;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return has_retry_info;
    default:
      return false;
  }
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument("otlp: cannot read {}", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Plaintext, or TLS with the configured roots and client identity. Skipping verification
// needs the experimental TLS credentials (SslCredentials always verifies).
Result<std::shared_ptr<grpc::ChannelCredentials>> GrpcCredentials(const TlsConfig& tls) {
  if (!tls.enabled) {
    if (!tls.ca_file.empty() || !tls.cert_file.empty()) {
      return InvalidArgument(
          "exporter.otlp.tls.* files are set but exporter.otlp.tls.enabled is false");
    }
    return grpc::InsecureChannelCredentials();
  }
  FS_RETURN_IF_ERROR(ValidateTls(tls, "exporter.otlp"));
  std::string ca, cert, key;
  if (!tls.ca_file.empty()) {
    FS_ASSIGN_OR_RETURN(ca, ReadFile(tls.ca_file));
  }
  if (!tls.cert_file.empty()) {
    FS_ASSIGN_OR_RETURN(cert, ReadFile(tls.cert_file));
    FS_ASSIGN_OR_RETURN(key, ReadFile(tls.key_file));
  }
  if (!tls.insecure_skip_verify) {
    grpc::SslCredentialsOptions opts;
    opts.pem_root_certs = ca;
    opts.pem_private_key = key;
    opts.pem_cert_chain = cert;
    return grpc::SslCredentials(opts);
  }
  namespace gx = grpc::experimental;
  gx::TlsChannelCredentialsOptions opts;
  std::vector<gx::IdentityKeyCertPair> identity;
  if (!cert.empty()) identity.push_back({.private_key = key, .certificate_chain = cert});
  if (!ca.empty() || !identity.empty()) {
    opts.set_certificate_provider(
        std::make_shared<gx::StaticDataCertificateProvider>(ca, identity));
    if (!ca.empty()) opts.watch_root_certs();
    if (!identity.empty()) opts.watch_identity_key_cert_pairs();
  }
  opts.set_verify_server_certs(false);
  opts.set_certificate_verifier(std::make_shared<gx::NoOpCertificateVerifier>());
  opts.set_check_call_host(false);
  std::shared_ptr<grpc::ChannelCredentials> creds = gx::TlsCredentials(opts);
  if (!creds) return InvalidArgument("exporter.otlp.tls: cannot build TLS credentials");
  return creds;
}

}  // namespace

collector::ExportProfilesServiceRequest BuildExportRequest(const profile::Window& window,
                                                           const OtlpConfig& config) {
  collector::ExportProfilesServiceRequest req;
  DictBuilder dict(req.mutable_dictionary());
  const profile::Dictionary& d = window.dict;

  // Window dictionary index -> request dictionary index, filled on first use (0 = none).
  std::vector<int32_t> mappings(d.mappings().size(), 0), functions(d.functions().size(), 0),
      locations(d.locations().size(), 0), stacks(d.stacks().size(), 0), links(d.spans().size(), 0);
  auto mapping_of = [&](uint32_t m) -> int32_t {
    if (m == 0) return 0;
    if (mappings[m] != 0) return mappings[m];
    const profile::Dictionary::Mapping& dm = d.mappings()[m];
    otlp::Mapping* out = dict.d()->add_mapping_table();
    out->set_filename_strindex(dict.Str(d.str(dm.filename)));
    if (dm.build_id != 0) {
      out->add_attribute_indices(
          dict.StringAttr("process.executable.build_id.gnu", d.str(dm.build_id)));
    }
    return mappings[m] = dict.d()->mapping_table_size() - 1;
  };
  auto function_of = [&](uint32_t f) -> int32_t {
    if (functions[f] != 0) return functions[f];
    const profile::Dictionary::Function& df = d.functions()[f];
    otlp::Function* out = dict.d()->add_function_table();
    out->set_name_strindex(dict.Str(d.str(df.name)));
    out->set_system_name_strindex(dict.Str(d.str(df.system_name != 0 ? df.system_name : df.name)));
    out->set_filename_strindex(dict.Str(d.str(df.filename)));
    return functions[f] = dict.d()->function_table_size() - 1;
  };
  auto location_of = [&](uint32_t l) -> int32_t {
    if (locations[l] != 0) return locations[l];
    const profile::Dictionary::Location& dl = d.locations()[l];
    const int32_t mapping = mapping_of(dl.mapping);
    otlp::Location* out = dict.d()->add_location_table();
    out->set_mapping_index(mapping);
    out->set_address(dl.address);
    for (const profile::Dictionary::Line& line : dl.lines) {
      otlp::Line* ol = out->add_lines();
      ol->set_function_index(function_of(line.function));
      ol->set_line(line.line);
      ol->set_column(line.column);
    }
    return locations[l] = dict.d()->location_table_size() - 1;
  };
  auto stack_of = [&](uint32_t s) -> int32_t {
    if (stacks[s] != 0) return stacks[s];
    std::vector<int32_t> locs;
    for (uint32_t l : d.stacks()[s]) locs.push_back(location_of(l));
    otlp::Stack* out = dict.d()->add_stack_table();
    for (int32_t l : locs) out->add_location_indices(l);
    return stacks[s] = dict.d()->stack_table_size() - 1;
  };
  auto link_of = [&](uint32_t s) -> int32_t {
    if (s == 0) return 0;
    if (links[s] != 0) return links[s];
    const profile::Dictionary::Span& span = d.spans()[s];
    if (span.trace_id.size() != 16 || span.span_id.size() != 8) return 0;
    otlp::Link* out = dict.d()->add_link_table();
    out->set_trace_id(span.trace_id);
    out->set_span_id(span.span_id);
    return links[s] = dict.d()->link_table_size() - 1;
  };

  // Group the window's samples by series, sorted for deterministic requests.
  std::vector<std::vector<std::pair<profile::SampleKey, profile::SampleValue>>> by_series(
      window.series.size());
  for (const auto& [k, v] : window.samples) by_series[k.series].emplace_back(k, v);

  const int32_t samples_str = dict.Str("samples");
  const int32_t count_str = dict.Str("count");
  const int32_t cpu_str = dict.Str("cpu");
  const int32_t off_cpu_str = dict.Str("off_cpu");
  const int32_t ns_str = dict.Str("nanoseconds");
  for (uint32_t s = 0; s < window.series.size(); ++s) {
    auto& rows = by_series[s];
    if (rows.empty()) continue;
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      return std::tie(a.first.stack, a.first.span, a.first.thread_name) <
             std::tie(b.first.stack, b.first.span, b.first.thread_name);
    });
    const profile::SeriesInfo& info = window.series[s];
    otlp::ResourceProfiles* rp = req.add_resource_profiles();
    auto* attrs = rp->mutable_resource()->mutable_attributes();
    SetAttr(attrs, "service.name", info.key.service);
    SetAttr(attrs, "host.name", info.key.host);
    SetAttr(attrs, "k8s.node.name", info.key.host);
    SetAttr(attrs, "k8s.cluster.name", info.key.cluster);
    SetAttr(attrs, "container.id", info.key.container_id);
    SetAttr(attrs, "k8s.pod.uid", info.key.pod_uid);
    if (!info.exe.empty()) {
      SetAttr(attrs, "process.executable.name", info.exe.substr(info.exe.rfind('/') + 1));
    }
    for (const auto& [k, v] : config.resource_attributes) SetAttr(attrs, k, v);
    otlp::ScopeProfiles* sp = rp->add_scope_profiles();
    sp->mutable_scope()->set_name("flamestream");
    otlp::Profile* prof = sp->add_profiles();
    // CPU: sample counts of a cpu/nanoseconds period. Off-CPU: nanoseconds blocked, measured.
    const bool off_cpu = info.key.profile == v1::PROFILE_TYPE_OFF_CPU;
    prof->mutable_sample_type()->set_type_strindex(off_cpu ? off_cpu_str : samples_str);
    prof->mutable_sample_type()->set_unit_strindex(off_cpu ? ns_str : count_str);
    prof->mutable_period_type()->set_type_strindex(off_cpu ? off_cpu_str : cpu_str);
    prof->mutable_period_type()->set_unit_strindex(ns_str);
    prof->set_period(off_cpu ? 1 : window.period_ns);
    prof->set_time_unix_nano(static_cast<uint64_t>(window.start_ns));
    prof->set_duration_nano(static_cast<uint64_t>(window.duration_ns));
    for (const auto& [k, v] : rows) {
      otlp::Sample* out = prof->add_samples();
      out->set_stack_index(stack_of(k.stack));
      out->add_values(off_cpu ? v.nanos : v.count);
      if (k.span != 0) {
        out->set_link_index(link_of(k.span));
        const std::string& span_name = d.str(d.spans()[k.span].name);
        if (!span_name.empty()) out->add_attribute_indices(dict.StringAttr("span_name", span_name));
      }
      if (k.thread_name != 0) {
        out->add_attribute_indices(dict.StringAttr("thread.name", d.str(k.thread_name)));
      }
    }
  }
  return req;
}

struct OtlpSink::Grpc {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<collector::ProfilesService::Stub> stub;
};

OtlpSink::OtlpSink(OtlpConfig config) : config_(std::move(config)) {}
OtlpSink::~OtlpSink() = default;

Status OtlpSink::Start() {
  if (config_.protocol == "grpc") {
    if (grpc_) return OkStatus();
    FS_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds,
                        GrpcCredentials(config_.tls));
    grpc_ = std::make_unique<Grpc>();
    grpc_->channel = grpc::CreateChannel(config_.endpoint, creds);
    grpc_->stub = collector::ProfilesService::NewStub(grpc_->channel);
    return OkStatus();
  }
  if (config_.protocol == "http") {
    if (http_) return OkStatus();
    FS_ASSIGN_OR_RETURN(http_, internal::HttpPoster::Create({.url = config_.endpoint,
                                                             .headers = config_.headers,
                                                             .tls = config_.tls,
                                                             .timeout = config_.timeout},
                                                            "exporter.otlp"));
    return OkStatus();
  }
  return InvalidArgument("otlp: protocol must be grpc or http, not {}", config_.protocol);
}

Status OtlpSink::Export(const profile::Window& window) {
  last_response_ = {};
  const collector::ExportProfilesServiceRequest req = BuildExportRequest(window, config_);
  if (req.resource_profiles_size() == 0) return OkStatus();
  FS_RETURN_IF_ERROR(Start());
  collector::ExportProfilesServiceResponse resp;
  if (config_.protocol == "grpc") {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + config_.timeout);
    for (const auto& [k, v] : config_.headers) ctx.AddMetadata(common::ToLower(k), v);
    const grpc::Status st = grpc_->stub->Export(&ctx, req, &resp);
    if (!st.ok()) {
      last_response_ = {.status = static_cast<int>(st.error_code()),
                        .body = st.error_message().substr(0, Response::kMaxBody),
                        .retry_after = GrpcRetryDelay(st)};
      const std::string msg = fmt::format("otlp grpc {}: code {}: {}", config_.endpoint,
                                          static_cast<int>(st.error_code()), st.error_message());
      return IsRetryableGrpc(st.error_code(), last_response_.retry_after.has_value())
                 ? Unavailable("{}", msg)
                 : FailedPrecondition("{}", msg);
    }
  } else {
    std::string body;
    if (!req.SerializeToString(&body)) return InternalError("otlp: serialize request");
    std::map<std::string, std::string> headers;
    if (config_.gzip) {
      FS_ASSIGN_OR_RETURN(body, pprofutil::Gzip(body));
      headers["Content-Encoding"] = "gzip";
    }
    FS_RETURN_IF_ERROR(http_->Post("/v1development/profiles", body, "application/x-protobuf",
                                   headers, &last_response_));
  }
  if (resp.has_partial_success() && resp.partial_success().rejected_profiles() > 0) {
    // Per the OTLP spec a partial success must not be retried.
    log::Warn("otlp: receiver rejected profiles",
              {{"rejected", static_cast<long long>(resp.partial_success().rejected_profiles())},
               {"message", resp.partial_success().error_message()}});
  }
  return OkStatus();
}

}  // namespace flamestream::sinks
