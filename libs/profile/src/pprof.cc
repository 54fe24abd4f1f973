#include "flamestream/profile/pprof.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <tuple>

#include "flamestream/common/strings.h"
#include "flamestream/pprofutil/profile_io.h"
#include "flamestream/pprofutil/stacks.h"

namespace flamestream::profile {
namespace pp = ::perftools::profiles;
using common::HexDecode;
using common::HexEncode;
using common::Join;
using common::ParseInt;
namespace {

// String table under construction: "" at 0, each string once.
class StringTable {
 public:
  explicit StringTable(pp::Profile* p) : p_(p) { Add(""); }
  int64_t Add(std::string_view s) {
    auto [it, inserted] = index_.try_emplace(std::string(s), p_->string_table_size());
    if (inserted) p_->add_string_table(std::string(s));
    return it->second;
  }

 private:
  pp::Profile* p_;
  absl::flat_hash_map<std::string, int64_t> index_;
};

struct OutKey {
  uint32_t stack;
  uint32_t span;
  uint32_t thread;
  friend bool operator==(const OutKey&, const OutKey&) = default;
  // NOLINTNEXTLINE(modernize-use-nullptr): the check misreads a defaulted <=>
  friend auto operator<=>(const OutKey&, const OutKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const OutKey& k) {
    return H::combine(std::move(h), k.stack, k.span, k.thread);
  }
};

}  // namespace

pp::Profile EncodePprof(const Window& window, const std::vector<uint32_t>& series,
                        const PprofOptions& options) {
  pp::Profile p;
  StringTable st(&p);
  const Dictionary& d = window.dict;

  auto add_type = [&](pp::ValueType* vt, std::string_view type, std::string_view unit) {
    vt->set_type(st.Add(type));
    vt->set_unit(st.Add(unit));
  };
  // Callers pass series of one profile type (Window::SeriesOf(service, profile)).
  const ProfileNames names = NamesOf(series.empty() || series[0] >= window.series.size()
                                         ? 0
                                         : window.series[series[0]].key.profile);
  add_type(p.add_sample_type(), "samples", "count");
  add_type(p.add_sample_type(), names.sample_type, "nanoseconds");
  add_type(p.mutable_period_type(), names.sample_type, "nanoseconds");
  p.set_default_sample_type(st.Add(names.sample_type));
  // Off-CPU values are measured, not sampled: one nanosecond is one nanosecond.
  p.set_period(names.sample_type == "cpu" ? window.period_ns : 1);
  p.set_time_nanos(window.start_ns);
  p.set_duration_nanos(window.duration_ns);

  std::vector<bool> wanted(window.series.size(), false);
  for (uint32_t s : series) {
    if (s < wanted.size()) wanted[s] = true;
  }
  const LabelPolicy& lp = options.labels;
  absl::flat_hash_map<OutKey, SampleValue> merged;
  for (const auto& [key, value] : window.samples) {
    if (key.series >= wanted.size() || !wanted[key.series]) continue;
    OutKey k{key.stack, lp.any_span() ? key.span : 0, lp.thread_name ? key.thread_name : 0};
    SampleValue& v = merged[k];
    v.count += value.count;
    v.nanos += value.nanos;
  }
  std::vector<std::pair<OutKey, SampleValue>> rows(merged.begin(), merged.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });

  constexpr uint64_t kNone = 0;
  std::vector<uint64_t> loc_id(d.locations().size(), kNone);
  std::vector<uint64_t> fn_id(d.functions().size(), kNone);
  std::vector<uint64_t> map_id(d.mappings().size(), kNone);
  auto mapping_of = [&](uint32_t m) -> uint64_t {
    if (m == 0) return 0;
    if (map_id[m] != kNone) return map_id[m];
    const Dictionary::Mapping& dm = d.mappings()[m];
    pp::Mapping* out = p.add_mapping();
    map_id[m] = static_cast<uint64_t>(p.mapping_size());
    out->set_id(map_id[m]);
    out->set_filename(st.Add(d.str(dm.filename)));
    out->set_build_id(st.Add(d.str(dm.build_id)));
    out->set_has_functions(dm.has_functions);
    out->set_has_filenames(true);
    out->set_has_line_numbers(true);
    out->set_has_inline_frames(true);
    return map_id[m];
  };
  auto function_of = [&](uint32_t f) -> uint64_t {
    if (fn_id[f] != kNone) return fn_id[f];
    const Dictionary::Function& df = d.functions()[f];
    pp::Function* out = p.add_function();
    fn_id[f] = static_cast<uint64_t>(p.function_size());
    out->set_id(fn_id[f]);
    out->set_name(st.Add(d.str(df.name)));
    out->set_system_name(st.Add(d.str(df.system_name != 0 ? df.system_name : df.name)));
    out->set_filename(st.Add(d.str(df.filename)));
    return fn_id[f];
  };
  auto location_of = [&](uint32_t l) -> uint64_t {
    if (loc_id[l] != kNone) return loc_id[l];
    const Dictionary::Location& dl = d.locations()[l];
    const uint64_t mapping = mapping_of(dl.mapping);
    pp::Location* out = p.add_location();
    loc_id[l] = static_cast<uint64_t>(p.location_size());
    out->set_id(loc_id[l]);
    out->set_mapping_id(mapping);
    out->set_address(dl.address);
    for (const Dictionary::Line& line : dl.lines) {
      pp::Line* pl = out->add_line();
      pl->set_function_id(function_of(line.function));
      pl->set_line(line.line);
      pl->set_column(line.column);
    }
    return loc_id[l];
  };

