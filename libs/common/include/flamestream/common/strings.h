// Small string helpers that std lacks before C++23.
//
//   Trim("  a b ")            -> "a b"
//   ToLower("MiB")            -> "mib"
//   Split("a,b,,c", ',')      -> {"a", "b", "", "c"}
//   ParseInt<int64_t>("-42")  -> Result<int64_t>{-42}
#pragma once

#include <charconv>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "flamestream/common/status.h"

namespace flamestream::common {

std::string_view Trim(std::string_view s);
std::string ToLower(std::string_view s);
std::vector<std::string> Split(std::string_view s, char sep);
std::vector<std::string> SplitNonEmpty(std::string_view s, char sep);
std::string Join(const std::vector<std::string>& parts, std::string_view sep);
// Replaces every `from` with `to` (from must be non-empty).
std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to);
// Lower-case hex of raw bytes ("\x01\xab" -> "01ab") and back.
std::string HexEncode(std::string_view bytes);
Result<std::string> HexDecode(std::string_view hex);

// Parses a whole string as an integer in `base` (16 accepts an optional 0x prefix).
template <typename T>
  requires std::is_integral_v<T>
Result<T> ParseInt(std::string_view s, int base = 10) {
  s = Trim(s);
  if (base == 16 && s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
  }
  T value{};
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) {
    return InvalidArgument("\"{}\" is not an integer{}", std::string(s),
                           ec == std::errc::result_out_of_range ? " in range" : "");
  }
  return value;
}

}  // namespace flamestream::common
