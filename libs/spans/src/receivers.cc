#include "flamestream/spans/receivers.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "counters.h"
#include "flamestream/common/strings.h"
#include "flamestream/config/config.h"
#include "flamestream/log/log.h"
#include "flamestream/obs/admin_server.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"

namespace flamestream::spans {
namespace {

using opentelemetry::proto::collector::trace::v1::TraceService;

// google.rpc.Code values used here.
constexpr int kRpcInvalidArgument = 3;
constexpr int kRpcResourceExhausted = 8;
constexpr int kRpcUnavailable = 14;
constexpr int kRpcUnauthenticated = 16;
constexpr std::string_view kRetryInfoType = "type.googleapis.com/google.rpc.RetryInfo";

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void AppendTag(std::string* out, int field, int wire) {
  AppendVarint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire));
}
void AppendBytes(std::string* out, int field, std::string_view bytes) {
  AppendTag(out, field, 2);
  AppendVarint(out, bytes.size());
  out->append(bytes);
}

// Minimal protobuf reader for RetryDelayOf: calls `fn(field, wire, varint, bytes)` per field.
template <typename Fn>
bool ForEachField(std::string_view buf, Fn&& fn) {
  size_t pos = 0;
  auto varint = [&](uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64 && pos < buf.size(); shift += 7) {
      const auto b = static_cast<uint8_t>(buf[pos++]);
      *v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  };
  while (pos < buf.size()) {
    uint64_t tag = 0;
    if (!varint(&tag)) return false;
    const int field = static_cast<int>(tag >> 3);
    const int wire = static_cast<int>(tag & 7);
    uint64_t v = 0;
    std::string_view bytes;
    if (wire == 0) {
      if (!varint(&v)) return false;
    } else if (wire == 2) {
      if (!varint(&v) || v > buf.size() - pos) return false;
      bytes = buf.substr(pos, v);
      pos += v;
    } else if (wire == 1 && buf.size() - pos >= 8) {
      pos += 8;
    } else if (wire == 5 && buf.size() - pos >= 4) {
      pos += 4;
    } else {
      return false;
    }
    fn(field, wire, v, bytes);
  }
  return true;
}

}  // namespace

std::string MediaType(const std::string& content_type) {
  return common::ToLower(
      common::Trim(std::string_view(content_type)
                       .substr(0, std::min(content_type.find(';'), content_type.size()))));
}

