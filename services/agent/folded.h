// Folded stacks (Brendan Gregg's format, what flamegraph.pl and speedscope read):
// one line per distinct stack, "comm;root;...;leaf count", most samples first.
//
//   FoldedStacks folded;
//   folded.Add({"worker", "main", "leaf", "do_syscall_64_[k]"});   // comm first, then root->leaf
//   folded.Write(std::cout);   // "worker;main;leaf;do_syscall_64_[k] 1\n"
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <unordered_map>
#include <vector>

namespace flamestream::agent {

class FoldedStacks {
 public:
  // `frames` starts with the comm, then frames root first. Names are sanitized.
  void Add(const std::vector<std::string>& frames, uint64_t count = 1);
  // Most samples first; ties in lexicographic order, so output is deterministic. Counts are
  // printed divided by `unit` (rounded; stacks that round to 0 are left out), so counts added
  // as nanoseconds print as microseconds with unit 1000.
  void Write(std::ostream& out, uint64_t unit = 1) const;
  [[nodiscard]] uint64_t total() const { return total_; }
  [[nodiscard]] size_t distinct() const { return counts_.size(); }

 private:
  std::unordered_map<std::string, uint64_t> counts_;
  uint64_t total_ = 0;
};

}  // namespace flamestream::agent
