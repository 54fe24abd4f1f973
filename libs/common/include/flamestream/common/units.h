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

// A point in time as Unix nanoseconds, from:
//   - "now", or a duration before now: "-15m", "-1h30m" (relative to `now_ns`)
//   - RFC 3339 in UTC: "2026-11-23T13:00:00Z", "2026-11-23T13:00:00.250Z"
//   - Unix time as digits, with the unit read off the length as Pyroscope does:
//     10 digits seconds, 13 milliseconds, 16 microseconds, 19 nanoseconds.
Result<int64_t> ParseTimestampNs(std::string_view text, int64_t now_ns);

// "1m30s", "250ms": the shortest exact spelling, for --help output and logs.
std::string FormatDuration(std::chrono::nanoseconds d);
// "64MiB" when exact in binary units, else bytes.
std::string FormatSize(uint64_t bytes);

}  // namespace flamestream::common
