// Counters shared by the receivers and the otlp_spans intake (internal to libs/spans).
#pragma once

#include <cstdint>
#include <string_view>

#include "flamestream/obs/metrics.h"

namespace flamestream::spans {

// fs_spans_refused_total{source,reason}: a request or record refused whole.
void CountRefused(obs::Registry& metrics, std::string_view source, std::string_view reason);
// fs_spans_truncated_values_total{source}: attribute values cut to max_attribute_value_length.
void CountTruncated(obs::Registry& metrics, std::string_view source, uint64_t n);

}  // namespace flamestream::spans