  const int64_t k_span_id = lp.span_id ? st.Add("span_id") : 0;
  const int64_t k_trace_id = lp.trace_id ? st.Add("trace_id") : 0;
  const int64_t k_span_name = lp.span_name ? st.Add("span_name") : 0;
  const int64_t k_thread = lp.thread_name ? st.Add("thread_name") : 0;
  auto add_label = [&](pp::Sample* s, int64_t key, std::string_view value) {
    if (value.empty()) return;
    pp::Label* l = s->add_label();
    l->set_key(key);
    l->set_str(st.Add(value));
  };
  for (const auto& [k, v] : rows) {
    pp::Sample* s = p.add_sample();
    for (uint32_t l : d.stacks()[k.stack]) s->add_location_id(location_of(l));
    s->add_value(v.count);
    s->add_value(v.nanos);
    if (k.span != 0) {
      const Dictionary::Span& span = d.spans()[k.span];
      if (lp.span_id) add_label(s, k_span_id, HexEncode(span.span_id));
      if (lp.trace_id) add_label(s, k_trace_id, HexEncode(span.trace_id));
      if (lp.span_name) add_label(s, k_span_name, d.str(span.name));
    }
    if (k.thread != 0) add_label(s, k_thread, d.str(k.thread));
  }

  p.add_comment(st.Add(fmt::format("{}{}", kCommentEpoch, window.symbol_epoch)));
  if (options.batch_comments) {
    std::vector<std::string> ids;
    for (uint32_t s : series) {
      if (s < window.series.size()) {
        ids.insert(ids.end(), window.series[s].batch_ids.begin(), window.series[s].batch_ids.end());
      }
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (const std::string& id : ids) p.add_comment(st.Add(fmt::format("{}{}", kCommentBatch, id)));
  }
  return p;
}

Result<std::string> GzipPprof(const pp::Profile& profile) {
  std::string raw;
  if (!profile.SerializeToString(&raw)) return InternalError("pprof: serialize failed");
  return pprofutil::Gzip(raw);
}

Result<pp::Profile> DecodePprof(std::string_view bytes) {
  FS_ASSIGN_OR_RETURN(pp::Profile p, pprofutil::ParseProfile(bytes));
  if (p.string_table_size() == 0 || !p.string_table(0).empty()) {
    return DataLoss("pprof: string_table[0] must be \"\"");
  }
  return p;
}

namespace {

// Which sample values hold the sample count and the CPU time.
struct SampleTypes {
  int count_index = -1;
  int nanos_index = -1;
};

Result<SampleTypes> FindSampleTypes(const pp::Profile& p) {
  SampleTypes ix;
  auto str = [&](int64_t i) -> std::string_view {
    return i >= 0 && i < p.string_table_size()
               ? std::string_view(p.string_table(static_cast<int>(i)))
               : std::string_view();
  };
  for (int i = 0; i < p.sample_type_size(); ++i) {
    const std::string_view type = str(p.sample_type(i).type());
    const std::string_view unit = str(p.sample_type(i).unit());
    if (type == "samples" && unit == "count") ix.count_index = i;
    if ((type == "cpu" || type == "off_cpu") && unit == "nanoseconds") ix.nanos_index = i;
  }
  if (ix.count_index < 0 && ix.nanos_index < 0) {
    return InvalidArgument(
        "pprof: no samples/count, cpu/nanoseconds or off_cpu/nanoseconds sample type");
  }
  return ix;
}

}  // namespace

Result<std::vector<FoldedStack>> Fold(const pp::Profile& p) {
  FS_ASSIGN_OR_RETURN(SampleTypes ix, FindSampleTypes(p));
  // Frames are named as `flamestream top|diff|folded` name them (one FrameNamer).
  const pprofutil::FrameNamer names(p);
  std::vector<FoldedStack> out;
  out.reserve(static_cast<size_t>(p.sample_size()));
  for (const pp::Sample& s : p.sample()) {
    FS_RETURN_IF_ERROR(names.Check(s));
    FoldedStack f;
    f.frames = names.RootFirst(s);
    for (const pp::Label& l : s.label()) {
      if (names.Str(l.key()) == "span_name") f.span_name = names.Str(l.str());
    }
    if (ix.count_index >= 0 && ix.count_index < s.value_size()) f.count = s.value(ix.count_index);
    if (ix.nanos_index >= 0 && ix.nanos_index < s.value_size()) f.nanos = s.value(ix.nanos_index);
    out.push_back(std::move(f));
  }
  return out;
}

std::string FoldedText(const std::vector<FoldedStack>& stacks) {
  std::map<std::string, int64_t> merged;
  for (const FoldedStack& s : stacks) merged[Join(s.frames, ";")] += s.count;
  std::string out;
  for (const auto& [stack, count] : merged) {
    if (count == 0) continue;
    out += fmt::format("{} {}\n", stack, count);
  }
  return out;
}

uint64_t EpochOf(const pp::Profile& p) {
  for (int64_t c : p.comment()) {
    if (c < 0 || c >= p.string_table_size()) continue;
    std::string_view s = p.string_table(static_cast<int>(c));
    if (s.starts_with(kCommentEpoch)) {
      Result<uint64_t> v = ParseInt<uint64_t>(s.substr(kCommentEpoch.size()));
      if (v.ok()) return *v;
    }
  }
  return 0;
}

Status ImportPprof(const pp::Profile& p, Window& window, uint32_t series) {
  if (series >= window.series.size()) return InvalidArgument("import: no series {}", series);
  FS_ASSIGN_OR_RETURN(SampleTypes ix, FindSampleTypes(p));
  Dictionary& d = window.dict;
  auto str = [&](int64_t i) -> std::string_view {
    return i >= 0 && i < p.string_table_size()
               ? std::string_view(p.string_table(static_cast<int>(i)))
               : std::string_view();
  };
  absl::flat_hash_map<uint64_t, uint32_t> mappings;
  for (const pp::Mapping& m : p.mapping()) {
    const std::string_view filename = str(m.filename());
    mappings[m.id()] = d.InternMapping({.filename = d.InternString(filename),
                                        .build_id = d.InternString(str(m.build_id())),
                                        .kernel = filename == "[kernel.kallsyms]",
                                        .has_functions = m.has_functions()});
  }
  absl::flat_hash_map<uint64_t, uint32_t> functions;
  for (const pp::Function& f : p.function()) {
    const std::string_view name = str(f.name());
    std::string_view system = str(f.system_name());
    if (system == name) system = {};
    functions[f.id()] = d.InternFunction({.name = d.InternString(name),
                                          .system_name = d.InternString(system),
                                          .filename = d.InternString(str(f.filename()))});
  }
  absl::flat_hash_map<uint64_t, uint32_t> locations;
  for (const pp::Location& l : p.location()) {
    Dictionary::Location out;
    if (l.mapping_id() != 0) {
      auto it = mappings.find(l.mapping_id());
      if (it == mappings.end()) return DataLoss("import: unknown mapping {}", l.mapping_id());
      out.mapping = it->second;
    }
    out.address = l.address();
    for (const pp::Line& line : l.line()) {
      auto it = functions.find(line.function_id());
      if (it == functions.end()) return DataLoss("import: unknown function {}", line.function_id());
      out.lines.push_back({.function = it->second, .line = line.line(), .column = line.column()});
    }
    locations[l.id()] = d.InternLocation(std::move(out));
  }
  for (const pp::Sample& s : p.sample()) {
    std::vector<uint32_t> stack;
    stack.reserve(static_cast<size_t>(s.location_id_size()));
    for (uint64_t id : s.location_id()) {
      auto it = locations.find(id);
      if (it == locations.end()) return DataLoss("import: unknown location {}", id);
      stack.push_back(it->second);
    }
    SampleKey key{.series = series, .stack = d.InternStack(std::move(stack))};
    std::string span_id, trace_id;
    std::string_view span_name;
    for (const pp::Label& l : s.label()) {
      const std::string_view k = str(l.key());
      const std::string_view v = str(l.str());
      if (k == "span_id") {
        FS_ASSIGN_OR_RETURN(span_id, HexDecode(v));
      } else if (k == "trace_id") {
        FS_ASSIGN_OR_RETURN(trace_id, HexDecode(v));
      } else if (k == "span_name") {
        span_name = v;
      } else if (k == "thread_name") {
        key.thread_name = d.InternString(v);
      }
    }
    if (!span_id.empty() || !trace_id.empty() || !span_name.empty()) {
      key.span = d.InternSpan({.trace_id = std::move(trace_id),
                               .span_id = std::move(span_id),
                               .name = d.InternString(span_name)});
    }
    SampleValue& v = window.samples[key];
    if (ix.count_index >= 0 && ix.count_index < s.value_size()) v.count += s.value(ix.count_index);
    if (ix.nanos_index >= 0 && ix.nanos_index < s.value_size()) v.nanos += s.value(ix.nanos_index);
  }
  for (int64_t c : p.comment()) {
    const std::string_view s = str(c);
    if (s.starts_with(kCommentBatch)) {
      window.series[series].batch_ids.insert(std::string(s.substr(kCommentBatch.size())));
    }
  }
  window.symbol_epoch = std::max(window.symbol_epoch, EpochOf(p));
  if (window.period_ns == 0) window.period_ns = p.period();
  return OkStatus();
}

}  // namespace flamestream::profile
