// Test helpers shared by the join engine tests: a harness with a fake clock that records
// every emission (with its strings copied).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flamestream/correlate/join_engine.h"

namespace flamestream::correlate::testing {

inline constexpr int64_t kSec = 1'000'000'000;
// An arbitrary epoch time so the clock-skew clamp sees realistic values.
inline constexpr int64_t kBase = 1'700'000'000 * kSec;

struct Out {
  uint64_t cookie = 0;
  int64_t time_ns = 0;
  MatchKind kind = MatchKind::kUnmatched;
  TraceId trace;
  SpanId span;
  std::string name;
  std::string service;
  bool late = false;
};

class Harness {
 public:
  explicit Harness(JoinConfig config = {}) : engine_(config, [this] { return now; }) {}

  int64_t now = kBase + 3600 * kSec;

  JoinEngine& engine() { return engine_; }
  void Advance() {
    engine_.Advance([this](const Emission& e) { Record(e); });
  }
  void Flush() {
    engine_.Flush([this](const Emission& e) { Record(e); });
  }
  const std::vector<Out>& out() const { return out_; }
  // The emission for `cookie` (fails the test when there is not exactly one).
  const Out* Find(uint64_t cookie) const {
    const Out* found = nullptr;
    for (const Out& o : out_) {
      if (o.cookie == cookie) {
        if (found != nullptr) return nullptr;
        found = &o;
      }
    }
    return found;
  }

 private:
  void Record(const Emission& e) {
    out_.push_back(Out{.cookie = e.cookie, .time_ns = e.time_ns, .kind = e.kind,
                       .trace = e.trace_id, .span = e.span_id, .name = std::string(e.span_name),
                       .service = std::string(e.service_name), .late = e.late});
  }

  JoinEngine engine_;
  std::vector<Out> out_;
};

}  // namespace flamestream::correlate::testing
