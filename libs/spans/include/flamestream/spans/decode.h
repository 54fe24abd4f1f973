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

// Protobuf bytes -> request. On failure, the error names the first structurally broken field
// (e.g. "resource_spans[0].scope_spans[0].spans[1] (length 900 at byte 37 exceeds the 12
// bytes left)").
Result<otlp::ExportTraceServiceRequest> DecodeProtobuf(std::string_view bytes);

// OTLP/JSON text -> request.
Result<otlp::ExportTraceServiceRequest> DecodeJson(std::string_view text);

Result<otlp::ExportTraceServiceRequest> DecodeExport(std::string_view bytes, Encoding encoding);

// JSON when the first byte other than space, tab or CR is '{' (a protobuf request can never
// start with it: 0x7b would be field 15 with the deprecated group wire type), else protobuf.
// A leading '\n' means protobuf: it is resource_spans' tag.
Encoding SniffEncoding(std::string_view bytes);

// Number of spans in a request (for the span-count limit).
size_t CountSpans(const otlp::ExportTraceServiceRequest& request);

}  // namespace flamestream::spans
