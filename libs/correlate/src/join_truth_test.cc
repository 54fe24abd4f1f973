// Generated-truth tests: random nested and overlapping spans over several processes and
// threads, spans and samples arriving out of order, some within and some beyond the allowed
// lateness. The truth is computed by brute force over all spans, independently of the
// engine's data structures.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <utility>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "flamestream/correlate/join_engine.h"
#include "join_test_util.h"

namespace flamestream::correlate {
namespace {

using testing::kBase;
using testing::kSec;

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kLateness = 30 * kSec;
constexpr int64_t kDuration = 120 * kSec;

struct GProcess {
  std::string node;
  uint32_t pid;
  std::vector<uint32_t> tids;
  std::string service;
};

struct GSpan {
  size_t process;
  TraceId trace;
  SpanId id;
  SpanId parent;
  int64_t start, end;
  uint64_t thread;
  std::string name;
  std::string service;
  int64_t arrival;
};

struct GSample {
  size_t process;
  uint32_t tid;
  int64_t t;
  TraceId trace;  // direct join when span is set
  SpanId span;
  int64_t arrival;
};

struct Event {
  int64_t arrival;
  bool is_span;
  size_t index;
};

struct Scenario {
  std::vector<GProcess> processes;
  std::vector<GSpan> spans;
  std::vector<GSample> samples;
  std::vector<Event> events;  // in arrival order
};

Scenario Generate(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](int64_t lo, int64_t hi) {  // [lo, hi]
    return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
  };
  auto chance = [&](int percent) { return static_cast<int>(rng() % 100) < percent; };
  Scenario sc;
  // Two nodes; pid 100 exists on both (keys must keep them apart).
  sc.processes = {{"prod/n1", 100, {100, 101, 102, 103}, "svc-a"},
                  {"prod/n1", 200, {200, 201, 202}, "svc-b"},
                  {"prod/n2", 100, {100, 150, 151}, "svc-c"}};
  uint64_t trace_counter = 0;
  // Span arrival: mostly a few seconds after the end (SDK export), some close to the
  // lateness, some beyond it.
  auto span_delay = [&] {
    const int r = static_cast<int>(rng() % 100);
    if (r < 85) return uniform(0, 8 * kSec);
    if (r < 95) return uniform(8 * kSec, 29 * kSec);
    return uniform(31 * kSec, 90 * kSec);
  };
  for (size_t pi = 0; pi < sc.processes.size(); ++pi) {
    const GProcess& proc = sc.processes[pi];
    const int roots = 150;
    for (int r = 0; r < roots; ++r) {
      const TraceId trace{.hi = seed, .lo = ++trace_counter};
      // Thread binding of the request: an OS tid, a runtime-managed id, or none.
      auto pick_thread = [&]() -> uint64_t {
        const int k = static_cast<int>(rng() % 10);
        if (k < 4) return proc.tids[rng() % proc.tids.size()];
        if (k < 7) return static_cast<uint64_t>(uniform(1, 8));  // never an OS tid here
        return 0;
      };
      struct Pending {
        int64_t start, end;
        SpanId id;
        uint64_t thread;
        int depth;
      };
      const int64_t start = uniform(0, kDuration);
      const int64_t end = start + (chance(5) ? 0 : uniform(10 * kMs, 8 * kSec));
      std::vector<Pending> stack;
      auto add = [&](int64_t s, int64_t e, SpanId parent, uint64_t thread, int depth) {
        GSpan g{.process = pi, .trace = trace, .id = SpanId{rng() | 1}, .parent = parent,
                .start = s, .end = e, .thread = thread,
                .name = "op-" + std::to_string(depth) + "-" + std::to_string(rng() % 1000),
                .service = chance(2) ? "aaa-other" : proc.service, .arrival = 0};
        g.arrival = e + span_delay();
        sc.spans.push_back(g);
        stack.push_back({s, e, g.id, thread, depth});
      };
      add(start, end, SpanId{}, pick_thread(), 0);
      while (!stack.empty()) {
        const Pending p = stack.back();
        stack.pop_back();
        if (p.depth >= 4) continue;
        const int children = static_cast<int>(rng() % 4);
        for (int c = 0; c < children; ++c) {
          int64_t s = 0;
          int64_t e = 0;
          const int shape = static_cast<int>(rng() % 10);
          if (shape == 0) {  // identical to the parent (tight wrapper)
            s = p.start;
            e = p.end;
          } else if (shape == 1) {  // starts with the parent
            s = p.start;
            e = uniform(p.start, p.end);
          } else if (shape == 2) {  // zero length
            s = e = uniform(p.start, p.end);
          } else {
            s = uniform(p.start, p.end);
            e = uniform(s, p.end);
          }
          // Children mostly stay on the parent's thread; some hop (async continuations).
          const uint64_t thread = chance(80) ? p.thread : pick_thread();
          add(s, e, p.id, thread, p.depth + 1);
        }
      }
    }
    // Warm-up: one sample per thread before anything else, so every OS tid is "seen" from the
    // start (then the ideal truth's thread rule is time-independent).
    for (uint32_t tid : proc.tids) {
      sc.samples.push_back({.process = pi, .tid = tid, .t = -kSec, .arrival = -kSec});
    }
  }
  // Samples: every thread at ~10 Hz with jitter.
  for (size_t pi = 0; pi < sc.processes.size(); ++pi) {
    for (uint32_t tid : sc.processes[pi].tids) {
      for (int64_t t = 0; t < kDuration + 10 * kSec; t += 100 * kMs) {
        GSample s{.process = pi, .tid = tid, .t = t + uniform(-20 * kMs, 20 * kMs)};
        s.arrival = s.t + (chance(1) ? uniform(31 * kSec, 60 * kSec) : uniform(0, 2 * kSec));
        sc.samples.push_back(s);
      }
    }
  }
  // Some samples carry ids (the agent read them from the runtime): any span of the process
  // holding t, or an unknown one.
  for (GSample& s : sc.samples) {
    if (s.t < 0 || !chance(5)) continue;
    if (chance(10)) {
      s.trace = TraceId{.hi = 7, .lo = 7};
      s.span = SpanId{rng() | 1};
      continue;
    }
    for (const GSpan& g : sc.spans) {
      if (g.process == s.process && g.start <= s.t && s.t <= g.end) {
        s.trace = g.trace;
        s.span = g.id;
        break;
      }
    }
  }
  for (size_t i = 0; i < sc.spans.size(); ++i) sc.events.push_back({sc.spans[i].arrival, true, i});
  for (size_t i = 0; i < sc.samples.size(); ++i) {
    sc.events.push_back({sc.samples[i].arrival, false, i});
  }
  std::sort(sc.events.begin(), sc.events.end(), [](const Event& a, const Event& b) {
    return std::tie(a.arrival, a.is_span, a.index) < std::tie(b.arrival, b.is_span, b.index);
  });
  return sc;
}

Span ToSpan(const Scenario& sc, const GSpan& g) {
  const GProcess& p = sc.processes[g.process];
  return Span{.trace_id = g.trace, .span_id = g.id, .parent_span_id = g.parent, .name = g.name,
              .service = g.service, .start_ns = kBase + g.start, .end_ns = kBase + g.end,
              .node_key = p.node, .pid = p.pid, .thread_id = g.thread};
}

Sample ToSample(const Scenario& sc, const GSample& s, uint64_t cookie) {
  const GProcess& p = sc.processes[s.process];
  return Sample{.node_key = p.node, .pid = p.pid, .tid = s.tid, .time_ns = kBase + s.t,
                .trace_id = s.trace, .span_id = s.span, .cookie = cookie};
}

struct Result {
  bool emitted = false;
  size_t at_event = 0;  // the event after which it was emitted (events.size() for Flush)
  MatchKind kind = MatchKind::kUnmatched;
  SpanId span;
  std::string name;
  std::string service;
  bool late = false;
};

// Feeds the engine over events [from, events.size()), calling Advance after each event.
// `skip_span_before` skips span events with index < it (already replayed).
void Feed(JoinEngine& engine, const Scenario& sc, size_t from, size_t skip_span_before,
         std::vector<Result>& results) {
  size_t current = 0;
  auto record = [&](const Emission& e) {
    Result& r = results[e.cookie];
    EXPECT_FALSE(r.emitted) << "sample " << e.cookie << " emitted twice";
    r = Result{.emitted = true, .at_event = current, .kind = e.kind, .span = e.span_id,
               .name = std::string(e.span_name), .service = std::string(e.service_name),
               .late = e.late};
  };
  for (size_t i = from; i < sc.events.size(); ++i) {
    const Event& ev = sc.events[i];
    if (ev.is_span) {
      if (i < skip_span_before) continue;
      engine.AddSpan(ToSpan(sc, sc.spans[ev.index]));
    } else {
      engine.AddSample(ToSample(sc, sc.samples[ev.index], ev.index));
    }
    current = i;
    engine.Advance(record);
  }
  current = sc.events.size();
  engine.Flush(record);
}

// The brute-force oracle.
class Oracle {
 public:
  explicit Oracle(const Scenario& sc) : sc_(sc) {
    const size_t n = sc.events.size();
    wm_after_.resize(n);
    span_pos_.resize(sc.spans.size());
    sample_pos_.resize(sc.samples.size());
    int64_t wm = std::numeric_limits<int64_t>::min();
    int64_t max_t = std::numeric_limits<int64_t>::min();
    for (size_t i = 0; i < n; ++i) {
      const Event& ev = sc.events[i];
      if (ev.is_span) {
        span_pos_[ev.index] = i;
        const GSpan& g = sc.spans[ev.index];
        if (wm > kBase + g.end) {
          ++late_spans;
        } else if (wm > kBase + g.start) {
          ++partially_late_spans;
        }
      } else {
        sample_pos_[ev.index] = i;
        const GSample& s = sc.samples[ev.index];
        first_seen_.emplace(std::make_pair(s.process, s.tid), i);  // keeps the first
        if (kBase + s.t < wm) ++late_samples;
        max_t = std::max(max_t, kBase + s.t);
        wm = std::max(wm, max_t - kLateness);
      }
      wm_after_[i] = wm;
    }
  }

