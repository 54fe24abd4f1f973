#include "flamestream/log/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

#include <fmt/format.h>

namespace flamestream::log {

using flamestream::InvalidArgument;
using flamestream::OkStatus;

namespace {

// The process-wide sink settings (see the header for why this is the one global).
std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};
std::atomic<int> g_format{static_cast<int>(Format::kLogfmt)};

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

bool NeedsQuotes(std::string_view s) {
  if (s.empty()) {
    return true;
  }
  for (char c : s) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      return true;
    }
  }
  return false;
}

void AppendEscaped(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
}

void AppendQuoted(std::string& out, std::string_view s) {
  out += '"';
  AppendEscaped(out, s);
  out += '"';
}

std::string Timestamp(int64_t unix_ms) {
  const time_t secs = static_cast<time_t>(unix_ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:03d}Z", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     static_cast<int>(unix_ms % 1000));
}

}  // namespace

void Configure(Level min_level, Format format) {
  g_min_level.store(static_cast<int>(min_level));
  g_format.store(static_cast<int>(format));
}

Status Configure(std::string_view level, std::string_view format) {
  Level l;
  if (level == "debug") {
    l = Level::kDebug;
  } else if (level == "info") {
    l = Level::kInfo;
  } else if (level == "warn") {
    l = Level::kWarn;
  } else if (level == "error") {
    l = Level::kError;
  } else {
    return InvalidArgument("log level \"{}\" is not one of debug, info, warn, error", level);
  }
  Format f;
  if (format == "logfmt") {
    f = Format::kLogfmt;
  } else if (format == "json") {
    f = Format::kJson;
  } else {
    return InvalidArgument("log format \"{}\" is not one of logfmt, json", format);
  }
  Configure(l, f);
  return OkStatus();
}

bool Enabled(Level level) { return static_cast<int>(level) >= g_min_level.load(); }

std::string Render(Level level, std::string_view msg, Fields fields, int64_t unix_ms,
                   Format format) {
  std::string out;
  out.reserve(128);
  if (format == Format::kJson) {
    out += fmt::format("{{\"ts\":\"{}\",\"level\":\"{}\",\"msg\":", Timestamp(unix_ms),
                       LevelName(level));
    AppendQuoted(out, msg);
    for (const Field& f : fields) {
      out += ',';
      AppendQuoted(out, f.key());
      out += ':';
      if (f.is_string()) {
        AppendQuoted(out, f.value());
      } else {
        out += f.value();
      }
    }
    out += "}\n";
    return out;
  }
  out += fmt::format("ts={} level={} msg=", Timestamp(unix_ms), LevelName(level));
  AppendQuoted(out, msg);
  for (const Field& f : fields) {
    out += ' ';
    out += f.key();
    out += '=';
    if (f.is_string() && NeedsQuotes(f.value())) {
      AppendQuoted(out, f.value());
    } else {
      out += f.value();
    }
  }
  out += '\n';
  return out;
}

void Write(Level level, std::string_view msg, Fields fields) {
  if (!Enabled(level)) {
    return;
  }
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const std::string line =
      Render(level, msg, fields, now_ms, static_cast<Format>(g_format.load()));
  // One write(2) per line keeps lines whole when threads log at once.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace flamestream::log
