// Structured logging: one line per event, logfmt (`key=value`) or JSON, to stderr.
//
//   namespace log = flamestream::log;
//   log::Info("consumer started", {{"group", group_id}, {"partitions", 8}});
//   log::Error("delivery failed", {{"topic", topic}, {"error", status.ToString()}});
//   // ts=2026-11-23T13:01:02.345Z level=info msg="consumer started" group=fs partitions=8
//
// The sink (level and format) is the one piece of process-wide state in Flamestream: a
// service's main sets it once with Configure() before it starts threads. Log an error once,
// where it is handled, not at every layer it passes through.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "flamestream/common/status.h"

namespace flamestream::log {

enum class Level : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class Format { kLogfmt, kJson };

// A key and its value, rendered to text at the call site.
class Field {
 public:
  Field(std::string_view key, std::string_view value) : key_(key), value_(value), quote_(true) {}
  Field(std::string_view key, const std::string& value) : Field(key, std::string_view(value)) {}
  Field(std::string_view key, const char* value) : Field(key, std::string_view(value)) {}
  Field(std::string_view key, bool value) : key_(key), value_(value ? "true" : "false") {}
  Field(std::string_view key, int value) : key_(key), value_(std::to_string(value)) {}
  Field(std::string_view key, long value) : key_(key), value_(std::to_string(value)) {}
  Field(std::string_view key, long long value) : key_(key), value_(std::to_string(value)) {}
  Field(std::string_view key, unsigned value) : key_(key), value_(std::to_string(value)) {}
  Field(std::string_view key, unsigned long value) : key_(key), value_(std::to_string(value)) {}
  Field(std::string_view key, unsigned long long value)
      : key_(key), value_(std::to_string(value)) {}
  Field(std::string_view key, double value) : key_(key), value_(std::to_string(value)) {}
  Field(std::string_view key, const Status& status)
      : key_(key), value_(status.ToString()), quote_(true) {}

  [[nodiscard]] std::string_view key() const { return key_; }
  [[nodiscard]] const std::string& value() const { return value_; }
  // Strings are quoted when needed; numbers and booleans never are.
  [[nodiscard]] bool is_string() const { return quote_; }

 private:
  std::string_view key_;
  std::string value_;
  bool quote_ = false;
};

using Fields = std::initializer_list<Field>;

// Sets the minimum level and the format. Call once from main before starting threads.
void Configure(Level min_level, Format format);
// Parses "debug|info|warn|error" and "logfmt|json".
Status Configure(std::string_view level, std::string_view format);
[[nodiscard]] bool Enabled(Level level);

// Renders one line without writing it (tests and the sink use this).
std::string Render(Level level, std::string_view msg, Fields fields, int64_t unix_ms,
                   Format format);

void Write(Level level, std::string_view msg, Fields fields);
inline void Debug(std::string_view msg, Fields fields = {}) { Write(Level::kDebug, msg, fields); }
inline void Info(std::string_view msg, Fields fields = {}) { Write(Level::kInfo, msg, fields); }
inline void Warn(std::string_view msg, Fields fields = {}) { Write(Level::kWarn, msg, fields); }
inline void Error(std::string_view msg, Fields fields = {}) { Write(Level::kError, msg, fields); }

}  // namespace flamestream::log