std::string JsonErrorBody(int code, const std::string& message, std::chrono::seconds retry) {
  nlohmann::json j = {{"code", code}, {"message", message}};
  if (retry.count() > 0) {
    j["details"] = nlohmann::json::array(
        {{{"@type", kRetryInfoType}, {"retryDelay", fmt::format("{}s", retry.count())}}});
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string EncodeRpcStatus(int code, const std::string& message,
                            std::chrono::seconds retry_delay) {
  std::string out;
  if (code != 0) {
    AppendTag(&out, 1, 0);
    AppendVarint(&out, static_cast<uint64_t>(code));
  }
  if (!message.empty()) AppendBytes(&out, 2, message);
  if (retry_delay.count() > 0) {
    std::string duration;  // google.protobuf.Duration{1: seconds}
    AppendTag(&duration, 1, 0);
    AppendVarint(&duration, static_cast<uint64_t>(retry_delay.count()));
    std::string retry_info;  // google.rpc.RetryInfo{1: retry_delay}
    AppendBytes(&retry_info, 1, duration);
    std::string any;  // google.protobuf.Any{1: type_url, 2: value}
    AppendBytes(&any, 1, kRetryInfoType);
    AppendBytes(&any, 2, retry_info);
    AppendBytes(&out, 3, any);
  }
  return out;
}

std::optional<std::chrono::seconds> RetryDelayOf(std::string_view rpc_status_bytes) {
  std::optional<std::chrono::seconds> found;
  (void)ForEachField(rpc_status_bytes, [&](int field, int wire, uint64_t, std::string_view any) {
    if (field != 3 || wire != 2) return;
    std::string_view type_url;
    std::string_view value;
    (void)ForEachField(any, [&](int f, int w, uint64_t, std::string_view b) {
      if (w == 2 && f == 1) type_url = b;
      if (w == 2 && f == 2) value = b;
    });
    if (type_url != kRetryInfoType) return;
    (void)ForEachField(value, [&](int f, int w, uint64_t, std::string_view duration) {
      if (f != 1 || w != 2) return;
      int64_t seconds = 0;
      (void)ForEachField(duration, [&](int df, int dw, uint64_t v, std::string_view) {
        if (df == 1 && dw == 0) seconds = static_cast<int64_t>(v);
      });
      found = std::chrono::seconds(seconds);
    });
  });
  return found;
}

void ReceiverConfig::Declare(config::Schema& schema, const std::string& prefix) {
  schema.Add(prefix + ".grpc.listen", &grpc_listen,
             "OTLP/gRPC trace receiver host:port (empty: off)");
  schema.Add(prefix + ".http.listen", &http_listen,
             "OTLP/HTTP trace receiver host:port, POST /v1/traces (empty: off)");
  schema.Add(prefix + ".max_request_size", &max_request_bytes,
             "largest OTLP/HTTP request body on the wire (compressed), bytes; over it: 413");
  schema.Add(prefix + ".max_body_bytes", &max_body_bytes,
             "largest OTLP request body after decompression (gRPC: message), bytes; over it: "
             "413 / RESOURCE_EXHAUSTED");
  schema.Add(prefix + ".max_spans_per_request", &max_spans_per_request,
             "most spans in one OTLP request or otlp_spans record (0: no limit)");
  schema.Add(prefix + ".max_attributes", &max_attributes,
             "most attributes in one resource/scope/span/event/link list, and values in one "
             "array value (0: no limit)");
  schema.Add(prefix + ".max_elements_per_request", &max_elements_per_request,
             "most spans, events, links, attributes and values in one request, nested ones "
             "included (0: no limit)");
  schema.Add(prefix + ".max_name_length", &max_name_length,
             "longest span/event/scope name or attribute key, bytes (0: no limit)");
  schema.Add(prefix + ".max_attribute_value_length", &max_attribute_value_length,
             "string and bytes attribute values are cut to this many bytes (0: not cut)");
  schema.Add(prefix + ".ack_timeout", &ack_timeout,
             "how long a request waits for Kafka's ack before 503/UNAVAILABLE");
  schema.Add(prefix + ".retry_after", &retry_after,
             "retry delay told to clients with 503/UNAVAILABLE");
  schema.Add(prefix + ".http.threads", &http_threads, "OTLP/HTTP worker threads");
  schema.Add(prefix + ".tls.cert_file", &tls.cert_file,
             "PEM certificate (chain) of both OTLP receivers; set: TLS only (HTTPS, gRPC over "
             "TLS)");
  schema.Add(prefix + ".tls.key_file", &tls.key_file,
             "PEM private key of " + prefix + ".tls.cert_file");
  schema.Add(prefix + ".tls.client_ca_file", &tls.client_ca_file,
             "PEM CA bundle; set: mutual TLS, clients must present a certificate it signed");
  schema.Add(prefix + ".bearer_token_file", &bearer_token_file,
             "file holding a token both OTLP receivers then require as \"authorization: "
             "Bearer <token>\" (401 / UNAUTHENTICATED otherwise); empty = no auth");
  key_prefix = prefix;
}

Result<ReceiverConfig::Security> ReceiverConfig::LoadSecurity() const {
  Security sec;
  FS_ASSIGN_OR_RETURN(sec.tls, obs::LoadServerTls(tls, key_prefix + ".tls"));
  if (!bearer_token_file.empty()) {
    FS_ASSIGN_OR_RETURN(sec.bearer_token,
                        obs::ReadTokenFile(bearer_token_file, key_prefix + ".bearer_token_file"));
  }
  return sec;
}

DecodeLimits ReceiverConfig::decode_limits() const {
  return {.max_spans = max_spans_per_request,
          .max_attributes = max_attributes,
          .max_elements = max_elements_per_request,
          .max_name_length = max_name_length,
          .max_attribute_value_length = max_attribute_value_length};
}

void CountRefused(obs::Registry& metrics, std::string_view source, std::string_view reason) {
  metrics
      .Counter("fs_spans_refused_total",
               "OTLP requests and otlp_spans records refused whole, by source and reason",
               {{"source", std::string(source)}, {"reason", std::string(reason)}})
      .Inc();
}

void CountTruncated(obs::Registry& metrics, std::string_view source, uint64_t n) {
  if (n == 0) return;
  metrics
      .Counter("fs_spans_truncated_values_total",
               "attribute values cut to max_attribute_value_length, by source",
               {{"source", std::string(source)}})
      .Inc(n);
}

// ---------------------------------------------------------------------------------------------

class OtlpReceivers::Impl {
 public:
  Impl(const ReceiverConfig& config, ReceiverConfig::Security security, SpanRouter& router,
       obs::Registry& metrics)
      : config_(config),
        security_(std::move(security)),
        router_(router),
        metrics_(metrics),
        limits_(config.decode_limits()),
        ack_timeout_(std::chrono::duration_cast<std::chrono::milliseconds>(config.ack_timeout)),
        retry_after_(std::max<int64_t>(
            1, std::chrono::ceil<std::chrono::seconds>(config.retry_after).count())) {}

  ~Impl() { Stop(); }

  Status StartHttp();
  Status StartGrpc();
  void Stop();

  // Shared by both transports: decodes, checks limits, routes. Returns the response to send.
  struct Outcome {
    int rpc_code = 0;  // google.rpc.Code; 0 = OK
    int http_status = 200;
    std::string message;
    otlp::ExportTraceServiceResponse response;
  };
  void Handle(std::string_view body, Encoding encoding, v1::SpanSource source,
              std::function<void(Outcome)> done);

  void Count(std::string_view transport, std::string_view code) {
    metrics_
        .Counter("fs_otlp_requests_total", "OTLP trace export requests, by transport and result",
                 {{"transport", std::string(transport)}, {"code", std::string(code)}})
        .Inc();
  }

  // Why a request fails the bearer check, or "" when it passes (or no token is configured).
  [[nodiscard]] std::string Unauthorized(std::string_view authorization) const {
    if (security_.bearer_token.empty() ||
        obs::BearerMatches(authorization, security_.bearer_token)) {
      return "";
    }
    return authorization.empty()
               ? fmt::format("bearer token required: send \"authorization: Bearer <token>\" ({})",
                             config_.key_prefix + ".bearer_token_file")
               : std::string("invalid bearer token");
  }

  [[nodiscard]] const char* TlsMode() const {
    if (!security_.tls.has_value()) return "off";
    return security_.tls->client_ca_pem.empty() ? "on" : "mutual";
  }

  ReceiverConfig config_;
  ReceiverConfig::Security security_;
  SpanRouter& router_;
  obs::Registry& metrics_;
  DecodeLimits limits_;
  std::chrono::milliseconds ack_timeout_;
  std::chrono::seconds retry_after_;

  std::unique_ptr<httplib::Server> http_;
  std::thread http_thread_;
  int http_port_ = 0;

  class GrpcService;
  std::unique_ptr<GrpcService> grpc_service_;
  std::unique_ptr<grpc::Server> grpc_;
  int grpc_port_ = 0;

  std::mutex stop_mu_;
  bool stopped_ = false;
};

void OtlpReceivers::Impl::Handle(std::string_view body, Encoding encoding, v1::SpanSource source,
                                 std::function<void(Outcome)> done) {
  const std::string_view source_name = source == v1::SPAN_SOURCE_OTLP_GRPC ? "grpc" : "http";
  DecodeStats stats;
  Result<otlp::ExportTraceServiceRequest> req = DecodeExport(body, encoding, limits_, &stats);
  if (!req.ok()) {
    CountRefused(metrics_, source_name, stats.refusal.empty() ? "invalid" : stats.refusal);
    const bool limit = req.error().code() == StatusCode::kResourceExhausted;
    done({.rpc_code = limit ? kRpcResourceExhausted : kRpcInvalidArgument,
          .http_status = limit ? 413 : 400,
          .message = req.error().message()});
    return;
  }
  CountTruncated(metrics_, source_name, stats.truncated_values);
  router_.RouteAsync(*req, source, ack_timeout_, [done = std::move(done)](RouteResult r) {
    Outcome out;
    if (!r.status.ok()) {
      out.rpc_code = kRpcUnavailable;
      out.http_status = 503;
      out.message = r.status.message();
    } else if (r.rejected > 0) {
      auto* ps = out.response.mutable_partial_success();
      ps->set_rejected_spans(static_cast<int64_t>(r.rejected));
      ps->set_error_message(r.rejection);
    }
    done(std::move(out));
  });
}

// ---------------------------------------------------------------------------------------------
// OTLP/HTTP

Status OtlpReceivers::Impl::StartHttp() {
  FS_ASSIGN_OR_RETURN(obs::HostPort hp, obs::ParseHostPort(config_.http_listen));
  FS_ASSIGN_OR_RETURN(http_, obs::NewHttpServer(security_.tls));
  const int threads = std::max(1, config_.http_threads);
  http_->new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads));
  };
  // Port conflicts must fail (httplib's default SO_REUSEPORT would share the port silently).
  http_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // Compressed (wire) size; the decompressed size is checked while reading below (httplib
  // inflates gzip/deflate chunk by chunk into the reader, which stops at the cap).
  http_->set_payload_max_length(config_.max_request_bytes);
  http_->Post("/v1/traces", [this](const httplib::Request& req, httplib::Response& res,
                                   const httplib::ContentReader& reader) {
    const std::string media = MediaType(req.get_header_value("Content-Type"));
    if (const std::string why = Unauthorized(req.get_header_value("Authorization")); !why.empty()) {
      // Read (and drop) the body first: closing with it unread would reset the connection
      // before the client reads the 401. Bounded like any body.
      uint64_t seen = 0;
      const bool drained = reader([&](const char*, size_t n) {
        seen += n;
        return seen <= config_.max_body_bytes;
      });
      if (!drained) res.set_header("Connection", "close");
      res.status = 401;
      res.set_header("WWW-Authenticate", req.has_header("Authorization")
                                             ? R"(Bearer realm="otlp", error="invalid_token")"
                                             : R"(Bearer realm="otlp")");
      if (media == "application/json") {
        res.set_content(JsonErrorBody(kRpcUnauthenticated, why, {}), "application/json");
      } else {
        res.set_content(EncodeRpcStatus(kRpcUnauthenticated, why), "application/x-protobuf");
      }
      Count("http", "401");
      return;
    }
    Encoding encoding = Encoding::kProtobuf;
    if (media == "application/json") {
      encoding = Encoding::kJson;
    } else if (media != "application/x-protobuf" && media != "application/protobuf") {
      // Drop the connection: the unread body would be parsed as the next request.
      res.set_header("Connection", "close");
      res.status = 415;
      res.set_content(fmt::format("unsupported Content-Type \"{}\"; use application/x-protobuf "
                                  "or application/json\n",
                                  media),
                      "text/plain");
      Count("http", "415");
      return;
    }
    auto reply_error = [&](int http_status, int rpc_code, const std::string& message,
                           std::chrono::seconds retry) {
      res.status = http_status;
      if (retry.count() > 0) res.set_header("Retry-After", std::to_string(retry.count()));
      if (encoding == Encoding::kJson) {
        res.set_content(JsonErrorBody(rpc_code, message, retry), "application/json");
      } else {
        res.set_content(EncodeRpcStatus(rpc_code, message, retry), "application/x-protobuf");
      }
      Count("http", std::to_string(http_status));
    };

    std::string body;
    bool too_large = false;
    // Identity bodies: their size is known, so the buffer grows once (never past the caps).
    if (req.get_header_value("Content-Encoding").empty() && req.has_header("Content-Length")) {
      const uint64_t declared = req.get_header_value<uint64_t>("Content-Length");
      if (declared <= std::min(config_.max_body_bytes, config_.max_request_bytes)) {
        body.reserve(declared);
      }
    }
    const bool read_ok = reader([&](const char* data, size_t n) {
      if (body.size() + n > config_.max_body_bytes) {
        too_large = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
    if (!read_ok) {
      res.set_header("Connection", "close");
      if (too_large) {
        CountRefused(metrics_, "http", "body_too_large");
        reply_error(413, kRpcResourceExhausted,
                    fmt::format("request body exceeds {} bytes after decompression "
                                "(max_body_bytes)",
                                config_.max_body_bytes),
                    {});
      } else if (res.status == 413) {
        CountRefused(metrics_, "http", "request_too_large");
        reply_error(413, kRpcResourceExhausted,
                    fmt::format("request body exceeds {} bytes on the wire (max_request_size)",
                                config_.max_request_bytes),
                    {});
      } else if (res.status == 415) {
        reply_error(415, kRpcInvalidArgument,
                    fmt::format("unsupported Content-Encoding \"{}\"",
                                req.get_header_value("Content-Encoding")),
                    {});
      } else {
        reply_error(400, kRpcInvalidArgument,
                    "cannot read the request body (truncated, or corrupt gzip)", {});
      }
      return;
    }

    std::promise<Outcome> promise;
    std::future<Outcome> future = promise.get_future();
    Handle(body, encoding, v1::SPAN_SOURCE_OTLP_HTTP,
           [&promise](Outcome o) { promise.set_value(std::move(o)); });
    Outcome out = future.get();
    if (out.rpc_code != 0) {
      reply_error(out.http_status, out.rpc_code, out.message,
                  out.rpc_code == kRpcUnavailable ? retry_after_ : std::chrono::seconds(0));
      return;
    }
    if (encoding == Encoding::kJson) {
      nlohmann::json j = nlohmann::json::object();
      if (out.response.has_partial_success()) {
        j["partialSuccess"] = {
            {"rejectedSpans", std::to_string(out.response.partial_success().rejected_spans())},
            {"errorMessage", out.response.partial_success().error_message()}};
      }
      res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                      "application/json");
    } else {
      res.set_content(out.response.SerializeAsString(), "application/x-protobuf");
    }
    Count("http", "200");
  });

  if (hp.port == 0) {
    http_port_ = http_->bind_to_any_port(hp.host);
    if (http_port_ < 0) return Unavailable("OTLP/HTTP: cannot listen on {}", config_.http_listen);
  } else {
    if (!http_->bind_to_port(hp.host, hp.port)) {
      return Unavailable("OTLP/HTTP: cannot listen on {} (port in use?)", config_.http_listen);
    }
    http_port_ = hp.port;
  }
  httplib::Server* srv = http_.get();
  http_thread_ = std::thread([srv] { srv->listen_after_bind(); });
  // stop() is a no-op until the loop runs: wait for it so Stop() right after Start() works.
  for (int i = 0; i < 5000 && !srv->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  log::Info("OTLP/HTTP trace receiver listening",
            {{"address", hp.host},
             {"port", http_port_},
             {"tls", TlsMode()},
             {"bearer_auth", !security_.bearer_token.empty()}});
  return OkStatus();
}

// ---------------------------------------------------------------------------------------------
// OTLP/gRPC: a raw callback method, so we decode the bytes ourselves (a precise
// INVALID_ARGUMENT instead of gRPC's generic deserialization failure) and finish the call
// from Kafka's delivery callback without holding a thread.

class OtlpReceivers::Impl::GrpcService final
    : public TraceService::WithRawCallbackMethod_Export<TraceService::Service> {
 public:
  explicit GrpcService(Impl& impl) : impl_(impl) {}

  grpc::ServerUnaryReactor* Export(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    const auto& md = ctx->client_metadata();
    const auto auth = md.find("authorization");
    const std::string why = impl_.Unauthorized(
        auth == md.end() ? std::string_view()
                         : std::string_view(auth->second.data(), auth->second.size()));
    if (!why.empty()) {
      impl_.Count("grpc", "UNAUTHENTICATED");
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, why));
      return reactor;
    }
    std::string body;
    std::vector<grpc::Slice> slices;
    if (!request->Dump(&slices).ok()) {
      impl_.Count("grpc", "INTERNAL");
      reactor->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "cannot read the request"));
      return reactor;
    }
    for (const grpc::Slice& s : slices) {
      body.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    Impl& impl = impl_;
    impl_.Handle(body, Encoding::kProtobuf, v1::SPAN_SOURCE_OTLP_GRPC,
                 [&impl, ctx, reactor, response](Outcome out) {
                   if (out.rpc_code == 0) {
                     grpc::Slice slice(out.response.SerializeAsString());
                     *response = grpc::ByteBuffer(&slice, 1);
                     impl.Count("grpc", "OK");
                     reactor->Finish(grpc::Status::OK);
                     return;
                   }
                   std::chrono::seconds retry{0};
                   if (out.rpc_code == kRpcUnavailable) {
                     retry = impl.retry_after_;
                     ctx->AddTrailingMetadata("retry-after", std::to_string(retry.count()));
                   }
                   const auto code = static_cast<grpc::StatusCode>(out.rpc_code);
                   impl.Count("grpc", out.rpc_code == kRpcUnavailable         ? "UNAVAILABLE"
                                      : out.rpc_code == kRpcResourceExhausted ? "RESOURCE_EXHAUSTED"
                                                                              : "INVALID_ARGUMENT");
                   reactor->Finish(grpc::Status(code, out.message,
                                                EncodeRpcStatus(out.rpc_code, out.message, retry)));
                 });
    return reactor;
  }

 private:
  Impl& impl_;
};

