#include "flamestream/correlate/join_engine.h"

#include <algorithm>
#include <limits>
#include <tuple>
#include <utility>

namespace flamestream::correlate {
namespace {

constexpr int64_t kMinNs = std::numeric_limits<int64_t>::min();
constexpr int64_t kMaxNs = std::numeric_limits<int64_t>::max();

int64_t SatAdd(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? kMaxNs : kMinNs;
  return r;
}

int64_t SatSub(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) return b > 0 ? kMinNs : kMaxNs;
  return r;
}

int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t Ns(std::chrono::nanoseconds d) { return std::max<int64_t>(d.count(), 0); }

}  // namespace

struct JoinEngine::ProcessState {
  // Spans whose thread rule does not apply: no thread.id, or one not (yet) seen as an OS tid.
  IntervalSet agnostic;
  // Spans whose thread.id is an OS tid seen in this process's samples, by that tid.
  absl::flat_hash_map<uint64_t, IntervalSet> by_thread;
  absl::flat_hash_set<uint32_t> seen_tids;
  // thread.id -> number of spans with it in `agnostic` (moved when the tid is first seen).
  absl::flat_hash_map<uint64_t, uint32_t> agnostic_thread_counts;
  uint32_t service = 0;  // string pool id (holds a reference)
  uint32_t held = 0;     // samples held
  size_t spans = 0;      // spans indexed
  int64_t last_event = kMinNs;
};

// ---- StringPool ----

uint32_t JoinEngine::StringPool::Acquire(std::string_view s) {
  if (s.empty()) return 0;
  if (auto it = index_.find(s); it != index_.end()) {
    ++slots_[it->second].refs;
    return it->second;
  }
  uint32_t id = 0;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& slot = slots_[id];
  slot.str.assign(s);
  slot.refs = 1;
  index_.emplace(std::string_view(slot.str), id);
  return id;
}

void JoinEngine::StringPool::AddRef(uint32_t id) {
  if (id != 0) ++slots_[id].refs;
}

void JoinEngine::StringPool::Release(uint32_t id) {
  if (id == 0) return;
  Slot& slot = slots_[id];
  if (--slot.refs > 0) return;
  index_.erase(std::string_view(slot.str));
  slot.str.clear();
  slot.str.shrink_to_fit();
  free_.push_back(id);
}

size_t JoinEngine::StringPool::MemoryBytes() const {
  size_t bytes = slots_.size() * sizeof(Slot) + free_.capacity() * sizeof(uint32_t) +
                 index_.capacity() * (sizeof(std::pair<std::string_view, uint32_t>) + 1);
  for (const Slot& s : slots_) {
    if (s.str.capacity() > 15) bytes += s.str.capacity() + 1;  // beyond the small-string buffer
  }
  return bytes;
}

// ---- JoinEngine ----

int64_t JoinEngine::SystemClockNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

JoinEngine::JoinEngine(JoinConfig config, Clock clock)
    : config_(config),
      clock_(std::move(clock)),
      lateness_(Ns(config.allowed_lateness)),
      hold_bucket_(std::max<int64_t>(Ns(config.hold_bucket), 1)),
      expiry_bucket_(std::max<int64_t>(Ns(config.expiry_bucket), 1)),
      watermark_(kMinNs),
      max_sample_ns_(kMinNs),
      last_sample_wall_(clock_()),
      max_span_end_(kMinNs),
      last_span_wall_(last_sample_wall_),
      caught_up_wall_(last_sample_wall_),
      last_process_gc_(kMinNs) {}

JoinEngine::~JoinEngine() = default;

uint64_t JoinEngine::ProcessKey(std::string_view node_key, uint32_t pid) {
  auto it = node_ids_.find(node_key);
  if (it == node_ids_.end()) {
    // Ids start at 1 so that no process key is 0 (0 means "no process").
    it = node_ids_.emplace(std::string(node_key), static_cast<uint32_t>(node_ids_.size() + 1))
             .first;
  }
  return (static_cast<uint64_t>(it->second) << 32) | pid;
}

