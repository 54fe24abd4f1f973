#include "flamestream/correlate/interval_set.h"

#include <algorithm>
#include <bit>
#include <limits>

namespace flamestream::correlate {
namespace {

constexpr int64_t kNoEnd = std::numeric_limits<int64_t>::min();
constexpr size_t kClean = std::numeric_limits<size_t>::max();

}  // namespace

bool IntervalSet::Insert(const Entry& e) {
  if (entries_.empty() || Less(entries_.back(), e)) {
    // The common case: spans arrive roughly in start order.
    MarkDirty(entries_.size());
    entries_.push_back(e);
    return true;
  }
  auto it = std::upper_bound(entries_.begin(), entries_.end(), e, Less);
  if (it != entries_.begin() && !Less(*(it - 1), e)) return false;  // equal key: duplicate
  const size_t pos = static_cast<size_t>(it - entries_.begin());
  entries_.insert(it, e);
  MarkDirty(pos);
  return true;
}

void IntervalSet::RebuildTree() {
  const size_t n = entries_.size();
  const size_t want = std::bit_ceil(std::max<size_t>(n, 1));
  size_t from = dirty_from_;
  if (cap_ == 0 || want > cap_ || want * 4 < cap_) {
    cap_ = want;
    tree_.assign(2 * cap_, kNoEnd);
    from = 0;
    built_size_ = 0;
  }
  const size_t to = std::max(n, built_size_);
  if (from < to) {
    for (size_t i = from; i < to; ++i) tree_[cap_ + i] = i < n ? entries_[i].end : kNoEnd;
    size_t lo = (cap_ + from) / 2;
    size_t hi = (cap_ + to - 1) / 2;
    while (true) {
      for (size_t k = lo; k <= hi; ++k) tree_[k] = std::max(tree_[2 * k], tree_[2 * k + 1]);
      if (lo <= 1) break;
      lo /= 2;
      hi /= 2;
    }
  }
  built_size_ = n;
  dirty_from_ = kClean;
}

ptrdiff_t IntervalSet::FindLastEndAtLeast(size_t limit, int64_t t) const {
  // Iterative descent: at each node try the right child first. A node that lies wholly left
  // of `limit` and whose max >= t always yields a hit, so at most one path backtracks.
  struct Frame {
    size_t node, lo, len;
  };
  Frame stack[2 * 64];
  size_t top = 0;
  stack[top++] = {1, 0, cap_};
  while (top > 0) {
    const Frame f = stack[--top];
    if (f.lo >= limit || tree_[f.node] < t) continue;
    if (f.len == 1) return static_cast<ptrdiff_t>(f.lo);
    const size_t half = f.len / 2;
    stack[top++] = {2 * f.node, f.lo, half};              // left, tried second
    stack[top++] = {2 * f.node + 1, f.lo + half, half};   // right, tried first
  }
  return -1;
}

ptrdiff_t IntervalSet::FindInnermost(int64_t t, int64_t min_end) {
  min_end = std::max(min_end, t);
  const size_t n = entries_.size();
  if (n == 0) return -1;
  // p = number of entries with start <= t.
  const size_t p = static_cast<size_t>(
      std::partition_point(entries_.begin(), entries_.end(),
                           [t](const Entry& e) { return e.start <= t; }) -
      entries_.begin());
  const size_t scan_stop = (n <= kLinearMax || p <= kScanFirst) ? 0 : p - kScanFirst;
  for (size_t i = p; i > scan_stop; --i) {
    if (entries_[i - 1].end >= min_end) return static_cast<ptrdiff_t>(i - 1);
  }
  if (scan_stop == 0) return -1;
  if (dirty_from_ != kClean || cap_ == 0) RebuildTree();
  return FindLastEndAtLeast(scan_stop, min_end);
}

size_t IntervalSet::MemoryBytes() const {
  return entries_.capacity() * sizeof(Entry) + tree_.capacity() * sizeof(int64_t);
}

}  // namespace flamestream::correlate