Status OtlpReceivers::Impl::StartGrpc() {
  grpc_service_ = std::make_unique<GrpcService>(*this);
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (security_.tls.has_value()) {
    const obs::ServerTls& tls = *security_.tls;
    grpc::SslServerCredentialsOptions opts(
        tls.client_ca_pem.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                  : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    opts.pem_root_certs = tls.client_ca_pem;
    opts.pem_key_cert_pairs.push_back({.private_key = tls.key_pem, .cert_chain = tls.cert_pem});
    creds = grpc::SslServerCredentials(opts);
  }
  builder.AddListeningPort(config_.grpc_listen, creds, &grpc_port_);
  builder.RegisterService(grpc_service_.get());
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<uint64_t>(config_.max_body_bytes, INT32_MAX)));
  // A port in use must be an error, not a second server sharing it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  grpc_ = builder.BuildAndStart();
  if (grpc_ == nullptr || grpc_port_ == 0) {
    grpc_.reset();
    return Unavailable("OTLP/gRPC: cannot listen on {} (port in use?)", config_.grpc_listen);
  }
  log::Info("OTLP/gRPC trace receiver listening",
            {{"address", config_.grpc_listen},
             {"port", grpc_port_},
             {"tls", TlsMode()},
             {"bearer_auth", !security_.bearer_token.empty()}});
  return OkStatus();
}