JoinEngine::ProcessState& JoinEngine::GetProcess(uint64_t key) {
  auto& slot = processes_[key];
  if (!slot) slot = std::make_unique<ProcessState>();
  return *slot;
}

void JoinEngine::MarkTidSeen(ProcessState& p, uint32_t tid) {
  if (p.seen_tids.contains(tid) || p.seen_tids.size() >= config_.max_tids_per_process) return;
  p.seen_tids.insert(tid);
  auto it = p.agnostic_thread_counts.find(tid);
  if (it == p.agnostic_thread_counts.end()) return;
  // Spans that named this thread before any sample showed it is an OS tid: from now on the
  // thread rule applies to them. Rare (a span normally follows its thread's first sample), so
  // a linear pass is fine.
  p.agnostic_thread_counts.erase(it);
  IntervalSet& dst = p.by_thread[tid];
  p.agnostic.RemoveIf([&](const IntervalSet::Entry& e) {
    if (spans_[e.ref].thread_id != tid) return false;
    dst.Insert(e);
    return true;
  });
}

void JoinEngine::LearnService(ProcessState& p, uint32_t service_id) {
  if (service_id == 0 || service_id == p.service) return;
  if (p.service == 0) {
    strings_.AddRef(service_id);
    p.service = service_id;
    return;
  }
  ++counters_.service_conflicts;
  // Keep the smallest name, so the choice does not depend on which span came first.
  if (strings_.Get(service_id) < strings_.Get(p.service)) {
    strings_.Release(p.service);
    strings_.AddRef(service_id);
    p.service = service_id;
  }
}

void JoinEngine::AddSpan(const Span& s, SpanOrigin origin) {
  if (origin == SpanOrigin::kReplay) {
    ++counters_.spans_replayed;
  } else {
    ++counters_.spans_in;
  }
  if (s.end_ns < s.start_ns) {
    ++counters_.spans_invalid;
    return;
  }
  const SpanKey key{s.trace_id, s.span_id};
  if (by_id_.contains(key)) {
    ++counters_.spans_duplicate;
    return;
  }
  if (origin == SpanOrigin::kLive) {
    // A sample at time t leaves when watermark > t: with watermark > end every sample the span
    // could hold has left; with watermark > start only some.
    if (watermark_ > s.end_ns) {
      ++counters_.late_spans;
    } else if (watermark_ > s.start_ns) {
      ++counters_.partially_late_spans;
    }
  }
  const int64_t now = clock_();
  max_span_end_ = std::max(max_span_end_, std::min(s.end_ns, SatAdd(now, Ns(config_.max_clock_skew))));
  spans_seen_ = true;
  last_span_wall_ = now;

  uint32_t idx = 0;
  if (!free_spans_.empty()) {
    idx = free_spans_.back();
    free_spans_.pop_back();
  } else {
    idx = static_cast<uint32_t>(spans_.size());
    spans_.emplace_back();
  }
  SpanRecord& rec = spans_[idx];
  rec.trace = s.trace_id;
  rec.id = s.span_id;
  rec.parent = s.parent_span_id;
  rec.start = s.start_ns;
  rec.end = s.end_ns;
  rec.thread_id = s.thread_id;
  rec.name = strings_.Acquire(s.name);
  rec.service = strings_.Acquire(s.service);
  rec.live = true;
  rec.process = 0;
  by_id_.emplace(key, idx);
  ++live_spans_;
  expiry_[FloorDiv(s.end_ns, expiry_bucket_)].push_back(idx);

  if (s.pid == 0) {
    ++counters_.spans_no_process;
  } else {
    rec.process = ProcessKey(s.node_key, s.pid);
    ProcessState& p = GetProcess(rec.process);
    p.last_event = std::max(p.last_event, s.end_ns);
    ++p.spans;
    LearnService(p, rec.service);
    const IntervalSet::Entry e{.start = s.start_ns, .end = s.end_ns, .span_id = s.span_id, .ref = idx};
    const bool os_thread = s.thread_id != 0 && s.thread_id <= std::numeric_limits<uint32_t>::max() &&
                           p.seen_tids.contains(static_cast<uint32_t>(s.thread_id));
    if (os_thread) {
      p.by_thread[s.thread_id].Insert(e);
    } else {
      p.agnostic.Insert(e);
      if (s.thread_id != 0) ++p.agnostic_thread_counts[s.thread_id];
    }
  }
  if (live_spans_ > config_.max_spans) EvictSpans();
}

