// OtlpReceivers: the OTLP trace receivers of the span router, OTLP/gRPC
// (opentelemetry.proto.collector.trace.v1.TraceService/Export, default :4317) and OTLP/HTTP
// (POST /v1/traces, default :4318).
//
//   spans::ReceiverConfig rcfg;                          // rcfg.Declare(schema) in main
//   FS_ASSIGN_OR_RETURN(auto receivers, spans::OtlpReceivers::Start(rcfg, router, ctx.metrics));
//   ctx.WaitForStop(...);
//   receivers->Stop();                                   // before the producer flushes
//
// Semantics (https://opentelemetry.io/docs/specs/otlp/):
//  - success only after every placed span is acknowledged by Kafka; rejected spans (malformed
//    ids, no node identity) are reported as partial success (rejected_spans, error_message),
//    which clients must not retry;
//  - Kafka slow or down (no ack within ack_timeout, queue full): HTTP 503 / gRPC UNAVAILABLE
//    with a retry delay (HTTP Retry-After header; gRPC google.rpc.RetryInfo in the status
//    details, which the OTel SDKs honour, plus a `retry-after` trailer);
//  - undecodable body: HTTP 400 / gRPC INVALID_ARGUMENT naming the field;
//  - over a limit, checked while reading and decoding, never after materializing: request
//    over max_request_bytes on the wire, body over max_body_bytes after decompression (gzip is
//    inflated as a stream and stops at the cap), more than max_spans_per_request spans,
//    max_attributes attributes in one list, max_elements_per_request entries in all, a name or
//    key over max_name_length: HTTP 413 / gRPC RESOURCE_EXHAUSTED naming the field and the
//    limit, counted in fs_spans_refused_total{source,reason} (reasons: request_too_large,
//    body_too_large, too_many_spans, too_many_attributes, too_many_elements, name_too_long;
//    undecodable bodies count as "invalid"). Attribute values over max_attribute_value_length
//    are truncated, not refused (fs_spans_truncated_values_total);
//  - transport security and auth (both receivers): <prefix>.tls.cert_file/key_file turn on TLS
//    (HTTPS, gRPC over TLS; plaintext clients fail the handshake), <prefix>.tls.client_ca_file
//    adds mutual TLS (a client without a certificate that CA signed is refused in the
//    handshake), <prefix>.bearer_token_file requires "authorization: Bearer <token>": HTTP 401
//    with WWW-Authenticate: Bearer / gRPC UNAUTHENTICATED otherwise, counted in
//    fs_otlp_requests_total{code="401"|"UNAUTHENTICATED"};
//  - HTTP accepts application/x-protobuf and application/json, Content-Encoding gzip (and
//    deflate), Content-Length or chunked bodies; answers in the request's encoding, errors as
//    a google.rpc.Status body. gRPC accepts gzip message compression.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "flamestream/common/status.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/obs/server_security.h"
#include "flamestream/spans/router.h"

namespace flamestream::config {
class Schema;
}

namespace flamestream::spans {

struct ReceiverConfig {
  // host:port for OTLP/gRPC; empty turns it off. Port 0 picks a free port (tests).
  std::string grpc_listen = "0.0.0.0:4317";
  // host:port for OTLP/HTTP; empty turns it off.
  std::string http_listen = "0.0.0.0:4318";
  // Largest HTTP request body on the wire (compressed, if it is), like gRPC's default 4 MiB.
  uint64_t max_request_bytes = 4ull << 20;
  // Largest request body accepted after decompression (gRPC: largest message).
  uint64_t max_body_bytes = 64ull << 20;
  // Most spans accepted in one request.
  uint32_t max_spans_per_request = 10'000;
  // The other decode limits (DecodeLimits): attributes per list, entries per request, name
  // length, attribute value length (truncated). 0 turns one off.
  uint32_t max_attributes = 128;
  uint64_t max_elements_per_request = 500'000;
  uint32_t max_name_length = 1024;
  uint32_t max_attribute_value_length = 4096;
  // How long a request waits for Kafka's acknowledgement before answering 503/UNAVAILABLE.
  std::chrono::nanoseconds ack_timeout = std::chrono::seconds(10);
  // Delay a client is told to wait before retrying after 503/UNAVAILABLE (whole seconds).
  std::chrono::nanoseconds retry_after = std::chrono::seconds(5);
  // HTTP worker threads (each holds one request while it waits for Kafka; gRPC holds none).
  int http_threads = 16;
  // TLS for both receivers (<prefix>.tls.cert_file, .key_file, .client_ca_file); all empty =
  // plaintext. client_ca_file set = mutual TLS.
  obs::ServerTlsFiles tls;
  // File holding the bearer token both receivers then require (<prefix>.bearer_token_file).
  std::string bearer_token_file;
  // The prefix the keys were declared under, to name them in errors (set by Declare).
  std::string key_prefix = "correlator.otlp";

  // Declares <prefix>.grpc.listen, <prefix>.http.listen, <prefix>.max_request_size,
  // <prefix>.max_body_bytes, <prefix>.max_spans_per_request, <prefix>.max_attributes, ...
  void Declare(config::Schema& schema, const std::string& prefix = "spans.receivers");

  // The decode limits above (also used by the otlp_spans intake).
  [[nodiscard]] DecodeLimits decode_limits() const;

  // Reads and checks the TLS files and the token: InvalidArgument naming the key when one is
  // missing, unreadable or invalid. Start() calls it; services call it first to fail fast.
  struct Security {
    std::optional<obs::ServerTls> tls;
    std::string bearer_token;  // empty: no auth
  };
  [[nodiscard]] Result<Security> LoadSecurity() const;
};

class OtlpReceivers {
 public:
  // Binds and starts the enabled receivers; Unavailable when a port is taken, InvalidArgument
  // naming the key when a TLS file or the token file is wrong (LoadSecurity).
  static Result<std::unique_ptr<OtlpReceivers>> Start(const ReceiverConfig& config,
                                                      SpanRouter& router, obs::Registry& metrics);
  ~OtlpReceivers();  // Stop()
  OtlpReceivers(const OtlpReceivers&) = delete;
  OtlpReceivers& operator=(const OtlpReceivers&) = delete;

  // Stops accepting requests and waits for the ones in flight (bounded by ack_timeout).
  // Idempotent.
  void Stop();

  // Bound ports (0 when that receiver is off).
  [[nodiscard]] int grpc_port() const;
  [[nodiscard]] int http_port() const;

 private:
  class Impl;
  explicit OtlpReceivers(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The OTLP/HTTP handler's pieces, exposed for tests and fuzz/http_request.cc:
// the media type of a Content-Type header, parameters stripped and lower-cased
// ("Application/JSON; charset=utf-8" -> "application/json"),
std::string MediaType(const std::string& content_type);
// and the JSON error body (google.rpc.Status in OTLP/JSON, RetryInfo when `retry` > 0).
std::string JsonErrorBody(int code, const std::string& message, std::chrono::seconds retry);

// A google.rpc.Status (code, message, optional RetryInfo detail) as protobuf bytes: the error
// body of OTLP/HTTP and the grpc-status-details-bin of gRPC. Exposed for tests.
std::string EncodeRpcStatus(int code, const std::string& message,
                            std::chrono::seconds retry_delay = std::chrono::seconds(0));
// The RetryInfo delay inside an encoded google.rpc.Status, if it has one.
std::optional<std::chrono::seconds> RetryDelayOf(std::string_view rpc_status_bytes);

}  // namespace flamestream::spans