void OtlpReceivers::Impl::Stop() {
  std::lock_guard lock(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  if (http_ != nullptr) {
    http_->stop();  // lets in-flight handlers finish; they wait at most ack_timeout
    if (http_thread_.joinable()) http_thread_.join();
  }
  if (grpc_ != nullptr) {
    // In-flight calls finish when the router answers them (at most ack_timeout).
    grpc_->Shutdown(std::chrono::system_clock::now() + config_.ack_timeout +
                    std::chrono::seconds(1));
    grpc_->Wait();
  }
}

OtlpReceivers::OtlpReceivers(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OtlpReceivers::~OtlpReceivers() { Stop(); }
void OtlpReceivers::Stop() { impl_->Stop(); }
int OtlpReceivers::grpc_port() const { return impl_->grpc_port_; }
int OtlpReceivers::http_port() const { return impl_->http_port_; }

Result<std::unique_ptr<OtlpReceivers>> OtlpReceivers::Start(const ReceiverConfig& config,
                                                            SpanRouter& router,
                                                            obs::Registry& metrics) {
  FS_ASSIGN_OR_RETURN(ReceiverConfig::Security security, config.LoadSecurity());
  if (!security.bearer_token.empty() && !security.tls.has_value()) {
    log::Warn(
        "OTLP receivers take a bearer token over plaintext: it crosses the network in "
        "clear text",
        {{"fix", config.key_prefix + ".tls.cert_file"}});
  }
  auto impl = std::make_unique<Impl>(config, std::move(security), router, metrics);
  if (!config.http_listen.empty()) FS_RETURN_IF_ERROR(impl->StartHttp());
  if (!config.grpc_listen.empty()) FS_RETURN_IF_ERROR(impl->StartGrpc());
  return std::unique_ptr<OtlpReceivers>(new OtlpReceivers(std::move(impl)));
}

}  // namespace flamestream::spans