  // What the engine must emit for sample `si` when all events from the start are fed.
  Result Expected(size_t si) const {
    const GSample& s = sc_.samples[si];
    const size_t a = sample_pos_[si];
    const int64_t t = kBase + s.t;
    const int64_t wm_before = a == 0 ? std::numeric_limits<int64_t>::min() : wm_after_[a - 1];
    Result r;
    r.emitted = true;
    r.late = t < wm_before;
    if (r.late) {
      r.at_event = a;
    } else {
      // The first event after which the watermark exceeds t (the watermark never falls).
      auto it = std::upper_bound(wm_after_.begin() + static_cast<ptrdiff_t>(a), wm_after_.end(), t);
      r.at_event = static_cast<size_t>(it - wm_after_.begin());
    }
    const int64_t floor = (r.late ? wm_before : t) - kLateness;
    const size_t e = r.at_event;
    auto arrived = [&](size_t gi) { return span_pos_[gi] <= e; };
    r.service = ServiceAt(s.process, e);
    if (!s.span.empty()) {
      r.kind = MatchKind::kDirect;
      r.span = s.span;
      for (size_t gi = 0; gi < sc_.spans.size(); ++gi) {
        const GSpan& g = sc_.spans[gi];
        if (g.trace == s.trace && g.id == s.span && arrived(gi) && kBase + g.end >= floor) {
          r.name = g.name;
          if (r.service.empty()) r.service = g.service;
        }
      }
      return r;
    }
    const int64_t w = Winner(s, t, floor, [&](size_t gi) { return arrived(gi); },
                             [&](uint32_t tid) { return TidSeenAt(s.process, tid, e); });
    if (w >= 0) {
      const GSpan& g = sc_.spans[static_cast<size_t>(w)];
      r.kind = MatchKind::kInterval;
      r.span = g.id;
      r.name = g.name;
      if (r.service.empty()) r.service = g.service;
    }
    return r;
  }

