#include "folded.h"

#include <algorithm>

#include "frame_namer.h"

namespace flamestream::agent {

void FoldedStacks::Add(const std::vector<std::string>& frames, uint64_t count) {
  std::string key;
  for (size_t i = 0; i < frames.size(); ++i) {
    if (i > 0) key += ';';
    key += SanitizeFrameName(frames[i]);
  }
  counts_[key] += count;
  total_ += count;
}

void FoldedStacks::Write(std::ostream& out, uint64_t unit) const {
  std::vector<std::pair<const std::string*, uint64_t>> rows;
  rows.reserve(counts_.size());
  for (const auto& [stack, n] : counts_) {
    rows.emplace_back(&stack, n);
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : *a.first < *b.first;
  });
  for (const auto& [stack, n] : rows) {
    const uint64_t v = (n + unit / 2) / unit;
    if (v > 0) out << *stack << ' ' << v << '\n';
  }
}

}  // namespace flamestream::agent
