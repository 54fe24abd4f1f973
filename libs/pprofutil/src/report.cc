#include "flamestream/pprofutil/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace flamestream::pprofutil {
namespace {

struct Totals {
  int64_t flat = 0;
  int64_t cum = 0;
};

std::map<std::string, Totals> FunctionTotals(const StackSet& set) {
  std::map<std::string, Totals> totals;
  for (const auto& [frames, value] : set.stacks) {
    if (frames.empty()) continue;
    totals[frames.back()].flat += value;
    // Recursion must not count a sample twice in cum.
    std::set<std::string_view> seen;
    for (const std::string& f : frames) {
      if (seen.insert(f).second) totals[f].cum += value;
    }
  }
  return totals;
}

double Pct(int64_t part, int64_t total) {
  return total == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(total);
}

std::string Scaled(double v, const char* suffix) {
  std::string s = fmt::format("{:.2f}", v);
  if (s.size() > 3 && s.compare(s.size() - 3, 3, ".00") == 0) s.resize(s.size() - 3);
  if (s == "0" || s == "-0") return "0";
  return s + suffix;
}

}  // namespace

std::vector<TopRow> Top(const StackSet& set, SortBy by) {
  std::vector<TopRow> rows;
  for (const auto& [name, t] : FunctionTotals(set)) {
    rows.push_back({.name = name, .flat = t.flat, .cum = t.cum});
  }
  std::sort(rows.begin(), rows.end(), [by](const TopRow& a, const TopRow& b) {
    const int64_t ka = by == SortBy::kSelf ? a.flat : a.cum;
    const int64_t kb = by == SortBy::kSelf ? b.flat : b.cum;
    if (ka != kb) return ka > kb;
    const int64_t sa = by == SortBy::kSelf ? a.cum : a.flat;
    const int64_t sb = by == SortBy::kSelf ? b.cum : b.flat;
    if (sa != sb) return sa > sb;
    return a.name < b.name;
  });
  int64_t running = 0;
  for (TopRow& r : rows) {
    running += r.flat;
    r.flat_pct = Pct(r.flat, set.total);
    r.sum_pct = Pct(running, set.total);
    r.cum_pct = Pct(r.cum, set.total);
  }
  return rows;
}

std::string FormatValue(int64_t value, const std::string& unit) {
  const double v = static_cast<double>(value);
  const double a = std::fabs(v);
  if (unit == "nanoseconds" || unit == "ns") {
    if (a >= 1e9) return Scaled(v / 1e9, "s");
    if (a >= 1e6) return Scaled(v / 1e6, "ms");
    if (a >= 1e3) return Scaled(v / 1e3, "us");
    return Scaled(v, "ns");
  }
  if (unit == "bytes" || unit == "B") {
    if (a >= 1024.0 * 1024 * 1024) return Scaled(v / (1024.0 * 1024 * 1024), "GB");
    if (a >= 1024.0 * 1024) return Scaled(v / (1024.0 * 1024), "MB");
    if (a >= 1024.0) return Scaled(v / 1024.0, "kB");
    return Scaled(v, "B");
  }
  return fmt::format("{}", value);
}

std::string FormatTop(const StackSet& set, const std::vector<TopRow>& rows, size_t limit) {
  const size_t n = limit == 0 ? rows.size() : std::min(limit, rows.size());
  int64_t shown = 0;
  for (size_t i = 0; i < n; ++i) shown += rows[i].flat;
  std::string out = fmt::format(
      "Type: {}\nShowing {} of {} functions, {} ({:.2f}%) of {} total\n", set.sample_type, n,
      rows.size(), FormatValue(shown, set.unit), Pct(shown, set.total),
      FormatValue(set.total, set.unit));
  out += fmt::format("{:>10} {:>6} {:>6} {:>10} {:>6}\n", "flat", "flat%", "sum%", "cum", "cum%");
  for (size_t i = 0; i < n; ++i) {
    const TopRow& r = rows[i];
    out += fmt::format("{:>10} {:>5.2f}% {:>5.2f}% {:>10} {:>5.2f}%  {}\n",
                       FormatValue(r.flat, set.unit), r.flat_pct, r.sum_pct,
                       FormatValue(r.cum, set.unit), r.cum_pct, r.name);
  }
  return out;
}

std::vector<DiffRow> Diff(const StackSet& before, const StackSet& after, SortBy by) {
  std::map<std::string, DiffRow> by_name;
  for (const auto& [name, t] : FunctionTotals(before)) {
    DiffRow& r = by_name[name];
    r.name = name;
    r.before = by == SortBy::kSelf ? t.flat : t.cum;
  }
  for (const auto& [name, t] : FunctionTotals(after)) {
    DiffRow& r = by_name[name];
    r.name = name;
    r.after = by == SortBy::kSelf ? t.flat : t.cum;
  }
  std::vector<DiffRow> rows;
  for (auto& [name, r] : by_name) {
    r.before_pct = Pct(r.before, before.total);
    r.after_pct = Pct(r.after, after.total);
    r.delta_pct = r.after_pct - r.before_pct;
    if (r.before == 0 && r.after == 0) continue;
    rows.push_back(r);
  }
  std::stable_sort(rows.begin(), rows.end(), [](const DiffRow& a, const DiffRow& b) {
    const double da = std::fabs(a.delta_pct);
    const double db = std::fabs(b.delta_pct);
    // Shares are ratios of integers; compare with a tolerance so equal changes tie by name.
    if (std::fabs(da - db) > 1e-9) return da > db;
    return a.name < b.name;
  });
  return rows;
}

std::string FormatDiff(const StackSet& before, const StackSet& after,
                       const std::vector<DiffRow>& rows, size_t limit) {
  const size_t n = limit == 0 ? rows.size() : std::min(limit, rows.size());
  std::string out = fmt::format("Type: {}\nBefore: {} total, after: {} total; showing {} of {} functions\n",
                                after.sample_type, FormatValue(before.total, before.unit),
                                FormatValue(after.total, after.unit), n, rows.size());
  out += fmt::format("{:>8} {:>8} {:>9}  {}\n", "before%", "after%", "delta", "name");
  for (size_t i = 0; i < n; ++i) {
    const DiffRow& r = rows[i];
    out += fmt::format("{:>7.2f}% {:>7.2f}% {:>+8.2f}%  {}\n", r.before_pct, r.after_pct,
                       r.delta_pct, r.name);
  }
  return out;
}

}  // namespace flamestream::pprofutil
