// JoinEngine: the correlator's event-time join of samples with spans, for ONE partition (the
// stage runs one engine per owned partition; an engine is not thread-safe).
//
//   JoinEngine engine(JoinConfig{});                 // or JoinEngine(config, fake_clock)
//   for (const Span& s : keyed_spans) engine.AddSpan(s);
//   for (const Sample& s : batch) engine.AddSample(s);
//   engine.Advance([&](const Emission& e) {          // after each polled record/batch
//     out.Attach(e.cookie, e.trace_id, e.span_id, e.span_name, e.service_name);
//   });
//
// Rules (ARCHITECTURE.md, "Correlation"):
// - A sample joins the spans of its (node, host pid). A span holds a sample when
//   start <= t <= end (both ends inclusive; a zero-length span holds its one instant).
// - Thread: a span's thread.id is used only when it is an OS tid seen in this process's
//   samples; then the span holds only samples of that thread. Otherwise the thread is ignored.
//   (A tid counts as seen from the moment a sample carrying it is added.)
// - Innermost wins: the latest start; for equal starts the earliest end; for equal start and
//   end the child over its parent (when one is the other's parent), else the larger span id.
//   The choice depends only on the set of candidate spans, never on their arrival order.
// - Samples that carry a span id join on it directly (kDirect); the span, when still held,
//   gives the name.
// - The process's service name is learned from its spans (the lexicographically smallest
//   non-empty service.name seen, so it does not depend on arrival order) and applied to all of
//   its samples, matched or not.
// Event time:
// - watermark = max sample time seen - allowed_lateness (a sample time beyond
//   now + max_clock_skew counts as now + max_clock_skew, so one node's fast clock cannot push
//   a partition's watermark ahead). When the partition is idle -- its input is caught up
//   (SetInputPending(false), the default) and no sample arrived for idle_timeout -- the max
//   sample time advances with processing time, counted from the later of the last sample and
//   the moment the input caught up. While input is pending (a backlog the stage has not read
//   yet) the watermark follows event time only, however long no sample arrives: a pause
//   followed by a catch-up must not expire the spans the backlog needs. A partition that never
//   saw a sample advances from its spans' ends the same way once idle, so its spans still
//   expire. The watermark never moves back.
// - A sample is held until watermark > its time, then emitted, in (time, arrival) order. So a
//   span arriving up to allowed_lateness (in sample event time) after a sample still joins it.
// - A sample arriving with time < watermark is "late": emitted at the next Advance() against
//   the spans still held.
// - A span is held until watermark > end + allowed_lateness; spans whose end is older than
//   that never join (also for direct joins), whether or not they were already removed.
// - A span arriving after the watermark passed its end is "late" (late_spans); one arriving
//   after the watermark passed its start but not its end is "partially late" (some of its
//   samples may have gone). Both are still stored and join any sample not yet emitted.
// Determinism and restarts: for a sample that is not late, the match depends only on the
// spans that arrived before the watermark passed its time. After a restart, replay the keyed
// spans whose end >= SpanReplayStartNs() (seek the spans topic to that time minus the
// producers' clock skew) with AddSpan(span, SpanOrigin::kReplay), restore the watermark from
// the commit (RestoreWatermark), then replay samples from the committed offset: every
// in-lateness sample gets the match it had. (Samples whose span arrived beyond lateness may now
// match: the span is in the rebuilt state from the start.)
// Bounds: max_spans (the spans that end first are evicted) and max_held_samples (the oldest
// are emitted early, at the next Advance); both counted. Evictions make results depend on
// timing; the stage should pause its partitions before they happen.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <absl/container/btree_map.h>
#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>
#include <absl/functional/function_ref.h>

#include "flamestream/correlate/interval_set.h"
#include "flamestream/correlate/types.h"

