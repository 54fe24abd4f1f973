// IntervalSet: the spans of one process (or one thread of it), answering "which is the
// innermost span that holds time t" in O(log n).
//
//   IntervalSet set;
//   set.Insert({.start = 100, .end = 500, .span_id = SpanId{1}, .ref = 0});
//   set.Insert({.start = 200, .end = 300, .span_id = SpanId{2}, .ref = 1});
//   ptrdiff_t i = set.FindInnermost(250);   // -> the entry with span id 2
//
// Entries are kept sorted by (start ascending, end descending, span id ascending), so "more
// inner" means "further right": among the entries that hold t, the rightmost one has the
// latest start and, for equal starts, the earliest end. A max-of-end segment tree over the
// sorted array finds the rightmost entry left of upper_bound(t) whose end >= t.
//
// Why this shape: spans are exported when they end, so they arrive roughly in order of
// start and are inserted near the back (a parent, which arrives after its children, lands a
// few slots before them): the vector's memmove and the lazy rebuild of the tree's dirty
// suffix are both short. Queries first look at the last few entries before the search point
// (the innermost span is nearly always among them) and use the tree only past that, which
// keeps the common case a handful of cache-line reads at 1, 100 or 10,000 spans.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "flamestream/correlate/types.h"

namespace flamestream::correlate {

class IntervalSet {
 public:
  struct Entry {
    int64_t start = 0;
    int64_t end = 0;  // inclusive
    SpanId span_id;
    uint32_t ref = 0;  // the owner's handle (e.g. a slot in its span table)
  };

  // Adds `e`; returns false (and changes nothing) when an equal entry (same start, end, span
  // id and ref) is already present.
  bool Insert(const Entry& e);

  // Removes every entry for which pred(entry) is true; returns how many were removed.
  template <typename Pred>
  size_t RemoveIf(Pred pred) {
    size_t out = 0;
    size_t first_removed = entries_.size();
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (pred(entries_[i])) {
        if (first_removed == entries_.size()) first_removed = i;
        continue;
      }
      entries_[out++] = entries_[i];
    }
    const size_t removed = entries_.size() - out;
    entries_.resize(out);
    if (removed > 0) MarkDirty(first_removed);
    return removed;
  }

  // Index of the innermost entry with start <= t <= end (the rightmost in sort order), or -1.
  // Not const: it brings the segment tree up to date first.
  ptrdiff_t FindInnermost(int64_t t) { return FindInnermost(t, t); }
  // The same, among entries whose end is also >= min_end (spans ending earlier have expired).
  ptrdiff_t FindInnermost(int64_t t, int64_t min_end);

  [[nodiscard]] const Entry& at(size_t i) const { return entries_[i]; }
  [[nodiscard]] size_t size() const { return entries_.size(); }
  [[nodiscard]] bool empty() const { return entries_.empty(); }
  // Heap bytes held (capacity, not size).
  [[nodiscard]] size_t MemoryBytes() const;

  // Sort order of entries; exposed for tests and for merging the results of two sets.
  static bool Less(const Entry& a, const Entry& b) {
    if (a.start != b.start) return a.start < b.start;
    if (a.end != b.end) return a.end > b.end;
    if (a.span_id != b.span_id) return a.span_id < b.span_id;
    return a.ref < b.ref;  // two traces may reuse a span id
  }

 private:
  // Below this size a backward scan is as fast as the tree, so none is built.
  static constexpr size_t kLinearMax = 32;
  // Entries scanned before falling back to the tree.
  static constexpr size_t kScanFirst = 16;

  void MarkDirty(size_t from) {
    if (from < dirty_from_) dirty_from_ = from;
  }
  void RebuildTree();
  // Rightmost index in [0, limit) whose end >= t, or -1.
  ptrdiff_t FindLastEndAtLeast(size_t limit, int64_t t) const;

  std::vector<Entry> entries_;
  // tree_[cap_ + i] = entries_[i].end (INT64_MIN past the end); tree_[k] = max of children.
  std::vector<int64_t> tree_;
  size_t cap_ = 0;
  size_t built_size_ = 0;          // entries_.size() when the tree was last brought up to date
  size_t dirty_from_ = 0;          // first leaf whose value may be stale
};

}  // namespace flamestream::correlate
