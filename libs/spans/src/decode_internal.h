// Internal to libs/spans: what the decoders in decode.cc, decode_proto.cc, decode_json.cc and
// decode_json_walker.cc share.
//
//   decode_proto.cc        DecodeProtobuf: the limit scan of the wire bytes, the parse, and the
//                          diagnosis of a buffer the parser rejected
//   decode_json.cc         DecodeJson: the SAX builder that checks the limits while it builds
//                          the tree the walker reads
//   decode_json_walker.cc  WalkJsonRequest: OTLP/JSON tree -> ExportTraceServiceRequest
//   decode.cc              attribute value truncation, DecodeExport, SniffEncoding, CountSpans
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "flamestream/common/status.h"
#include "flamestream/spans/decode.h"

namespace flamestream::spans::internal {

// AnyValue nests (arrays, key-value lists); protobuf's own parser stops at depth 100.
inline constexpr int kMaxAnyValueDepth = 64;

// The ResourceExhausted status of a request refused by a DecodeLimits limit at `path`.
Status LimitError(std::string_view path, std::string_view what);

// Cuts string and bytes attribute values to limits.max_attribute_value_length (after
// decoding: the request is already bounded by the other limits) and counts them in `stats`.
void Truncate(otlp::ExportTraceServiceRequest* req, const DecodeLimits& limits, DecodeStats* stats);

// Fills `out` from an OTLP/JSON document (as LimitedJsonBuilder builds it); InvalidArgument
// naming the path of the first value that is not OTLP/JSON.
Status WalkJsonRequest(const nlohmann::json& j, otlp::ExportTraceServiceRequest* out);

}  // namespace flamestream::spans::internal
