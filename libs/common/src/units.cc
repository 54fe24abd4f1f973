#include "flamestream/common/units.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <ctime>

#include <fmt/format.h>

#include "flamestream/common/strings.h"

namespace flamestream::common {
namespace {

// Splits a leading decimal number (digits with an optional fraction) off `text`.
bool TakeNumber(std::string_view& text, double& out) {
  size_t i = 0;
  bool digits = false;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) != 0)) {
    ++i;
    digits = true;
  }
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) != 0)) {
      ++i;
      digits = true;
    }
  }
  if (!digits) {
    return false;
  }
  out = std::stod(std::string(text.substr(0, i)));
  text.remove_prefix(i);
  return true;
}

}  // namespace

Result<std::chrono::nanoseconds> ParseDuration(std::string_view text) {
  const std::string original(text);
  text = Trim(text);
  if (text == "0") {
    return std::chrono::nanoseconds(0);
  }
  if (text.empty()) {
    return InvalidArgument("empty duration; expected e.g. 30s, 250ms, 1m30s");
  }
  long double total = 0;
  while (!text.empty()) {
    double value = 0;
    if (!TakeNumber(text, value)) {
      return InvalidArgument("invalid duration \"{}\"; expected e.g. 30s, 250ms, 1m30s", original);
    }
    size_t n = 0;
    while (n < text.size() && (std::isalpha(static_cast<unsigned char>(text[n])) != 0)) {
      ++n;
    }
    const std::string_view unit = text.substr(0, n);
    text.remove_prefix(n);
    long double scale = 0;
    if (unit == "ns") {
      scale = 1;
    } else if (unit == "us" || unit == "µs") {
      scale = 1e3;
    } else if (unit == "ms") {
      scale = 1e6;
    } else if (unit == "s") {
      scale = 1e9;
    } else if (unit == "m") {
      scale = 60e9;
    } else if (unit == "h") {
      scale = 3600e9;
    } else if (unit == "d") {
      scale = 86400e9;
    } else {
      return InvalidArgument("invalid duration \"{}\": unit \"{}\" is not one of ns, us, ms, s, m, h, d",
                             original, unit);
    }
    total += value * scale;
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(total)));
}

Result<uint64_t> ParseSize(std::string_view text) {
  const std::string original(text);
  text = Trim(text);
  double value = 0;
  if (!TakeNumber(text, value)) {
    return InvalidArgument("invalid size \"{}\"; expected e.g. 64MiB, 512KB, 1048576", original);
  }
  const std::string unit = ToLower(Trim(text));
  long double scale = 0;
  if (unit.empty() || unit == "b") {
    scale = 1;
  } else if (unit == "kb" || unit == "k") {
    scale = 1e3;
  } else if (unit == "mb" || unit == "m") {
    scale = 1e6;
  } else if (unit == "gb" || unit == "g") {
    scale = 1e9;
  } else if (unit == "tb" || unit == "t") {
    scale = 1e12;
  } else if (unit == "kib") {
    scale = 1024.0L;
  } else if (unit == "mib") {
    scale = 1024.0L * 1024;
  } else if (unit == "gib") {
    scale = 1024.0L * 1024 * 1024;
  } else if (unit == "tib") {
    scale = 1024.0L * 1024 * 1024 * 1024;
  } else {
    return InvalidArgument(
        "invalid size \"{}\": unit \"{}\" is not one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB",
        original, unit);
  }
  return static_cast<uint64_t>(std::llround(value * scale));
}

Result<int64_t> ParseTimestampNs(std::string_view text, int64_t now_ns) {
  const std::string original(text);
  text = Trim(text);
  if (text == "now") {
    return now_ns;
  }
  if (!text.empty() && text.front() == '-') {
    auto d = ParseDuration(text.substr(1));
    if (!d.ok()) {
      return InvalidArgument("invalid time \"{}\": {}", original, d.error().message());
    }
    return now_ns - d->count();
  }
  bool digits = !text.empty();
  for (char c : text) {
    digits = digits && std::isdigit(static_cast<unsigned char>(c)) != 0;
  }
  if (digits) {
    auto v = ParseInt<int64_t>(text);
    if (!v.ok()) {
      return InvalidArgument("invalid time \"{}\"", original);
    }
    switch (text.size()) {
      case 10:
        return *v * 1000000000;
      case 13:
        return *v * 1000000;
      case 16:
        return *v * 1000;
      case 19:
        return *v;
      default:
        return InvalidArgument(
            "invalid time \"{}\": Unix time needs 10 (s), 13 (ms), 16 (us) or 19 (ns) digits",
            original);
    }
  }
  // RFC 3339, UTC only.
  struct tm tm {};
  const std::string t(text);
  const char* rest = strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) {
    return InvalidArgument(
        "invalid time \"{}\"; expected now, -15m, 2026-11-23T13:00:00Z or Unix seconds",
        original);
  }
  int64_t frac_ns = 0;
  if (*rest == '.') {
    ++rest;
    int64_t scale = 100000000;
    while (std::isdigit(static_cast<unsigned char>(*rest)) != 0) {
      frac_ns += (*rest - '0') * scale;
      scale /= 10;
      ++rest;
    }
  }
  if (std::string_view(rest) != "Z") {
    return InvalidArgument("invalid time \"{}\": write it in UTC with a trailing Z", original);
  }
  return static_cast<int64_t>(timegm(&tm)) * 1000000000 + frac_ns;
}

std::string FormatDuration(std::chrono::nanoseconds d) {
  int64_t ns = d.count();
  if (ns == 0) {
    return "0s";
  }
  struct Unit {
    const char* name;
    int64_t ns;
  };
  static constexpr Unit kUnits[] = {{"h", 3600000000000},
                                    {"m", 60000000000},
                                    {"s", 1000000000},
                                    {"ms", 1000000},
                                    {"us", 1000},
                                    {"ns", 1}};
  std::string out;
  for (const Unit& u : kUnits) {
    if (ns >= u.ns) {
      out += fmt::format("{}{}", ns / u.ns, u.name);
      ns %= u.ns;
    }
  }
  return out;
}

std::string FormatSize(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"TiB", "GiB", "MiB", "KiB"};
  static constexpr uint64_t kScales[] = {1ULL << 40, 1ULL << 30, 1ULL << 20, 1ULL << 10};
  for (size_t i = 0; i < 4; ++i) {
    if (bytes != 0 && bytes % kScales[i] == 0) {
      return fmt::format("{}{}", bytes / kScales[i], kUnits[i]);
    }
  }
  return fmt::format("{}B", bytes);
}

}  // namespace flamestream::common
