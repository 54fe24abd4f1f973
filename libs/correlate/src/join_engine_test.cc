#include "flamestream/correlate/join_engine.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "join_test_util.h"

namespace flamestream::correlate {
namespace {

using testing::Harness;
using testing::kBase;
using testing::kSec;
using testing::Out;

constexpr const char* kNode = "prod/node-a";
constexpr uint32_t kPid = 4242;

struct SpanSpec {
  std::string name;
  uint64_t id;
  int64_t start;  // offsets from kBase, ns
  int64_t end;
  uint64_t parent = 0;
  uint64_t thread = 0;
  uint32_t pid = kPid;
  std::string node = kNode;
  std::string service = "checkout";
};

Span ToSpan(const SpanSpec& s) {
  return Span{.trace_id = TraceId{.hi = 1, .lo = 2}, .span_id = SpanId{s.id},
              .parent_span_id = SpanId{s.parent}, .name = s.name, .service = s.service,
              .start_ns = kBase + s.start, .end_ns = kBase + s.end, .node_key = s.node,
              .pid = s.pid, .thread_id = s.thread};
}

struct SampleSpec {
  int64_t t;  // offset from kBase
  uint32_t tid = 0;
  uint32_t pid = kPid;
  std::string node = kNode;
  uint64_t direct_span = 0;  // carries trace {1,2} and this span id when non-zero
};

Sample ToSample(const SampleSpec& s, uint64_t cookie) {
  Sample out{.node_key = s.node, .pid = s.pid, .tid = s.tid, .time_ns = kBase + s.t, .cookie = cookie};
  if (s.direct_span != 0) {
    out.trace_id = TraceId{.hi = 1, .lo = 2};
    out.span_id = SpanId{s.direct_span};
  }
  return out;
}

// Edge cases of the assignment rule. Each case adds its spans (in the order given), then
// samples on other threads that make tids 11 and 12 "seen" OS tids, then the probe sample, and
// flushes.
TEST(JoinEngine, AssignsSampleToInnermostSpanEdgeCases) {
  struct Case {
    std::string name;
    std::vector<SpanSpec> spans;
    SampleSpec probe;
    std::string want;  // span name; "" for unmatched
    MatchKind kind = MatchKind::kInterval;
  };
  const std::vector<Case> cases = {
      {"sample exactly at start", {{"a", 1, 100, 200}}, {.t = 100}, "a"},
      {"sample exactly at end", {{"a", 1, 100, 200}}, {.t = 200}, "a"},
      {"one ns before start", {{"a", 1, 100, 200}}, {.t = 99}, "", MatchKind::kUnmatched},
      {"one ns after end", {{"a", 1, 100, 200}}, {.t = 201}, "", MatchKind::kUnmatched},
      {"zero-length span holds its instant", {{"z", 1, 150, 150}}, {.t = 150}, "z"},
      {"zero-length span holds nothing else", {{"z", 1, 150, 150}}, {.t = 151}, "", MatchKind::kUnmatched},
      {"nested: innermost wins", {{"root", 1, 0, 1000}, {"mid", 2, 100, 900, 1}, {"leaf", 3, 200, 300, 2}},
       {.t = 250}, "leaf"},
      {"nested, parent arrives last", {{"leaf", 3, 200, 300, 2}, {"mid", 2, 100, 900, 1}, {"root", 1, 0, 1000}},
       {.t = 250}, "leaf"},
      {"overlapping siblings: latest start wins", {{"s1", 1, 100, 400}, {"s2", 2, 300, 600}}, {.t = 350}, "s2"},
      {"back-to-back siblings: the boundary goes to the later one", {{"s1", 1, 100, 200}, {"s2", 2, 200, 300}},
       {.t = 200}, "s2"},
      {"same start: earlier end wins", {{"long", 1, 100, 900}, {"short", 2, 100, 300}}, {.t = 200}, "short"},
      {"same start, after the short one ended", {{"long", 1, 100, 900}, {"short", 2, 100, 300}}, {.t = 301}, "long"},
      {"same start and end: child beats parent (child has the smaller id)",
       {{"parent", 9, 100, 200}, {"child", 3, 100, 200, 9}}, {.t = 150}, "child"},
      {"same start and end: child beats parent, other arrival order",
       {{"child", 3, 100, 200, 9}, {"parent", 9, 100, 200}}, {.t = 150}, "child"},
      {"same start and end, unrelated: larger span id", {{"small", 3, 100, 200}, {"large", 9, 100, 200}},
       {.t = 150}, "large"},
      {"thread.id is a seen OS tid: other threads do not match",
       {{"t11", 1, 100, 200, 0, 11}}, {.t = 150, .tid = 12}, "", MatchKind::kUnmatched},
      {"thread.id is a seen OS tid: its thread matches", {{"t11", 1, 100, 200, 0, 11}}, {.t = 150, .tid = 11}, "t11"},
      {"thread-bound inner span vs agnostic outer", {{"outer", 1, 0, 1000}, {"t11", 2, 100, 200, 1, 11}},
       {.t = 150, .tid = 12}, "outer"},
      {"thread.id not an OS tid (managed id): thread ignored", {{"managed", 1, 100, 200, 0, 1}},
       {.t = 150, .tid = 12}, "managed"},
      {"other process", {{"a", 1, 100, 200}}, {.t = 150, .pid = 7}, "", MatchKind::kUnmatched},
      {"other node", {{"a", 1, 100, 200}}, {.t = 150, .node = "prod/node-b"}, "", MatchKind::kUnmatched},
      {"direct ids win over time", {{"outer", 1, 0, 1000}, {"named", 5, 5000, 6000, 0, 0, 999}},
       {.t = 150, .direct_span = 5}, "named", MatchKind::kDirect},
      {"direct ids, span unknown: ids kept, no name", {{"outer", 1, 0, 1000}}, {.t = 150, .direct_span = 77}, "",
       MatchKind::kDirect},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Harness h;
    // Make tids 11 and 12 OS tids of the process (samples far before every span).
    h.engine().AddSample(ToSample({.t = -500 * kSec, .tid = 11}, 1001));
    h.engine().AddSample(ToSample({.t = -500 * kSec, .tid = 12}, 1002));
    for (const SpanSpec& s : c.spans) h.engine().AddSpan(ToSpan(s));
    h.engine().AddSample(ToSample(c.probe, 1));
    h.Flush();
    const Out* o = h.Find(1);
    ASSERT_NE(o, nullptr);
    EXPECT_EQ(o->name, c.want);
    EXPECT_EQ(static_cast<int>(o->kind), static_cast<int>(c.kind));
    if (c.kind == MatchKind::kUnmatched) {
      EXPECT_TRUE(o->span.empty());
      EXPECT_TRUE(o->trace.empty());
    } else {
      EXPECT_EQ(o->trace, (TraceId{.hi = 1, .lo = 2}));
    }
    // The process's service applies to every sample of it, matched or not.
    EXPECT_EQ(o->service, c.probe.pid == kPid && c.probe.node == kNode ? "checkout" : "");
  }
}

TEST(JoinEngine, ThreadRuleAppliesOnceTheTidIsSeenInSamples) {
  Harness h;
  // The span names thread 11 before any sample showed tid 11: agnostic for now.
  h.engine().AddSpan(ToSpan({"t11", 1, 100, 200, 0, 11}));
  h.engine().AddSample(ToSample({.t = 150, .tid = 12}, 1));
  // Now tid 11 shows up: the span becomes bound to thread 11 for samples emitted from now on.
  h.engine().AddSample(ToSample({.t = 160, .tid = 11}, 2));
  h.engine().AddSample(ToSample({.t = 170, .tid = 12}, 3));
  h.Flush();
  ASSERT_EQ(h.out().size(), 3u);
  EXPECT_EQ(h.Find(1)->name, "");  // emitted after tid 11 was seen: thread rule applies
  EXPECT_EQ(h.Find(2)->name, "t11");
  EXPECT_EQ(h.Find(3)->name, "");
}

TEST(JoinEngine, HoldsSamplesUntilTheWatermarkPassesThem) {
  Harness h;  // lateness 30 s
  h.engine().AddSample(ToSample({.t = 10 * kSec}, 1));
  h.Advance();
  EXPECT_TRUE(h.out().empty());
  // The span arrives 29 s later in event time: still joins.
  h.engine().AddSample(ToSample({.t = 39 * kSec}, 2));
  h.Advance();
  EXPECT_TRUE(h.out().empty());
  h.engine().AddSpan(ToSpan({"a", 1, 5 * kSec, 15 * kSec}));
  EXPECT_EQ(h.engine().counters().late_spans, 0u);
  // Max event time 40 s + 1 ns: watermark passes 10 s, sample 1 leaves.
  h.engine().AddSample(ToSample({.t = 40 * kSec + 1}, 3));
  h.Advance();
  ASSERT_EQ(h.out().size(), 1u);
  EXPECT_EQ(h.out()[0].cookie, 1u);
  EXPECT_EQ(h.out()[0].name, "a");
  EXPECT_EQ(h.engine().watermark_ns(), kBase + 10 * kSec + 1);
  EXPECT_EQ(h.engine().held_samples(), 2u);
}

TEST(JoinEngine, CountsSpansBeyondLatenessAndStillAppliesThemToHeldSamples) {
  Harness h;
  h.engine().AddSample(ToSample({.t = 10 * kSec}, 1));
  h.engine().AddSample(ToSample({.t = 50 * kSec}, 2));
  h.engine().AddSample(ToSample({.t = 100 * kSec}, 3));
  h.Advance();  // watermark 70 s: sample 1 and 2 emitted unmatched
  ASSERT_EQ(h.out().size(), 2u);
  EXPECT_EQ(h.out()[0].name, "");
  EXPECT_EQ(h.out()[1].name, "");
  h.engine().AddSpan(ToSpan({"gone", 1, 5 * kSec, 15 * kSec}));      // entirely beyond lateness
  h.engine().AddSpan(ToSpan({"half", 2, 45 * kSec, 120 * kSec}));    // its start is beyond
  EXPECT_EQ(h.engine().counters().late_spans, 1u);
  EXPECT_EQ(h.engine().counters().partially_late_spans, 1u);
  h.Flush();
  ASSERT_EQ(h.out().size(), 3u);
  EXPECT_EQ(h.Find(3)->name, "half");  // not yet emitted: the late span still applies
}

TEST(JoinEngine, LateSamplesAreEmittedAtOnceAgainstHeldSpans) {
  Harness h;
  h.engine().AddSpan(ToSpan({"long", 1, 0, 100 * kSec}));
  h.engine().AddSpan(ToSpan({"short", 2, 10 * kSec, 20 * kSec}));
  h.engine().AddSample(ToSample({.t = 100 * kSec}, 1));
  h.Advance();  // watermark 70 s
  // 15 s is 55 s behind the watermark: late. "short" ended before watermark - lateness (40 s),
  // so it no longer joins; "long" does.
  h.engine().AddSample(ToSample({.t = 15 * kSec}, 2));
  h.Advance();
  const Out* o = h.Find(2);
  ASSERT_NE(o, nullptr);
  EXPECT_TRUE(o->late);
  EXPECT_EQ(o->name, "long");
  EXPECT_EQ(h.engine().counters().late_samples, 1u);
}

TEST(JoinEngine, IdlePartitionWatermarkFollowsProcessingTime) {
  JoinConfig config;
  config.idle_timeout = std::chrono::seconds(5);
  Harness h(config);
  h.engine().AddSample(ToSample({.t = 0}, 1));
  h.now += 4 * kSec;
  h.Advance();
  EXPECT_TRUE(h.out().empty());  // not idle yet
  h.now += 26 * kSec;            // 30 s without samples: max event time is 30 s, watermark 0
  h.Advance();
  EXPECT_TRUE(h.out().empty());
  h.now += 1;
  h.Advance();
  ASSERT_EQ(h.out().size(), 1u);
}

// A pause (the stage stalled, or was stopped) followed by a catch-up: while the stage is
// behind its input the idle rule must not run the watermark ahead, or the spans the backlog
// needs expire and its samples come out late and unmatched. The second row is what the idle
// rule does when the stage wrongly reports a caught-up partition.
TEST(JoinEngine, BacklogCatchUpAfterAPauseKeepsMatches) {
  struct Case {
    const char* name;
    bool pending_during_pause;
    std::string want_backlog_span;
    bool want_backlog_late;
  };
  const std::vector<Case> cases = {
      {"input pending: no idle advance", true, "checkout", false},
      {"reported idle: spans expire", false, "", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    JoinConfig config;
    config.idle_timeout = std::chrono::seconds(5);  // lateness 30 s
    Harness h(config);
    h.engine().AddSpan(ToSpan({"checkout", 1, 0, 10 * kSec}));
    for (uint64_t i = 1; i <= 5; ++i) {
      h.engine().AddSample(ToSample({.t = static_cast<int64_t>(i) * kSec}, i));
    }
    h.Advance();
    // 120 s of polling with no record while behind (or, wrongly, "caught up").
    h.engine().SetInputPending(c.pending_during_pause);
    for (int s = 0; s < 120; ++s) {
      h.now += kSec;
      h.Advance();
    }
    if (c.pending_during_pause) {
      EXPECT_EQ(h.engine().watermark_ns(), kBase + 5 * kSec - 30 * kSec);
      EXPECT_TRUE(h.out().empty());
      EXPECT_EQ(h.engine().active_spans(), 1u);
    }
    // The backlog: the rest of the span's samples, then one past it.
    h.engine().SetInputPending(true);
    for (uint64_t i = 6; i <= 9; ++i) {
      h.engine().AddSample(ToSample({.t = static_cast<int64_t>(i) * kSec}, i));
      h.Advance();
    }
    h.engine().AddSample(ToSample({.t = 60 * kSec}, 10));
    h.Advance();
    h.engine().SetInputPending(false);  // caught up
    h.Advance();
    h.Flush();
    ASSERT_EQ(h.out().size(), 10u);
    for (uint64_t i = 1; i <= 10; ++i) {
      SCOPED_TRACE(::testing::Message() << "sample at " << (i == 10 ? 60 : i) << " s");
      const Out* o = h.Find(i);
      ASSERT_NE(o, nullptr);
      if (i <= 5) {
        EXPECT_EQ(o->name, "checkout");  // emitted after the pause in both cases
      } else if (i <= 9) {
        EXPECT_EQ(o->name, c.want_backlog_span);
        EXPECT_EQ(o->late, c.want_backlog_late);
      } else {
        EXPECT_EQ(o->kind, MatchKind::kUnmatched);
      }
    }
    EXPECT_EQ(h.engine().counters().late_samples, c.want_backlog_late ? 5u : 0u);  // + the 60 s one
  }
}

// Idle time counts from the moment the input caught up, not from the last sample: the time
// spent behind a backlog is not evidence that the node went quiet.
TEST(JoinEngine, IdleTimeCountsFromCatchingUp) {
  JoinConfig config;
  config.idle_timeout = std::chrono::seconds(5);
  Harness h(config);
  h.engine().AddSample(ToSample({.t = 0}, 1));
  h.engine().SetInputPending(true);
  h.now += 100 * kSec;
  h.Advance();
  EXPECT_EQ(h.engine().watermark_ns(), kBase - 30 * kSec);
  h.engine().SetInputPending(false);
  h.now += 4 * kSec;
  h.Advance();
  EXPECT_EQ(h.engine().watermark_ns(), kBase - 30 * kSec);  // caught up 4 s ago: not idle
  h.now += 31 * kSec;
  h.Advance();  // idle for 35 s since catching up: max event time 35 s, watermark 5 s
  EXPECT_EQ(h.engine().watermark_ns(), kBase + 5 * kSec);
  ASSERT_EQ(h.out().size(), 1u);
}

TEST(JoinEngine, FutureTimestampsDoNotRunTheWatermarkAhead) {
  Harness h;  // max_clock_skew 60 s
  h.now = kBase + 100 * kSec;
  h.engine().AddSample(ToSample({.t = 90 * kSec}, 1));
  h.engine().AddSample(ToSample({.t = 3600 * kSec}, 2));  // a node clock an hour ahead
  h.Advance();
  EXPECT_EQ(h.engine().counters().future_timestamps, 1u);
  EXPECT_EQ(h.engine().watermark_ns(), kBase + 160 * kSec - 30 * kSec);
  // Watermark 130 s: the 90 s sample leaves; the future one waits (unclamped time kept).
  ASSERT_EQ(h.out().size(), 1u);
  EXPECT_EQ(h.out()[0].cookie, 1u);
  EXPECT_EQ(h.engine().held_samples(), 1u);
}

TEST(JoinEngine, ExpiresSpansAfterEndPlusLatenessAndForgetsIdleProcesses) {
  JoinConfig config;
  config.process_idle_ttl = std::chrono::seconds(60);
  Harness h(config);
  h.engine().AddSpan(ToSpan({"a", 1, 0, 10 * kSec}));
  h.engine().AddSpan(ToSpan({"b", 2, 0, 50 * kSec}));
  EXPECT_EQ(h.engine().active_spans(), 2u);
  h.engine().AddSample(ToSample({.t = 75 * kSec, .pid = 1}, 1));
  h.Advance();  // watermark 45 s: "a" (10 + 30 < 45) expires, "b" stays
  EXPECT_EQ(h.engine().active_spans(), 1u);
  EXPECT_EQ(h.engine().counters().spans_expired, 1u);
  h.engine().AddSample(ToSample({.t = 300 * kSec, .pid = 1}, 2));
  h.Advance();
  EXPECT_EQ(h.engine().active_spans(), 0u);
  // Process 4242 has no spans and no samples for > 60 s: forgotten. Process 1 holds a sample.
  EXPECT_EQ(h.engine().processes(), 1u);
  EXPECT_EQ(h.engine().SpanReplayStartNs(), kBase + 240 * kSec);
}

TEST(JoinEngine, BoundsStateAndCountsEvictions) {
  JoinConfig config;
  config.max_spans = 100;
  config.max_held_samples = 10;
  Harness h(config);
  for (uint64_t i = 1; i <= 101; ++i) {
    h.engine().AddSpan(ToSpan({"s", i, static_cast<int64_t>(i) * kSec, static_cast<int64_t>(i) * kSec + 1}));
  }
  EXPECT_LE(h.engine().active_spans(), 100u);
  EXPECT_GT(h.engine().counters().spans_evicted, 0u);
  EXPECT_EQ(h.engine().active_spans() + h.engine().counters().spans_evicted, 101u);
  for (uint64_t i = 0; i < 15; ++i) h.engine().AddSample(ToSample({.t = static_cast<int64_t>(i)}, i));
  h.Advance();
  EXPECT_LE(h.engine().held_samples(), 10u);
  EXPECT_EQ(h.engine().counters().samples_evicted, 15u - h.engine().held_samples());
  EXPECT_EQ(h.out().size(), 15u - h.engine().held_samples());
}

TEST(JoinEngine, EmitsInTimeThenArrivalOrderAndDropsDuplicateSpans) {
  Harness h;
  h.engine().AddSpan(ToSpan({"a", 1, 0, 100}));
  h.engine().AddSpan(ToSpan({"a-again", 1, 0, 100}));
  EXPECT_EQ(h.engine().counters().spans_duplicate, 1u);
  h.engine().AddSample(ToSample({.t = 50}, 1));
  h.engine().AddSample(ToSample({.t = 20}, 2));
  h.engine().AddSample(ToSample({.t = 50}, 3));
  h.engine().AddSample(ToSample({.t = 20 * kSec}, 4));
  h.Flush();
  ASSERT_EQ(h.out().size(), 4u);
  EXPECT_EQ(h.out()[0].cookie, 2u);
  EXPECT_EQ(h.out()[1].cookie, 1u);
  EXPECT_EQ(h.out()[2].cookie, 3u);
  EXPECT_EQ(h.out()[3].cookie, 4u);
  EXPECT_EQ(h.out()[0].name, "a");
}

TEST(JoinEngine, LearnsOneServicePerProcessWhateverTheArrivalOrder) {
  for (bool reversed : {false, true}) {
    SCOPED_TRACE(reversed);
    Harness h;
    SpanSpec x{"x", 1, 0, 10};
    x.service = "zeta";
    SpanSpec y{"y", 2, 20, 30};
    y.service = "alpha";
    if (reversed) std::swap(x, y);
    h.engine().AddSpan(ToSpan(x));
    h.engine().AddSpan(ToSpan(y));
    h.engine().AddSample(ToSample({.t = 5}, 1));
    h.engine().AddSample(ToSample({.t = 100}, 2));
    h.Flush();
    EXPECT_EQ(h.Find(1)->service, "alpha");
    EXPECT_EQ(h.Find(2)->service, "alpha");
    EXPECT_EQ(h.engine().counters().service_conflicts, 1u);
  }
}

TEST(JoinEngine, SpansWithoutProcessOnlyServeDirectJoins) {
  Harness h;
  SpanSpec s{"orphan", 5, 0, 100};
  s.pid = 0;
  h.engine().AddSpan(ToSpan(s));
  h.engine().AddSample(ToSample({.t = 50}, 1));
  h.engine().AddSample(ToSample({.t = 50, .direct_span = 5}, 2));
  h.Flush();
  EXPECT_EQ(h.Find(1)->name, "");
  EXPECT_EQ(h.Find(2)->name, "orphan");
  EXPECT_EQ(h.Find(2)->service, "checkout");  // the process learned none: the span's
  EXPECT_EQ(h.engine().counters().spans_no_process, 1u);
}

}  // namespace
}  // namespace flamestream::correlate