  // The ideal answer: every span known, no lateness, no expiry.
  int64_t Ideal(size_t si) const {
    const GSample& s = sc_.samples[si];
    return Winner(s, kBase + s.t, std::numeric_limits<int64_t>::min(), [](size_t) { return true; },
                  [&](uint32_t tid) { return IsOsTid(s.process, tid); });
  }

  // True when a span that would hold the sample (ideally) arrived after its emission.
  bool HadLateSpan(size_t si, size_t emitted_at) const {
    const GSample& s = sc_.samples[si];
    const int64_t t = kBase + s.t;
    for (size_t gi = 0; gi < sc_.spans.size(); ++gi) {
      const GSpan& g = sc_.spans[gi];
      const bool holds = s.span.empty() ? (g.process == s.process && kBase + g.start <= t &&
                                           t <= kBase + g.end)
                                        : (g.trace == s.trace && g.id == s.span);
      if (holds && span_pos_[gi] > emitted_at) return true;
    }
    return false;
  }

  uint64_t late_spans = 0;
  uint64_t partially_late_spans = 0;
  uint64_t late_samples = 0;

 private:
  template <typename Arrived, typename Seen>
  int64_t Winner(const GSample& s, int64_t t, int64_t floor, Arrived arrived, Seen seen) const {
    std::vector<size_t> cands;
    for (size_t gi = 0; gi < sc_.spans.size(); ++gi) {
      const GSpan& g = sc_.spans[gi];
      if (g.process != s.process || !arrived(gi)) continue;
      const int64_t start = kBase + g.start;
      const int64_t end = kBase + g.end;
      if (start > t || end < t || end < floor) continue;
      if (g.thread != 0 && seen(static_cast<uint32_t>(g.thread)) && g.thread != s.tid) continue;
      cands.push_back(gi);
    }
    if (cands.empty()) return -1;
    // Latest start, then earliest end.
    int64_t best_start = std::numeric_limits<int64_t>::min();
    int64_t best_end = std::numeric_limits<int64_t>::max();
    for (size_t gi : cands) {
      const GSpan& g = sc_.spans[gi];
      if (g.start > best_start || (g.start == best_start && g.end < best_end)) {
        best_start = g.start;
        best_end = g.end;
      }
    }
    std::erase_if(cands, [&](size_t gi) {
      return sc_.spans[gi].start != best_start || sc_.spans[gi].end != best_end;
    });
    // Tie: not the parent of another tied span; then the largest (span id, trace id).
    int64_t winner = -1;
    for (int pass = 0; pass < 2 && winner < 0; ++pass) {
      for (size_t a : cands) {
        bool parent = false;
        for (size_t b : cands) {
          if (pass == 0 && a != b && sc_.spans[b].parent == sc_.spans[a].id &&
              sc_.spans[b].trace == sc_.spans[a].trace) {
            parent = true;
          }
        }
        if (parent) continue;
        if (winner < 0 || std::tie(sc_.spans[a].id, sc_.spans[a].trace) >
                              std::tie(sc_.spans[static_cast<size_t>(winner)].id,
                                       sc_.spans[static_cast<size_t>(winner)].trace)) {
          winner = static_cast<int64_t>(a);
        }
      }
    }
    return winner;
  }