namespace flamestream::correlate {

struct JoinConfig {
  // How long (in sample event time) a sample waits for its span, and a span outlives its end.
  std::chrono::nanoseconds allowed_lateness = std::chrono::seconds(30);
  // No sample for this long (processing time): the watermark follows processing time.
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(5);
  // Timestamps more than this ahead of the engine's clock advance the watermark only to
  // now + max_clock_skew.
  std::chrono::nanoseconds max_clock_skew = std::chrono::seconds(60);
  // Spans held (all processes). Above it the spans that end first are evicted.
  size_t max_spans = 2'000'000;
  // Samples held waiting for the watermark. Above it the oldest are emitted early.
  size_t max_held_samples = 8'000'000;
  // A process with no spans and no samples for this long (event time) is forgotten, with its
  // learned service name and seen thread ids.
  std::chrono::nanoseconds process_idle_ttl = std::chrono::minutes(10);
  // OS tids remembered per process; tids beyond it do not count as seen.
  size_t max_tids_per_process = 65536;
  // Granularity of the held-sample queue and of span expiry. Performance only: results do
  // not depend on them.
  std::chrono::nanoseconds hold_bucket = std::chrono::milliseconds(10);
  std::chrono::nanoseconds expiry_bucket = std::chrono::seconds(1);
};

// Plain counters (the stage exports them as metrics).
struct JoinCounters {
  uint64_t samples_in = 0;
  uint64_t samples_matched = 0;    // joined on node/process/time(/thread)
  uint64_t samples_direct = 0;     // joined on their own trace/span ids
  uint64_t samples_direct_unknown_span = 0;  // of those, span not held (no name)
  uint64_t samples_unmatched = 0;
  uint64_t late_samples = 0;       // arrived after the watermark passed their time
  uint64_t samples_evicted = 0;    // emitted early because max_held_samples was reached
  uint64_t future_timestamps = 0;  // clamped to now + max_clock_skew for the watermark
  uint64_t spans_in = 0;
  uint64_t spans_replayed = 0;     // added with SpanOrigin::kReplay
  uint64_t spans_duplicate = 0;    // same trace and span id already held
  uint64_t spans_invalid = 0;      // end < start
  uint64_t spans_no_process = 0;   // pid 0: only usable by direct joins
  uint64_t late_spans = 0;         // arrived after the watermark passed their end
  uint64_t partially_late_spans = 0;  // arrived after the watermark passed their start only
  uint64_t spans_expired = 0;
  uint64_t spans_evicted = 0;      // removed early because max_spans was reached
  uint64_t service_conflicts = 0;  // a process's spans named different services
};

enum class SpanOrigin : uint8_t {
  kLive,    // read in the normal course
  kReplay,  // re-read to rebuild state after a restart: not counted as late
};

namespace internal {
// std::string_view hashing for abseil maps (Debian's abseil has its own string_view type, so
// its default string hasher does not take std::string_view).
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct StringViewEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};
}  // namespace internal

class JoinEngine {
 public:
  // Returns Unix epoch nanoseconds; injectable for tests.
  using Clock = std::function<int64_t()>;
  using EmitFn = absl::FunctionRef<void(const Emission&)>;

  static int64_t SystemClockNs();

  explicit JoinEngine(JoinConfig config, Clock clock = &JoinEngine::SystemClockNs);
  ~JoinEngine();
  JoinEngine(const JoinEngine&) = delete;
  JoinEngine& operator=(const JoinEngine&) = delete;

  void AddSpan(const Span& span, SpanOrigin origin = SpanOrigin::kLive);
  // Whether this partition's input has records not yet read (the stage's position is behind
  // the high watermark of its samples or spans partition). While true the idle rule is off;
  // when it turns false, idle time starts counting from then.
  void SetInputPending(bool pending);
  [[nodiscard]] bool input_pending() const { return input_pending_; }
  void AddSample(const Sample& sample);

  // Moves the watermark, emits every sample it released (in time, then arrival, order), then
  // expires spans and forgets idle processes. Call after each polled batch and periodically
  // when idle.
  void Advance(EmitFn emit);
  // Emits every held sample now regardless of the watermark (shutdown; tests).
  void Flush(EmitFn emit);

  // Restart support (see the header comment).
  //
  // The earliest-arrived sample not yet emitted, and the watermark when it arrived. The stage
  // may commit its input only up to (not including) that sample's record, and stores
  // `watermark_ns` with the commit; after a restart it calls RestoreWatermark(watermark_ns).
  struct CommitPoint {
    bool any_held = false;
    uint64_t cookie = 0;
    int64_t watermark_ns = 0;
  };
  [[nodiscard]] CommitPoint OldestUnemitted() const;
  void RestoreWatermark(int64_t watermark_ns);
  // Records that `tid` is an OS thread of (node, pid) without adding a sample. After a restart
  // the stage may feed the samples before the committed offset (from SpanReplayStartNs() on)
  // through this, so spans are bound to threads exactly as before; without it a thread counts
  // as seen again from its first re-read sample.
  // `time_ns` is the sample's time (keeps the process from being forgotten as idle).
  void ObserveThread(std::string_view node_key, uint32_t pid, uint32_t tid, int64_t time_ns);
  // Spans ending at or after this time are still needed: watermark - allowed_lateness.
  [[nodiscard]] int64_t SpanReplayStartNs() const;

  [[nodiscard]] int64_t watermark_ns() const { return watermark_; }
  // Earliest time of a held sample, or INT64_MAX when none is held.
  [[nodiscard]] int64_t EarliestHeldSampleNs() const;
  [[nodiscard]] size_t held_samples() const { return held_count_; }
  [[nodiscard]] size_t active_spans() const { return live_spans_; }
  [[nodiscard]] size_t processes() const { return processes_.size(); }
  [[nodiscard]] const JoinCounters& counters() const { return counters_; }
  // Approximate heap bytes of span and sample state (capacities).
  [[nodiscard]] size_t MemoryBytes() const;

