// Label sanitizing: the series labels every sink sends (service name, cluster, node, container
// id, pod uid, configured extra labels) are cleaned once, where series keys are formed
// (Aggregator::SeriesFor), so the file, Pyroscope and OTLP sinks see the same values.
//
//   profile::LabelSanitizer san({.max_value_length = 1024, .max_labels = 30});
//   uint32_t reasons = 0;
//   std::string v = san.Value(raw_service_name, &reasons);  // reasons: bits of LabelReason
//   std::string n = san.Name("team.name");                   // "team_name"
//
// Values: invalid UTF-8 bytes become U+FFFD, control characters (C0, DEL, C1) are removed, and
// a value longer than max_value_length bytes is cut (on a character boundary) and ends in
// "~" + 8 hex digits of a hash of the whole original value, so the result is deterministic (the
// same input always gives the same series) and two long values with a common prefix stay
// distinct series. Names (Pyroscope/Prometheus): [a-zA-Z_][a-zA-Z0-9_]*; other characters become
// '_', a leading digit gets a '_' prefix, at most max_value_length bytes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace flamestream::profile {

// Why a label was changed (bit positions; also the `reason` label of
// fs_exporter_labels_sanitized_total).
enum class LabelReason : uint32_t {
  kTooLong = 0,     // value cut to max_value_length (+ hash)
  kControl = 1,     // control characters removed
  kInvalidUtf8 = 2, // invalid UTF-8 replaced by U+FFFD
  kName = 3,        // label name rewritten to [a-zA-Z_][a-zA-Z0-9_]*
  kTooMany = 4,     // label dropped: more than max_labels per series
  kEmpty = 5,       // value empty after cleaning (replaced by "_")
};
inline constexpr size_t kLabelReasons = 6;
// "too_long", "control_chars", "invalid_utf8", "invalid_name", "too_many_labels", "empty".
std::string_view LabelReasonName(LabelReason reason);

struct LabelLimits {
  // Longest label value in bytes (Pyroscope accepts 2048 by default). 0 = no cap.
  size_t max_value_length = 1024;
  // Most labels per series, built-in ones included (Pyroscope's default limit is 30). 0 = no cap.
  size_t max_labels = 30;
};

// Deterministic 64-bit FNV-1a (stable across processes and builds, unlike absl::Hash).
uint64_t StableHash(std::string_view s);
// 8 lower-case hex digits of StableHash(s).
std::string ShortHash(std::string_view s);
// Cuts `s` to at most `max_bytes` bytes without splitting a UTF-8 sequence.
std::string_view Utf8Prefix(std::string_view s, size_t max_bytes);

class LabelSanitizer {
 public:
  explicit LabelSanitizer(LabelLimits limits = {}) : limits_(limits) {}

  // The cleaned value; bits (1 << LabelReason) of what changed are OR-ed into *reasons.
  // Counts nothing (Count() does, so a value seen for every batch is not counted each time).
  [[nodiscard]] std::string Value(std::string_view value, uint32_t* reasons = nullptr) const;
  // The cleaned label name (Pyroscope/Prometheus rules).
  [[nodiscard]] std::string Name(std::string_view name, uint32_t* reasons = nullptr) const;

  // Adds one to the counter of every reason in `reasons`.
  void Count(uint32_t reasons);
  void Count(LabelReason reason) { Count(1u << static_cast<uint32_t>(reason)); }
  // Labels changed so far for `reason` (thread-safe).
  [[nodiscard]] uint64_t count(LabelReason reason) const {
    return counts_[static_cast<size_t>(reason)].load(std::memory_order_relaxed);
  }
  [[nodiscard]] const LabelLimits& limits() const { return limits_; }

 private:
  LabelLimits limits_;
  std::array<std::atomic<uint64_t>, kLabelReasons> counts_{};
};

}  // namespace flamestream::profile