  bool IsOsTid(size_t process, uint32_t tid) const {
    const auto& tids = sc_.processes[process].tids;
    return std::find(tids.begin(), tids.end(), tid) != tids.end();
  }
  bool TidSeenAt(size_t process, uint32_t tid, size_t e) const {
    auto it = first_seen_.find({process, tid});
    return it != first_seen_.end() && it->second <= e;
  }
  std::string ServiceAt(size_t process, size_t e) const {
    std::string best;
    for (size_t gi = 0; gi < sc_.spans.size(); ++gi) {
      const GSpan& g = sc_.spans[gi];
      if (g.process == process && span_pos_[gi] <= e && (best.empty() || g.service < best)) {
        best = g.service;
      }
    }
    return best;
  }

  const Scenario& sc_;
  std::vector<int64_t> wm_after_;
  std::vector<size_t> span_pos_;
  std::vector<size_t> sample_pos_;
  std::map<std::pair<size_t, uint32_t>, size_t> first_seen_;  // (process, tid) -> first event
};

JoinConfig TestConfig() {
  JoinConfig c;
  c.allowed_lateness = std::chrono::nanoseconds(kLateness);
  return c;
}

class JoinTruth : public ::testing::TestWithParam<uint64_t> {};

TEST_P(JoinTruth, EveryAssignmentMatchesTheBruteForceTruth) {
  const Scenario sc = Generate(GetParam());
  const Oracle oracle(sc);
  int64_t now = kBase + kDuration + 3600 * kSec;  // fixed: never idle, nothing clamped
  JoinEngine engine(TestConfig(), [&now] { return now; });
  std::vector<Result> got(sc.samples.size());
  Feed(engine, sc, 0, 0, got);

  size_t inside = 0, inside_matched = 0, beyond = 0, thread_bound = 0, ties = 0, direct = 0;
  for (size_t si = 0; si < sc.samples.size(); ++si) {
    SCOPED_TRACE(si);
    const Result want = oracle.Expected(si);
    const Result& r = got[si];
    ASSERT_TRUE(r.emitted);
    ASSERT_EQ(r.at_event, want.at_event);
    ASSERT_EQ(r.late, want.late);
    ASSERT_EQ(static_cast<int>(r.kind), static_cast<int>(want.kind));
    ASSERT_EQ(r.span, want.span);
    ASSERT_EQ(r.name, want.name);
    ASSERT_EQ(r.service, want.service);
    // Inside lateness (the sample was on time and every span that holds it arrived before it
    // left): the result is the ideal one.
    const bool beyond_lateness = r.late || oracle.HadLateSpan(si, r.at_event);
    if (beyond_lateness) {
      ++beyond;
      continue;
    }
    ++inside;
    if (sc.samples[si].span.empty()) {
      const int64_t ideal = oracle.Ideal(si);
      ASSERT_EQ(r.span, ideal < 0 ? SpanId{} : sc.spans[static_cast<size_t>(ideal)].id);
      if (ideal >= 0) {
        ++inside_matched;
        const GSpan& g = sc.spans[static_cast<size_t>(ideal)];
        if (g.thread >= 100) ++thread_bound;
        for (const GSpan& o : sc.spans) {
          if (&o != &g && o.process == g.process && o.start == g.start && o.end == g.end) {
            ++ties;
            break;
          }
        }
      }
    } else {
      ++direct;
    }
  }
  const JoinCounters& c = engine.counters();
  EXPECT_EQ(c.late_samples, oracle.late_samples);
  EXPECT_EQ(c.late_spans, oracle.late_spans);
  EXPECT_EQ(c.partially_late_spans, oracle.partially_late_spans);
  EXPECT_EQ(c.samples_in, sc.samples.size());
  EXPECT_EQ(c.samples_matched + c.samples_direct + c.samples_unmatched, sc.samples.size());
  EXPECT_EQ(engine.held_samples(), 0u);
  // The scenario exercises what it claims to.
  EXPECT_GT(inside_matched, 1000u);
  EXPECT_GT(thread_bound, 100u);
  EXPECT_GT(ties, 10u);
  EXPECT_GT(direct, 100u);
  EXPECT_GT(beyond, 10u);
  EXPECT_GT(oracle.late_spans, 0u);
  EXPECT_GT(oracle.late_samples, 0u);
  std::printf("seed %llu: %zu samples, %zu spans; inside lateness %zu (%zu matched, %zu thread-bound, "
              "%zu ties, %zu direct), beyond lateness %zu; late spans %llu, partially late %llu, "
              "late samples %llu\n",
              static_cast<unsigned long long>(GetParam()), sc.samples.size(), sc.spans.size(), inside,
              inside_matched, thread_bound, ties, direct, beyond,
              static_cast<unsigned long long>(c.late_spans),
              static_cast<unsigned long long>(c.partially_late_spans),
              static_cast<unsigned long long>(c.late_samples));
}

// Kill the engine at several points and rebuild it the way the stage does: restore the
// watermark stored with the commit, replay the spans ending at or after SpanReplayStartNs()
// from the keyed topic, feed the earlier samples' threads, re-read samples from the committed
// one. Every re-emitted sample whose spans were within lateness gets the same match.
TEST_P(JoinTruth, RestartRebuildsTheSameMatches) {
  const Scenario sc = Generate(GetParam());
  int64_t now = kBase + kDuration + 3600 * kSec;
  std::vector<Result> first(sc.samples.size());
  {
    JoinEngine engine(TestConfig(), [&now] { return now; });
    Feed(engine, sc, 0, 0, first);
  }
  const Oracle oracle(sc);
  for (size_t cut : {sc.events.size() / 4, sc.events.size() / 2, sc.events.size() * 9 / 10}) {
    SCOPED_TRACE(cut);
    // The crashed engine, up to the cut.
    JoinEngine before(TestConfig(), [&now] { return now; });
    for (size_t i = 0; i < cut; ++i) {
      const Event& ev = sc.events[i];
      if (ev.is_span) {
        before.AddSpan(ToSpan(sc, sc.spans[ev.index]));
      } else {
        before.AddSample(ToSample(sc, sc.samples[ev.index], ev.index));
      }
      before.Advance([](const Emission&) {});
    }
    const JoinEngine::CommitPoint commit = before.OldestUnemitted();
    ASSERT_TRUE(commit.any_held);
    size_t committed = 0;  // event index of the committed sample
    while (sc.events[committed].is_span || sc.events[committed].index != commit.cookie) ++committed;

    JoinEngine after(TestConfig(), [&now] { return now; });
    after.RestoreWatermark(commit.watermark_ns);
    const int64_t replay_from = after.SpanReplayStartNs();
    for (size_t i = 0; i < cut; ++i) {  // the keyed-span topic, re-read
      const Event& ev = sc.events[i];
      if (ev.is_span && kBase + sc.spans[ev.index].end >= replay_from) {
        after.AddSpan(ToSpan(sc, sc.spans[ev.index]), SpanOrigin::kReplay);
      } else if (!ev.is_span && i < committed) {
        const GSample& s = sc.samples[ev.index];
        after.ObserveThread(sc.processes[s.process].node, sc.processes[s.process].pid, s.tid,
                            kBase + s.t);
      }
    }
    EXPECT_EQ(after.counters().late_spans, 0u);
    std::vector<Result> second(sc.samples.size());
    Feed(after, sc, committed, cut, second);
    size_t compared = 0, skipped = 0;
    for (size_t i = committed; i < sc.events.size(); ++i) {
      const Event& ev = sc.events[i];
      if (ev.is_span) continue;
      const Result& a = first[ev.index];
      const Result& b = second[ev.index];
      ASSERT_TRUE(b.emitted) << "sample " << ev.index << " lost in the restart";
      if (a.late || oracle.HadLateSpan(ev.index, a.at_event)) {
        ++skipped;
        continue;
      }
      ++compared;
      ASSERT_EQ(static_cast<int>(a.kind), static_cast<int>(b.kind)) << "sample " << ev.index;
      ASSERT_EQ(a.span, b.span) << "sample " << ev.index;
      ASSERT_EQ(a.name, b.name);
      ASSERT_EQ(a.service, b.service);
    }
    EXPECT_GT(compared, 1000u);
    std::printf("cut %zu: compared %zu re-emitted samples, %zu beyond lateness skipped\n", cut,
                compared, skipped);
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, JoinTruth, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace flamestream::correlate
