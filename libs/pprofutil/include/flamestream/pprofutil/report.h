// Tables over a StackSet: pprof-style top functions and the change of each function's share
// between two profiles.
//
//   std::vector<pprofutil::TopRow> rows = pprofutil::Top(set, pprofutil::SortBy::kSelf);
//   std::cout << pprofutil::FormatTop(set, rows, /*limit=*/20);
//   //       flat  flat%   sum%        cum   cum%
//   //      1.20s 60.00% 60.00%      1.50s 75.00%  crc32
//   std::vector<pprofutil::DiffRow> diff = pprofutil::Diff(before, after, pprofutil::SortBy::kSelf);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flamestream/pprofutil/stacks.h"

namespace flamestream::pprofutil {

enum class SortBy {
  kSelf,   // flat: samples where the function is the leaf
  kTotal,  // cum: samples where the function is anywhere on the stack
};

struct TopRow {
  std::string name;
  int64_t flat = 0;
  int64_t cum = 0;      // a recursive function counts once per sample
  double flat_pct = 0;  // of the set's total
  double sum_pct = 0;   // running sum of flat_pct in table order
  double cum_pct = 0;
  friend bool operator==(const TopRow&, const TopRow&) = default;
};

// Every function, sorted by flat (kSelf) or cum (kTotal), descending; ties by the other
// value, then by name.
std::vector<TopRow> Top(const StackSet& set, SortBy by);

// pprof's value labels: nanoseconds scale to ns/us/ms/s ("1.20s", "10ms"), bytes to
// B/kB/MB/GB, anything else prints as an integer.
std::string FormatValue(int64_t value, const std::string& unit);

// The table `pprof -top` prints: a "Total" line, a header, then at most `limit` rows
// (0 = all).
std::string FormatTop(const StackSet& set, const std::vector<TopRow>& rows, size_t limit);

struct DiffRow {
  std::string name;
  double before_pct = 0;  // share of the before profile's total, in percent
  double after_pct = 0;
  double delta_pct = 0;   // after_pct - before_pct (percentage points)
  int64_t before = 0;
  int64_t after = 0;
  friend bool operator==(const DiffRow&, const DiffRow&) = default;
};

// Every function of either profile by |delta| descending, then by name. Shares are of each
// profile's own total, so profiles of different lengths compare.
std::vector<DiffRow> Diff(const StackSet& before, const StackSet& after, SortBy by);

std::string FormatDiff(const StackSet& before, const StackSet& after,
                       const std::vector<DiffRow>& rows, size_t limit);

}  // namespace flamestream::pprofutil
