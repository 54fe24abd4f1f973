// OTLP ExportTraceServiceRequest protobuf, as the OTLP/gRPC and OTLP/HTTP receivers and the
// otlp_spans Kafka intake decode it (spans::DecodeExport, libs/spans/src/decode.cc). A request
// that decodes re-serializes to bytes that decode to the same request; one that does not has
// an error naming where.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "flamestream/spans/decode.h"
#include "fuzz_check.h"

namespace spans = flamestream::spans;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // The Kafka intake's "auto" encoding sniffs; a body sniffed as JSON goes to the JSON harness.
  (void)spans::SniffEncoding(bytes);
  flamestream::Result<spans::otlp::ExportTraceServiceRequest> req =
      spans::DecodeExport(bytes, spans::Encoding::kProtobuf);
  if (!req.ok()) {
    FS_FUZZ_CHECK(!req.error().message().empty(), "empty decode error");
    return 0;
  }
  (void)spans::CountSpans(*req);
  const std::string once = req->SerializeAsString();
  flamestream::Result<spans::otlp::ExportTraceServiceRequest> again = spans::DecodeProtobuf(once);
  FS_FUZZ_CHECK(again.ok(), "re-serialized request does not decode: %s",
                again.error().message().c_str());
  FS_FUZZ_CHECK(again->SerializeAsString() == once, "decode -> encode -> decode is not stable");
  FS_FUZZ_CHECK(spans::CountSpans(*again) == spans::CountSpans(*req), "span count changed");
  return 0;
}