void JoinEngine::AddSample(const Sample& s) {
  ++counters_.samples_in;
  const int64_t now = clock_();
  const uint64_t key = ProcessKey(s.node_key, s.pid);
  ProcessState& p = GetProcess(key);
  if (s.tid != 0) MarkTidSeen(p, s.tid);
  ++p.held;
  p.last_event = std::max(p.last_event, s.time_ns);

  int64_t t = s.time_ns;
  const int64_t limit = SatAdd(now, Ns(config_.max_clock_skew));
  if (t > limit) {
    ++counters_.future_timestamps;
    t = limit;
  }
  max_sample_ns_ = std::max(max_sample_ns_, t);
  samples_seen_ = true;
  last_sample_wall_ = now;

  Held h;
  h.t = s.time_ns;
  h.seq = next_seq_++;
  h.process = key;
  h.cookie = s.cookie;
  h.trace = s.trace_id;
  h.span = s.span_id;
  h.tid = s.tid;
  h.late = s.time_ns < watermark_;
  h.floor = SatSub(h.late ? watermark_ : s.time_ns, lateness_);
  if (h.late) ++counters_.late_samples;
  arrivals_.push_back(Arrival{.cookie = s.cookie, .watermark = watermark_, .emitted = false});

  const int64_t bucket = FloorDiv(s.time_ns, hold_bucket_);
  if (cached_bucket_ == nullptr || cached_bucket_key_ != bucket) {
    cached_bucket_ = &held_[bucket];
    cached_bucket_key_ = bucket;
  }
  Bucket& b = *cached_bucket_;
  if (b.sorted && !b.samples.empty()) {
    const Held& last = b.samples.back();
    b.sorted = last.t <= h.t;  // seq only grows
  }
  b.samples.push_back(h);
  ++held_count_;
}

void JoinEngine::SetInputPending(bool pending) {
  if (input_pending_ && !pending) caught_up_wall_ = clock_();
  input_pending_ = pending;
}

void JoinEngine::ComputeWatermark() {
  const int64_t now = clock_();
  // Idle only with nothing left to read: time spent behind a backlog says nothing about event
  // time, so it neither counts as idle nor adds to the advance.
  const int64_t idle_for = SatSub(now, std::max(last_sample_wall_, caught_up_wall_));
  const bool idle = !input_pending_ && idle_for >= Ns(config_.idle_timeout);
  int64_t max_event = kMinNs;
  if (samples_seen_) {
    max_event = idle ? SatAdd(max_sample_ns_, idle_for) : max_sample_ns_;
  } else if (spans_seen_ && idle) {
    const int64_t span_idle = SatSub(now, std::max(last_span_wall_, caught_up_wall_));
    max_event = SatAdd(max_span_end_, std::max<int64_t>(span_idle, 0));
  }
  if (max_event != kMinNs) watermark_ = std::max(watermark_, SatSub(max_event, lateness_));
}

void JoinEngine::EmitBucket(Bucket& b, int64_t limit, EmitFn emit) {
  if (!b.sorted) {
    std::sort(b.samples.begin(), b.samples.end(), [](const Held& x, const Held& y) {
      return x.t != y.t ? x.t < y.t : x.seq < y.seq;
    });
    b.sorted = true;
  }
  size_t n = 0;
  while (n < b.samples.size() && b.samples[n].t < limit) Emit(b.samples[n++], emit);
  b.samples.erase(b.samples.begin(), b.samples.begin() + static_cast<ptrdiff_t>(n));
}

