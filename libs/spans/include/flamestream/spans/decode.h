// Decoding OTLP trace exports (ExportTraceServiceRequest) from protobuf and OTLP/JSON.
//
//   Result<otlp::ExportTraceServiceRequest> req = spans::DecodeExport(body, Encoding::kJson);
//   if (!req.ok()) return Http400(req.error().message());
//   // "resourceSpans[0].scopeSpans[0].spans[2].traceId: \"xyz\" is not hex (OTLP/JSON ids are
//   //  hex, not base64)"
//
// Both decoders produce the same message, so the HTTP, gRPC and Kafka paths share one router.
// Errors are InvalidArgument naming the field (JSON path or protobuf field path and byte
// offset); nothing throws.
//
// OTLP/JSON (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding) differs from
// protobuf's canonical JSON mapping in the one way that matters here: trace and span ids are
// hex strings, not base64. google::protobuf::util::JsonStringToMessage would decode them as
// base64, and pre-rewriting the ids would need a full walk of the document anyway, so the JSON
// decoder is a walker over nlohmann::json that knows the OTLP trace schema. That also gives
// errors with the exact path. It accepts lowerCamelCase keys (the spec) and the proto field
// names (as protobuf's parser does), 64-bit integers as strings or numbers, enums as numbers
// or names, null as "absent", and ignores unknown keys (the spec requires it). Span events and
// links are skipped: the span router keeps neither.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "flamestream/common/status.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace flamestream::spans {

namespace otlp {
using opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
using opentelemetry::proto::collector::trace::v1::ExportTraceServiceResponse;
}  // namespace otlp

enum class Encoding {
  kProtobuf,  // application/x-protobuf; Kafka encoding otlp_proto
  kJson,      // application/json; Kafka encoding otlp_json
};

// Limits enforced while decoding, before anything is materialized: a request over a count or
// name limit is refused whole (ResourceExhausted, naming the field and the limit's config key);
// an attribute value over max_attribute_value_length is truncated (and counted), like the OTel
// SDKs' attribute value length limit. 0 turns a limit off.
//
// Protobuf: a scan over the wire bytes (no allocation) checks every limit before
// ParseFromArray runs, so a 14 MB request of empty spans is refused after counting
// max_spans + 1 of them instead of materializing 7 million Span objects. OTLP/JSON: the
// document is built by a SAX handler that checks the same limits as it goes and never stores
// what the router ignores (unknown keys, span events and links), so neither the JSON tree nor
// the request can grow past the limits.
struct DecodeLimits {
  // Spans in one request (max_spans_per_request).
  uint64_t max_spans = 10'000;
  // Attributes in one list (resource, scope, span, event, link attributes; kvlist values) and
  // values in one array value (max_attributes; OTel's default attribute count limit).
  uint64_t max_attributes = 128;
  // Entries of every list in one request together: resource and scope spans, spans, events,
  // links, attributes and array values, nested ones included, and unknown protobuf fields
  // (max_elements_per_request). This bounds the decoded size whatever the request's shape.
  uint64_t max_elements = 500'000;
  // Bytes in a span, event or scope name or an attribute key (max_name_length).
  uint64_t max_name_length = 1024;
  // Bytes kept of a string or bytes attribute value; longer ones are cut (at a UTF-8 character
  // boundary) and counted (max_attribute_value_length).
  uint64_t max_attribute_value_length = 4096;
};

// What decoding found besides the request.
struct DecodeStats {
  // Why the request was refused, as a metric label: "invalid" (undecodable), or the limit:
  // "too_many_spans", "too_many_attributes", "too_many_elements", "name_too_long". Empty on
  // success.
  std::string refusal;
  // Attribute values cut to max_attribute_value_length.
  uint64_t truncated_values = 0;
};

// Protobuf bytes -> request. On failure, the error names the first structurally broken field
// (e.g. "resource_spans[0].scope_spans[0].spans[1] (length 900 at byte 37 exceeds the 12
// bytes left)"), or the first field over a limit (ResourceExhausted: "request refused:
// resource_spans[0].scope_spans[0].spans[10000]: more than 10000 spans in one request
// (max_spans_per_request)").
Result<otlp::ExportTraceServiceRequest> DecodeProtobuf(std::string_view bytes,
                                                       const DecodeLimits& limits = {},
                                                       DecodeStats* stats = nullptr);

// OTLP/JSON text -> request.
Result<otlp::ExportTraceServiceRequest> DecodeJson(std::string_view text,
                                                   const DecodeLimits& limits = {},
                                                   DecodeStats* stats = nullptr);

Result<otlp::ExportTraceServiceRequest> DecodeExport(std::string_view bytes, Encoding encoding,
                                                     const DecodeLimits& limits = {},
                                                     DecodeStats* stats = nullptr);

// JSON when the first byte other than space, tab or CR is '{' (a protobuf request can never
// start with it: 0x7b would be field 15 with the deprecated group wire type), else protobuf.
// A leading '\n' means protobuf: it is resource_spans' tag.
Encoding SniffEncoding(std::string_view bytes);

// Number of spans in a request (for the span-count limit).
size_t CountSpans(const otlp::ExportTraceServiceRequest& request);

}  // namespace flamestream::spans