 private:
  struct SpanKey {
    TraceId trace;
    SpanId span;
    friend bool operator==(const SpanKey&, const SpanKey&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const SpanKey& k) {
      return H::combine(std::move(h), k.trace, k.span);
    }
  };
  struct SpanRecord {
    TraceId trace;
    SpanId id;
    SpanId parent;
    int64_t start = 0;
    int64_t end = 0;
    uint64_t thread_id = 0;
    uint64_t process = 0;  // process key; 0 when the span has no process
    uint32_t name = 0;     // string pool ids
    uint32_t service = 0;
    bool live = false;
  };
  struct ProcessState;
  struct Held {
    int64_t t = 0;
    uint64_t seq = 0;
    uint64_t process = 0;
    uint64_t cookie = 0;
    TraceId trace;
    SpanId span;
    // Spans ending before this no longer join the sample: its own time minus the lateness,
    // or for a late sample the watermark at its arrival minus the lateness.
    int64_t floor = 0;
    uint32_t tid = 0;
    bool late = false;
  };
  struct Bucket {
    std::vector<Held> samples;
    bool sorted = true;
  };
  // Reference-counted interned strings; id 0 is the empty string. Views stay valid until
  // the last reference is released.
  class StringPool {
   public:
    uint32_t Acquire(std::string_view s);
    void AddRef(uint32_t id);
    void Release(uint32_t id);
    [[nodiscard]] std::string_view Get(uint32_t id) const { return slots_[id].str; }
    [[nodiscard]] size_t MemoryBytes() const;

   private:
    struct Slot {
      std::string str;
      uint32_t refs = 0;
    };
    std::deque<Slot> slots_{Slot{}};
    std::vector<uint32_t> free_;
    absl::flat_hash_map<std::string_view, uint32_t, internal::StringViewHash, internal::StringViewEq>
        index_;
  };

  ProcessState& GetProcess(uint64_t key);
  uint64_t ProcessKey(std::string_view node_key, uint32_t pid);
  void MarkTidSeen(ProcessState& p, uint32_t tid);
  void LearnService(ProcessState& p, uint32_t service_id);
  void Emit(const Held& h, EmitFn emit);
  // The winning span record for time t and thread tid among spans ending at or after
  // min_end, or -1.
  int64_t FindSpan(ProcessState& p, int64_t t, int64_t min_end, uint32_t tid);
  void ComputeWatermark();
  // Emits held samples with time < limit.
  void ReleaseUpTo(int64_t limit, EmitFn emit);
  void EmitBucket(Bucket& b, int64_t limit, EmitFn emit);
  void ExpireSpans();
  // Removes the records in `dead` (already marked !live) from their processes and frees them.
  void RemoveSpans(const std::vector<uint32_t>& dead);
  void EvictSpans();
  void ForgetIdleProcesses();

  JoinConfig config_;
  Clock clock_;
  int64_t lateness_;
  int64_t hold_bucket_;
  int64_t expiry_bucket_;

  // Event time.
  int64_t watermark_;
  int64_t max_sample_ns_;
  int64_t last_sample_wall_;
  int64_t max_span_end_;
  int64_t last_span_wall_;
  bool samples_seen_ = false;
  bool spans_seen_ = false;
  bool input_pending_ = false;
  int64_t caught_up_wall_;  // when the input last stopped being pending

  // Spans.
  std::vector<SpanRecord> spans_;
  std::vector<uint32_t> free_spans_;
  absl::flat_hash_map<SpanKey, uint32_t> by_id_;
  absl::btree_map<int64_t, std::vector<uint32_t>> expiry_;  // end bucket -> records
  size_t live_spans_ = 0;
  StringPool strings_;

  // Processes: key = node id << 32 | host pid.
  absl::flat_hash_map<std::string, uint32_t, internal::StringViewHash, internal::StringViewEq>
      node_ids_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<ProcessState>> processes_;
  int64_t last_process_gc_;

  // Held samples: bucket index -> samples (sorted when released). A node map, so the bucket
  // samples are appended to can be cached across calls.
  std::map<int64_t, Bucket> held_;
  int64_t cached_bucket_key_ = 0;
  Bucket* cached_bucket_ = nullptr;
  size_t held_count_ = 0;
  uint64_t next_seq_ = 0;
  // Samples in arrival order from the oldest one not yet emitted: (seq - arrivals_front_) ->
  // arrival. Popped from the front as soon as the front sample is emitted.
  struct Arrival {
    uint64_t cookie = 0;
    int64_t watermark = 0;
    bool emitted = false;
  };
  std::deque<Arrival> arrivals_;
  uint64_t arrivals_front_ = 0;

  JoinCounters counters_;
  std::vector<uint32_t> scratch_;  // reused by FindSpan
};

}  // namespace flamestream::correlate
