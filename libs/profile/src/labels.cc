#include "flamestream/profile/labels.h"

#include <fmt/format.h>

namespace flamestream::profile {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr size_t kHashSuffix = 9;                          // "~" + 8 hex digits

// Length of the valid UTF-8 sequence at s[i] (1..4), or 0 when it is invalid (overlong forms,
// surrogates and code points above U+10FFFF are invalid, as in RFC 3629).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  size_t n = 0;
  uint32_t cp = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    cp = b0 & 0x0F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

}  // namespace

std::string_view LabelReasonName(LabelReason reason) {
  switch (reason) {
    case LabelReason::kTooLong: return "too_long";
    case LabelReason::kControl: return "control_chars";
    case LabelReason::kInvalidUtf8: return "invalid_utf8";
    case LabelReason::kName: return "invalid_name";
    case LabelReason::kTooMany: return "too_many_labels";
    case LabelReason::kEmpty: return "empty";
  }
  return "unknown";
}

uint64_t StableHash(std::string_view s) {
  uint64_t h = 14695981039346656037ULL;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

std::string ShortHash(std::string_view s) {
  return fmt::format("{:08x}", static_cast<uint32_t>(StableHash(s) ^ (StableHash(s) >> 32)));
}

std::string_view Utf8Prefix(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t end = max_bytes;
  // Back up over continuation bytes so no sequence is split.
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

std::string LabelSanitizer::Value(std::string_view value, uint32_t* reasons) const {
  uint32_t why = 0;
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size();) {
    const size_t n = Utf8SequenceLength(value, i);
    if (n == 0) {
      why |= 1u << static_cast<uint32_t>(LabelReason::kInvalidUtf8);
      out += kReplacement;
      ++i;
      continue;
    }
    const auto b0 = static_cast<unsigned char>(value[i]);
    const bool c0 = n == 1 && (b0 < 0x20 || b0 == 0x7F);
    // C1 controls U+0080..U+009F are encoded C2 80..C2 9F.
    const bool c1 = n == 2 && b0 == 0xC2 && static_cast<unsigned char>(value[i + 1]) <= 0x9F;
    if (c0 || c1) {
      why |= 1u << static_cast<uint32_t>(LabelReason::kControl);
    } else {
      out.append(value.substr(i, n));
    }
    i += n;
  }
  if (out.empty() && !value.empty()) {
    why |= 1u << static_cast<uint32_t>(LabelReason::kEmpty);
    out = "_~" + ShortHash(value);
  }
  const size_t max = limits_.max_value_length;
  if (max > 0 && out.size() > max) {
    why |= 1u << static_cast<uint32_t>(LabelReason::kTooLong);
    const std::string hash = ShortHash(value);  // of the whole original value
    if (max <= kHashSuffix) {
      out = hash.substr(0, max);
    } else {
      out = std::string(Utf8Prefix(out, max - kHashSuffix)) + "~" + hash;
    }
  }
  if (reasons != nullptr) *reasons |= why;
  return out;
}

std::string LabelSanitizer::Name(std::string_view name, uint32_t* reasons) const {
  std::string out;
  out.reserve(name.size() + 1);
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    out.push_back(ok ? c : '_');
  }
  if (out.empty() || (out[0] >= '0' && out[0] <= '9')) out.insert(out.begin(), '_');
  const size_t max = limits_.max_value_length;
  if (max > 0 && out.size() > max) out.resize(max);
  if (out != name && reasons != nullptr) *reasons |= 1u << static_cast<uint32_t>(LabelReason::kName);
  return out;
}

void LabelSanitizer::Count(uint32_t reasons) {
  for (size_t r = 0; r < kLabelReasons; ++r) {
    if ((reasons & (1u << r)) != 0) counts_[r].fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace flamestream::profile