void JoinEngine::ReleaseUpTo(int64_t limit, EmitFn emit) {
  while (!held_.empty()) {
    auto it = held_.begin();
    const int64_t bucket_start = it->first * hold_bucket_;
    if (bucket_start >= limit) break;
    EmitBucket(it->second, limit, emit);
    if (!it->second.samples.empty()) break;  // the bucket holding `limit`
    if (cached_bucket_ == &it->second) cached_bucket_ = nullptr;
    held_.erase(it);
  }
}

void JoinEngine::Emit(const Held& h, EmitFn emit) {
  ProcessState& p = *processes_.find(h.process)->second;
  --p.held;
  --held_count_;
  arrivals_[h.seq - arrivals_front_].emitted = true;
  while (!arrivals_.empty() && arrivals_.front().emitted) {
    arrivals_.pop_front();
    ++arrivals_front_;
  }
  Emission e;
  e.cookie = h.cookie;
  e.time_ns = h.t;
  e.pid = static_cast<uint32_t>(h.process & 0xffffffffu);
  e.tid = h.tid;
  e.late = h.late;
  uint32_t service = p.service;
  if (!h.span.empty()) {
    e.kind = MatchKind::kDirect;
    e.trace_id = h.trace;
    e.span_id = h.span;
    ++counters_.samples_direct;
    auto it = by_id_.find(SpanKey{h.trace, h.span});
    if (it != by_id_.end() && spans_[it->second].end >= h.floor) {
      const SpanRecord& rec = spans_[it->second];
      e.span_name = strings_.Get(rec.name);
      if (service == 0) service = rec.service;
    } else {
      ++counters_.samples_direct_unknown_span;
    }
  } else {
    const int64_t r = FindSpan(p, h.t, h.floor, h.tid);
    if (r >= 0) {
      const SpanRecord& rec = spans_[static_cast<size_t>(r)];
      e.kind = MatchKind::kInterval;
      e.trace_id = rec.trace;
      e.span_id = rec.id;
      e.span_name = strings_.Get(rec.name);
      if (service == 0) service = rec.service;
      ++counters_.samples_matched;
    } else {
      ++counters_.samples_unmatched;
    }
  }
  e.service_name = strings_.Get(service);
  emit(e);
}

int64_t JoinEngine::FindSpan(ProcessState& p, int64_t t, int64_t min_end, uint32_t tid) {
  scratch_.clear();
  int64_t best_start = 0;
  int64_t best_end = 0;
  auto consider = [&](IntervalSet& set) {
    const ptrdiff_t i = set.FindInnermost(t, min_end);
    if (i < 0) return;
    const IntervalSet::Entry& e = set.at(static_cast<size_t>(i));
    if (!scratch_.empty()) {
      if (e.start < best_start || (e.start == best_start && e.end > best_end)) return;  // outer
      if (e.start != best_start || e.end != best_end) scratch_.clear();               // inner
    }
    best_start = e.start;
    best_end = e.end;
    // The whole tie group (same start and end) sits contiguously left of i.
    for (ptrdiff_t j = i; j >= 0; --j) {
      const IntervalSet::Entry& g = set.at(static_cast<size_t>(j));
      if (g.start != e.start || g.end != e.end) break;
      scratch_.push_back(g.ref);
    }
  };
  consider(p.agnostic);
  if (tid != 0 && !p.by_thread.empty()) {
    if (auto it = p.by_thread.find(tid); it != p.by_thread.end()) consider(it->second);
  }
  if (scratch_.empty()) return -1;
  if (scratch_.size() == 1) return scratch_.front();
  // Equal start and end: the child beats its parent; otherwise the larger span id. Decided on
  // the set alone, so arrival order cannot change it.
  int64_t winner = -1;
  for (int pass = 0; pass < 2 && winner < 0; ++pass) {
    for (uint32_t a : scratch_) {
      const SpanRecord& ra = spans_[a];
      bool is_parent = false;
      if (pass == 0) {
        for (uint32_t b : scratch_) {
          const SpanRecord& rb = spans_[b];
          if (b != a && rb.parent == ra.id && rb.trace == ra.trace) {
            is_parent = true;
            break;
          }
        }
      }
      if (is_parent) continue;
      if (winner < 0 || std::tie(ra.id, ra.trace) > std::tie(spans_[winner].id, spans_[winner].trace)) {
        winner = a;
      }
    }
  }
  return winner;
}

