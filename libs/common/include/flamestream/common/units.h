// Parsing of human-written durations ("30s", "1m30s", "250ms") and sizes ("64MiB", "1GB").
//
//   FS_ASSIGN_OR_RETURN(std::chrono::nanoseconds d, ParseDuration("1m30s"));
//   FS_ASSIGN_OR_RETURN(uint64_t bytes, ParseSize("64MiB"));   // 67108864
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "flamestream/common/status.h"

namespace flamestream::common {

// Accepts a sequence of <number><unit> with units ns, us, ms, s, m, h, d (e.g. "1h30m", "0.5s").
// A bare "0" is zero. Negative durations are rejected.
Result<std::chrono::nanoseconds> ParseDuration(std::string_view text);

// Accepts <number>[unit] with B, KB/MB/GB/TB (powers of 1000) and KiB/MiB/GiB/TiB (powers of
// 1024), case-insensitive for the SI letters; a bare number is bytes.
Result<uint64_t> ParseSize(std::string_view text);

// "1m30s", "250ms": the shortest exact spelling, for --help output and logs.
std::string FormatDuration(std::chrono::nanoseconds d);
// "64MiB" when exact in binary units, else bytes.
std::string FormatSize(uint64_t bytes);

}  // namespace flamestream::common
