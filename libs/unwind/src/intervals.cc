#include "intervals.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

namespace flamestream::unwind {

std::vector<Interval> ClipToSegments(const std::vector<Interval>& in,
                                     const std::vector<Segment>& segments, ErrorLog* log) {
  std::vector<Interval> out;
  out.reserve(in.size());
  size_t s = 0;
  for (const Interval& iv : in) {
    while (s < segments.size() && segments[s].end <= iv.start) ++s;
    uint64_t kept = 0;
    for (size_t t = s; t < segments.size() && segments[t].start < iv.end; ++t) {
      const uint64_t lo = std::max(iv.start, segments[t].start);
      const uint64_t hi = std::min(iv.end, segments[t].end);
      if (lo < hi) {
        out.push_back({lo, hi, iv.rule});
        kept += hi - lo;
      }
    }
    if (kept != iv.end - iv.start) {
      log->Add(fmt::format("CFI for [{:#x}, {:#x}) lies outside the executable segments", iv.start,
                           iv.end));
    }
  }
  return out;
}

std::vector<Interval> SubtractCovered(const std::vector<Interval>& in,
                                      const std::vector<Interval>& covered) {
  std::vector<Interval> out;
  size_t c = 0;
  for (Interval iv : in) {
    while (c < covered.size() && covered[c].end <= iv.start) ++c;
    for (size_t d = c; d < covered.size() && covered[d].start < iv.end; ++d) {
      if (covered[d].start > iv.start) out.push_back({iv.start, covered[d].start, iv.rule});
      iv.start = std::max(iv.start, covered[d].end);
      if (iv.start >= iv.end) break;
    }
    if (iv.start < iv.end) out.push_back(iv);
  }
  return out;
}

Status AssembleRows(const std::vector<Interval>& in, uint64_t* base, uint64_t* end,
                    std::vector<fs_unwind_row>* rows) {
  rows->clear();
  *base = 0;
  *end = 0;
  if (in.empty()) return OkStatus();
  *base = in.front().start;
  *end = in.back().end;
  if (*end - *base > std::numeric_limits<uint32_t>::max()) {
    return InvalidArgument("CFI covers [{:#x}, {:#x}), more than 32-bit pcs can address", *base,
                           *end);
  }
  auto push = [&](uint64_t addr, const Rule& r) {
    if (!rows->empty()) {
      const fs_unwind_row& last = rows->back();
      if (last.cfa_kind == r.cfa_kind && last.rbp_kind == r.rbp_kind &&
          last.rbp_offset == r.rbp_offset && last.cfa_offset == r.cfa_offset) {
        return;
      }
    }
    fs_unwind_row row{};
    row.pc = static_cast<__u32>(addr - *base);
    row.cfa_kind = r.cfa_kind;
    row.rbp_kind = r.rbp_kind;
    row.rbp_offset = r.rbp_offset;
    row.cfa_offset = r.cfa_offset;
    rows->push_back(row);
  };
  uint64_t prev_end = *base;
  for (const Interval& iv : in) {
    if (iv.start > prev_end) push(prev_end, Rule{});
    push(iv.start, iv.rule);
    prev_end = iv.end;
  }
  return OkStatus();
}

}  // namespace flamestream::unwind