void JoinEngine::Advance(EmitFn emit) {
  ComputeWatermark();
  ReleaseUpTo(watermark_, emit);
  // Over the bound: emit the oldest samples early (they may miss spans still to come).
  while (held_count_ > config_.max_held_samples && !held_.empty()) {
    auto it = held_.begin();
    const size_t n = it->second.samples.size();
    EmitBucket(it->second, kMaxNs, emit);
    counters_.samples_evicted += n;
    if (cached_bucket_ == &it->second) cached_bucket_ = nullptr;
    held_.erase(it);
  }
  ExpireSpans();
  ForgetIdleProcesses();
}

void JoinEngine::Flush(EmitFn emit) {
  ReleaseUpTo(kMaxNs, emit);
  if (!held_.empty()) {  // a bucket starting at kMaxNs: impossible in practice, but be total
    for (auto& [k, b] : held_) EmitBucket(b, kMaxNs, emit);
    held_.clear();
  }
  cached_bucket_ = nullptr;
}

void JoinEngine::ExpireSpans() {
  const int64_t floor = SatSub(watermark_, lateness_);  // spans ending before it are done
  std::vector<uint32_t> dead;
  while (!expiry_.empty()) {
    auto it = expiry_.begin();
    // Bucket b holds ends in [b*w, (b+1)*w): all expired when (b+1)*w <= floor.
    if (SatAdd(it->first * expiry_bucket_, expiry_bucket_) > floor) break;
    for (uint32_t idx : it->second) {
      if (!spans_[idx].live) continue;
      spans_[idx].live = false;
      dead.push_back(idx);
    }
    expiry_.erase(it);
  }
  counters_.spans_expired += dead.size();
  RemoveSpans(dead);
}

void JoinEngine::EvictSpans() {
  // Evict down to 90% of the bound so eviction passes are rare: the spans that end first go.
  const size_t target = config_.max_spans - config_.max_spans / 10;
  std::vector<uint32_t> dead;
  while (live_spans_ - dead.size() > target && !expiry_.empty()) {
    auto it = expiry_.begin();
    for (uint32_t idx : it->second) {
      if (!spans_[idx].live) continue;
      spans_[idx].live = false;
      dead.push_back(idx);
    }
    expiry_.erase(it);
  }
  counters_.spans_evicted += dead.size();
  RemoveSpans(dead);
}

