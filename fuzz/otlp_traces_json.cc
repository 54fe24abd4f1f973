// OTLP/JSON ExportTraceServiceRequest, as the OTLP/HTTP receiver (application/json) and the
// otlp_spans Kafka intake (otlp_json) decode it (spans::DecodeExport, libs/spans/src/decode.cc).
// A JSON request that decodes is a valid protobuf request too: its serialization decodes
// (spans::DecodeProtobuf) to the same message, unless it nests deeper than protobuf's
// recursion limit of 100 messages, which the JSON walker bounds differently (64 AnyValue levels).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "flamestream/spans/decode.h"
#include "fuzz_check.h"

namespace spans = flamestream::spans;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  flamestream::Result<spans::otlp::ExportTraceServiceRequest> req =
      spans::DecodeExport(text, spans::Encoding::kJson);
  if (!req.ok()) {
    FS_FUZZ_CHECK(!req.error().message().empty(), "empty decode error");
    return 0;
  }
  const std::string bytes = req->SerializeAsString();
  flamestream::Result<spans::otlp::ExportTraceServiceRequest> proto = spans::DecodeProtobuf(bytes);
  if (!proto.ok()) {
    FS_FUZZ_CHECK(proto.error().message().find("nested too deeply") != std::string::npos,
                  "a decoded JSON request is not a valid protobuf request: %s",
                  proto.error().message().c_str());
    return 0;
  }
  FS_FUZZ_CHECK(proto->SerializeAsString() == bytes, "JSON -> protobuf -> protobuf differs");
  FS_FUZZ_CHECK(spans::CountSpans(*proto) == spans::CountSpans(*req), "span count changed");
  return 0;
}
