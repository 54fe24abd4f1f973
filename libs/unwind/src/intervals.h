// Address ranges with one rule each, as the CFI walk produces them, and the steps that turn
// them into table rows: clip to the executable segments, let .eh_frame win over .debug_frame,
// fill the gaps with FS_CFA_NONE and merge equal neighbours.
#pragma once

#include <linux/types.h>

#include <cstdint>
#include <vector>

#include "fde_index.h"
#include "flamestream/common/status.h"
#include "rules.h"
#include "unwind.h"

namespace flamestream::unwind {

struct Segment {
  uint64_t start = 0;
  uint64_t end = 0;  // exclusive
};

struct Interval {
  uint64_t start = 0;
  uint64_t end = 0;  // exclusive
  Rule rule;
};

// Keeps the parts of `in` (sorted, disjoint) that lie in `segments` (sorted); logs one error
// per interval that had to be cut or dropped (only corrupt CFI points outside the code).
std::vector<Interval> ClipToSegments(const std::vector<Interval>& in,
                                     const std::vector<Segment>& segments, ErrorLog* log);

// The parts of `in` that no interval of `covered` overlaps (both sorted and disjoint).
std::vector<Interval> SubtractCovered(const std::vector<Interval>& in,
                                      const std::vector<Interval>& covered);

// Rows from `in` (sorted, disjoint): a row at each interval's start, an FS_CFA_NONE row at each
// gap, equal consecutive rules merged. InvalidArgument when the range does not fit 32-bit pcs.
Status AssembleRows(const std::vector<Interval>& in, uint64_t* base, uint64_t* end,
                    std::vector<fs_unwind_row>* rows);

}  // namespace flamestream::unwind
