// Plain value types shared by the span placer and the join engine. They carry no protobuf or
// Kafka types on purpose: the correlator stage converts its wire messages into these.
//
//   correlate::Span span{.trace_id = TraceId::FromBytes(otlp.trace_id()),
//                        .span_id = SpanId::FromBytes(otlp.span_id()),
//                        .name = otlp.name(), .start_ns = ..., .end_ns = ...,
//                        .node_key = "prod/node-a", .pid = 4242};
//   engine.AddSpan(span);
//
// Ids are held as big-endian integers, so comparing them compares their wire bytes.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace flamestream::correlate {

// A W3C/OpenTelemetry trace id (16 bytes). All zero means "none".
struct TraceId {
  uint64_t hi = 0;
  uint64_t lo = 0;

  [[nodiscard]] bool empty() const { return hi == 0 && lo == 0; }
  // `bytes` must hold 16 bytes; any other length gives the empty id.
  static TraceId FromBytes(std::string_view bytes);
  // 16 raw bytes, as OTLP protobuf carries them.
  [[nodiscard]] std::string ToBytes() const;
  // 32 lower-case hex digits, as OTLP/JSON and logs carry them.
  [[nodiscard]] std::string ToHex() const;
  friend auto operator<=>(const TraceId&, const TraceId&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const TraceId& id) {
    return H::combine(std::move(h), id.hi, id.lo);
  }
};

// A W3C/OpenTelemetry span id (8 bytes). Zero means "none".
struct SpanId {
  uint64_t value = 0;

  [[nodiscard]] bool empty() const { return value == 0; }
  // `bytes` must hold 8 bytes; any other length gives the empty id.
  static SpanId FromBytes(std::string_view bytes);
  [[nodiscard]] std::string ToBytes() const;
  [[nodiscard]] std::string ToHex() const;
  friend auto operator<=>(const SpanId&, const SpanId&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const SpanId& id) {
    return H::combine(std::move(h), id.value);
  }
};

// A span after placement (see placement.h). String views need only outlive the call that
// takes the span; the engine copies (interns) what it keeps.
struct Span {
  TraceId trace_id;
  SpanId span_id;
  SpanId parent_span_id;
  std::string_view name;
  std::string_view service;  // resource attribute service.name
  int64_t start_ns = 0;      // Unix epoch nanoseconds
  int64_t end_ns = 0;        // inclusive: a sample at exactly end_ns is inside
  std::string_view node_key; // "<cluster>/<node>", lower case
  // Host pid of the process that ran the span; 0 when the router could not resolve it (such a
  // span only names samples that already carry its ids).
  uint32_t pid = 0;
  // The span's thread.id attribute; 0 when absent. Used only when it is an OS tid seen in this
  // process's samples (OpenTelemetry defines thread.id as the runtime's managed id, which is
  // often not an OS tid).
  uint64_t thread_id = 0;
};

// A profiling sample as the join needs it. Everything else the stage keeps (stack, value...)
// stays with the stage, which finds the sample again through `cookie`.
struct Sample {
  std::string_view node_key;  // the record key, "<cluster>/<node>"
  uint32_t pid = 0;           // host pid
  uint32_t tid = 0;           // OS thread id, same pid namespace as `pid`; 0 when unknown
  int64_t time_ns = 0;        // Unix epoch nanoseconds
  // Set when the agent already knew the active span (e.g. read it from the runtime): the
  // sample then joins on these ids directly instead of on time.
  TraceId trace_id;
  SpanId span_id;
  uint64_t cookie = 0;  // opaque to the engine
};

enum class MatchKind : uint8_t {
  kUnmatched,  // no span: the sample passes through unchanged (service may still be known)
  kInterval,   // joined on node, process, time and (where it applies) thread
  kDirect,     // the sample carried trace and span ids
};

// What the engine hands back for one sample. String views are valid only during the emit
// callback.
struct Emission {
  uint64_t cookie = 0;
  int64_t time_ns = 0;
  uint32_t pid = 0;
  uint32_t tid = 0;
  MatchKind kind = MatchKind::kUnmatched;
  // True when the sample arrived after the watermark had passed its timestamp: it was joined
  // at once against whatever spans were still held.
  bool late = false;
  TraceId trace_id;
  SpanId span_id;
  std::string_view span_name;
  // The service learned for the process (from any of its spans), else the matched span's.
  std::string_view service_name;
};

}  // namespace flamestream::correlate