void JoinEngine::RemoveSpans(const std::vector<uint32_t>& dead) {
  if (dead.empty()) return;
  absl::flat_hash_set<uint64_t> affected;
  for (uint32_t idx : dead) {
    const SpanRecord& rec = spans_[idx];
    by_id_.erase(SpanKey{rec.trace, rec.id});
    if (rec.process != 0) affected.insert(rec.process);
  }
  for (uint64_t key : affected) {
    auto pit = processes_.find(key);
    if (pit == processes_.end()) continue;
    ProcessState& p = *pit->second;
    p.spans -= p.agnostic.RemoveIf([&](const IntervalSet::Entry& e) {
      const SpanRecord& rec = spans_[e.ref];
      if (rec.live) return false;
      if (rec.thread_id != 0) {
        auto c = p.agnostic_thread_counts.find(rec.thread_id);
        if (c != p.agnostic_thread_counts.end() && --c->second == 0) {
          p.agnostic_thread_counts.erase(c);
        }
      }
      return true;
    });
    for (auto& [tid, set] : p.by_thread) {
      p.spans -= set.RemoveIf([&](const IntervalSet::Entry& e) { return !spans_[e.ref].live; });
    }
    absl::erase_if(p.by_thread, [](const auto& kv) { return kv.second.empty(); });
  }
  for (uint32_t idx : dead) {
    SpanRecord& rec = spans_[idx];
    strings_.Release(rec.name);
    strings_.Release(rec.service);
    rec = SpanRecord{};
    free_spans_.push_back(idx);
  }
  live_spans_ -= dead.size();
}

void JoinEngine::ForgetIdleProcesses() {
  if (watermark_ == kMinNs || SatSub(watermark_, last_process_gc_) < expiry_bucket_) return;
  last_process_gc_ = watermark_;
  const int64_t cutoff = SatSub(watermark_, Ns(config_.process_idle_ttl));
  absl::erase_if(processes_, [&](auto& kv) {
    ProcessState& p = *kv.second;
    if (p.spans != 0 || p.held != 0 || p.last_event >= cutoff) return false;
    strings_.Release(p.service);
    return true;
  });
}

JoinEngine::CommitPoint JoinEngine::OldestUnemitted() const {
  if (arrivals_.empty()) return {};
  return {.any_held = true, .cookie = arrivals_.front().cookie,
          .watermark_ns = arrivals_.front().watermark};
}

void JoinEngine::ObserveThread(std::string_view node_key, uint32_t pid, uint32_t tid,
                               int64_t time_ns) {
  ProcessState& p = GetProcess(ProcessKey(node_key, pid));
  p.last_event = std::max(p.last_event, time_ns);
  if (tid != 0) MarkTidSeen(p, tid);
}

void JoinEngine::RestoreWatermark(int64_t watermark_ns) {
  watermark_ = std::max(watermark_, watermark_ns);
}

int64_t JoinEngine::SpanReplayStartNs() const { return SatSub(watermark_, lateness_); }

int64_t JoinEngine::EarliestHeldSampleNs() const {
  if (held_.empty()) return kMaxNs;
  int64_t earliest = kMaxNs;
  for (const Held& h : held_.begin()->second.samples) earliest = std::min(earliest, h.t);
  return earliest;
}

size_t JoinEngine::MemoryBytes() const {
  size_t bytes = spans_.capacity() * sizeof(SpanRecord) +
                 free_spans_.capacity() * sizeof(uint32_t) +
                 by_id_.capacity() * (sizeof(std::pair<const SpanKey, uint32_t>) + 1) +
                 strings_.MemoryBytes() + scratch_.capacity() * sizeof(uint32_t);
  for (const auto& [k, v] : expiry_) bytes += v.capacity() * sizeof(uint32_t) + 64;
  bytes += processes_.capacity() * (sizeof(std::pair<const uint64_t, void*>) + 1);
  for (const auto& [k, p] : processes_) {
    bytes += sizeof(ProcessState) + p->agnostic.MemoryBytes() +
             p->seen_tids.capacity() * (sizeof(uint32_t) + 1) +
             p->agnostic_thread_counts.capacity() * (sizeof(std::pair<const uint64_t, uint32_t>) + 1) +
             p->by_thread.capacity() * (sizeof(std::pair<const uint64_t, IntervalSet>) + 1);
    for (const auto& [tid, set] : p->by_thread) bytes += set.MemoryBytes();
  }
  for (const auto& [k, b] : held_) bytes += b.samples.capacity() * sizeof(Held) + 64;
  bytes += arrivals_.size() * sizeof(Arrival);
  return bytes;
}

}  // namespace flamestream::correlate
