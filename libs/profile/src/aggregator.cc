#include "flamestream/profile/aggregator.h"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <limits>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/common/strings.h"

namespace flamestream::profile {
using common::HexEncode;
namespace {

constexpr uint32_t kUnset = std::numeric_limits<uint32_t>::max();

std::string_view Basename(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

bool IsKernelKind(v1::MappingKind kind) {
  return kind == v1::MAPPING_KIND_KERNEL || kind == v1::MAPPING_KIND_KERNEL_MODULE;
}

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

std::string UnresolvedFrameName(std::string_view mapping_path, uint64_t address) {
  if (mapping_path.empty()) return fmt::format("0x{:x}", address);
  return fmt::format("{}+0x{:x}", Basename(mapping_path), address);
}

std::string WindowFileStem(int64_t start_ns) {
  const int64_t secs = FloorDiv(start_ns, 1'000'000'000);
  const int64_t frac = start_ns - secs * 1'000'000'000;
  const auto t = static_cast<time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::string stem = fmt::format("{:04}{:02}{:02}T{:02}{:02}{:02}", tm.tm_year + 1900,
                                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (frac != 0) stem += fmt::format(".{:09}", frac);
  return stem + "Z";
}

// ---- Dictionary --------------------------------------------------------------------------

Dictionary::Dictionary() {
  strings_.emplace_back();
  string_index_.emplace("", 0);
  mappings_.emplace_back();
  functions_.emplace_back();
  locations_.emplace_back();
  spans_.emplace_back();
  // Stack 0 is a real (empty) stack only if someone interns it; keep the tables aligned with
  // the "index 0 = none" rule by reserving it.
  stacks_.emplace_back();
}

uint32_t Dictionary::InternString(std::string_view s) {
  if (s.empty()) return 0;
  auto it = string_index_.find(absl::string_view(s.data(), s.size()));
  if (it != string_index_.end()) return it->second;
  const auto idx = static_cast<uint32_t>(strings_.size());
  strings_.emplace_back(s);
  string_index_.emplace(strings_.back(), idx);
  return idx;
}

// ---- Window ------------------------------------------------------------------------------

uint32_t Window::SeriesIndex(const SeriesKey& key, bool* added) {
  auto [it, inserted] = series_index.try_emplace(key, static_cast<uint32_t>(series.size()));
  if (inserted) series.push_back(SeriesInfo{.key = key});
  if (added != nullptr) *added = inserted;
  return it->second;
}

std::vector<uint32_t> Window::SeriesOf(std::string_view service) const {
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < series.size(); ++i) {
    if (service.empty() || series[i].key.service == service) out.push_back(i);
  }
  return out;
}

std::vector<std::string> Window::Services() const {
  std::vector<std::string> out;
  for (const SeriesInfo& s : series) out.push_back(s.key.service);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int64_t Window::SeriesOfBatchPid(const std::string& batch_id, uint32_t pid,
                                 uint32_t profile) const {
  auto it = batch_series.find(batch_id);
  if (it == batch_series.end()) return -1;
  for (const auto& [p, s] : it->second) {
    if (p == pid && series[s].key.profile == profile) return s;
  }
  return -1;
}

std::vector<uint32_t> Window::SeriesOf(std::string_view service, uint32_t profile) const {
  std::vector<uint32_t> out;
  for (uint32_t i : SeriesOf(service)) {
    if (series[i].key.profile == profile) out.push_back(i);
  }
  return out;
}

std::vector<std::pair<std::string, uint32_t>> Window::ServiceProfiles() const {
  std::vector<std::pair<std::string, uint32_t>> out;
  for (const SeriesInfo& s : series) out.emplace_back(s.key.service, s.key.profile);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

ProfileNames NamesOf(uint32_t profile) {
  if (profile == v1::PROFILE_TYPE_OFF_CPU) {
    return {.sample_type = "off_cpu", .pyroscope = "off_cpu", .file_suffix = ".off_cpu"};
  }
  return {.sample_type = "cpu", .pyroscope = "process_cpu", .file_suffix = ""};
}

SampleValue Window::Total() const {
  SampleValue total;
  for (const auto& [key, v] : samples) {
    total.count += v.count;
    total.nanos += v.nanos;
  }
  return total;
}

// ---- Aggregator --------------------------------------------------------------------------

// Translation of one batch's tables into one window's dictionary, filled lazily.
struct Aggregator::BatchContext {
  Window* window = nullptr;
  std::vector<uint32_t> strings;    // batch strx -> window strx
  std::vector<uint32_t> mappings;   // batch mapping_index (1-based) -> window mapping
  std::vector<uint32_t> locations;  // batch location -> window location
  std::vector<uint32_t> stacks;     // batch stack -> window stack
  std::vector<uint32_t> spans;      // batch span_index (1-based) -> window span
  // (pid << 1 | profile type) -> series, -1 = duplicate
  absl::flat_hash_map<uint64_t, int64_t> pid_series;
  std::vector<uint32_t> accepted;                        // series this batch was admitted to
  absl::flat_hash_map<uint64_t, uint32_t> thread_names;  // pid<<32|tid -> strx
  const Privacy* privacy = nullptr;
  const LabelPolicy* labels = nullptr;
  std::vector<uint32_t> paths;  // batch strx -> window strx of the scrubbed path

  void Init(Window* w, const v1::SampleBatch& b, const Privacy& p, const LabelPolicy& l) {
    window = w;
    privacy = &p;
    labels = &l;
    if (p.rewrites_paths()) paths.assign(static_cast<size_t>(b.strings_size()), kUnset);
    strings.assign(static_cast<size_t>(b.strings_size()), kUnset);
    mappings.assign(static_cast<size_t>(b.mappings_size()) + 1, kUnset);
    mappings[0] = 0;
    locations.assign(static_cast<size_t>(b.locations_size()), kUnset);
    stacks.assign(static_cast<size_t>(b.stacks_size()), kUnset);
    spans.assign(static_cast<size_t>(b.spans_size()) + 1, kUnset);
    spans[0] = 0;
  }

  uint32_t Str(const v1::SampleBatch& b, uint32_t strx) {
    uint32_t& slot = strings[strx];
    if (slot == kUnset) slot = window->dict.InternString(b.strings(static_cast<int>(strx)));
    return slot;
  }

  // A file or binary path, rewritten by the privacy rules.
  uint32_t Path(const v1::SampleBatch& b, uint32_t strx) {
    if (!privacy->rewrites_paths() || strx == 0) return Str(b, strx);
    uint32_t& slot = paths[strx];
    if (slot == kUnset) {
      slot = window->dict.InternString(privacy->ScrubPath(b.strings(static_cast<int>(strx))));
    }
    return slot;
  }

  uint32_t KernelMapping() {
    return window->dict.InternMapping({.filename = window->dict.InternString("[kernel.kallsyms]"),
                                       .kernel = true,
                                       .has_functions = true});
  }

  uint32_t Mapping(const v1::SampleBatch& b, uint32_t mapping_index) {
    uint32_t& slot = mappings[mapping_index];
    if (slot != kUnset) return slot;
    const v1::Mapping& m = b.mappings(static_cast<int>(mapping_index) - 1);
    slot = window->dict.InternMapping(
        {.filename = Path(b, m.path_strx()),
         .build_id = m.build_id().empty() ? 0 : window->dict.InternString(HexEncode(m.build_id())),
         .kernel = IsKernelKind(m.kind()),
         .has_functions = true});
    return slot;
  }

  uint32_t Location(const v1::SampleBatch& b, uint32_t index) {
    uint32_t& slot = locations[index];
    if (slot != kUnset) return slot;
    const v1::Location& loc = b.locations(static_cast<int>(index));
    Dictionary& d = window->dict;
    Dictionary::Location out;
    out.address = loc.address();
    const v1::Mapping* mapping = batch::MappingOf(b, loc);
    const bool kernel = (mapping != nullptr && IsKernelKind(mapping->kind())) ||
                        (mapping == nullptr && loc.symbol_strx() != 0);
    out.mapping =
        mapping != nullptr ? Mapping(b, loc.mapping_index()) : (kernel ? KernelMapping() : 0);
    if (loc.lines_size() > 0) {
      out.lines.reserve(static_cast<size_t>(loc.lines_size()));
      for (const v1::Line& line : loc.lines()) {
        const uint32_t fn = d.InternFunction({.name = Str(b, line.function_strx()),
                                              .system_name = Str(b, line.system_name_strx()),
                                              .filename = Path(b, line.file_strx())});
        out.lines.push_back({.function = fn, .line = line.line(), .column = line.column()});
      }
    } else if (kernel && loc.symbol_strx() != 0) {
      out.lines.push_back({.function = d.InternFunction({.name = Str(b, loc.symbol_strx())})});
    } else {
      const std::string path = privacy->ScrubPath(
          mapping != nullptr ? batch::StringAt(b, mapping->path_strx()) : std::string());
      const uint32_t name = d.InternString(UnresolvedFrameName(path, loc.address()));
      out.lines.push_back({.function = d.InternFunction({.name = name})});
    }
    slot = d.InternLocation(std::move(out));
    return slot;
  }

  uint32_t Stack(const v1::SampleBatch& b, uint32_t index) {
    uint32_t& slot = stacks[index];
    if (slot != kUnset) return slot;
    const v1::Stack& stack = b.stacks(static_cast<int>(index));
    std::vector<uint32_t> locs;
    locs.reserve(static_cast<size_t>(stack.location_indices_size()));
    for (uint32_t li : stack.location_indices()) locs.push_back(Location(b, li));
    slot = window->dict.InternStack(std::move(locs));
    return slot;
  }

  uint32_t Span(const v1::SampleBatch& b, uint32_t span_index) {
    uint32_t& slot = spans[span_index];
    if (slot != kUnset) return slot;
    const v1::SpanRef& s = b.spans(static_cast<int>(span_index) - 1);
    // Only what the policy keeps: spans that differ only in dropped parts merge.
    slot = window->dict.InternSpan(
        {.trace_id = labels->trace_id ? s.trace_id() : std::string(),
         .span_id = labels->span_id ? s.span_id() : std::string(),
         .name = labels->span_name ? window->dict.InternString(s.name()) : 0});
    return slot;
  }
};

Aggregator::Aggregator(const AggregatorOptions& options)
    : options_(options),
      window_ns_(std::max<int64_t>(1, options.window.count())),
      sanitizer_(options.label_limits),
      privacy_(options.privacy) {
  // Sample labels the policy removes are merged away like those a sink does not keep.
  LabelPolicy& l = options_.labels;
  l.span_id = l.span_id && privacy_.Keeps("span_id");
  l.trace_id = l.trace_id && privacy_.Keeps("trace_id");
  l.span_name = l.span_name && privacy_.Keeps("span_name");
  l.thread_name = l.thread_name && privacy_.Keeps("thread_name");
}

Aggregator::~Aggregator() = default;

int64_t Aggregator::WindowStart(int64_t timestamp_ns) const {
  return FloorDiv(timestamp_ns, window_ns_) * window_ns_;
}

Window& Aggregator::WindowAt(int64_t start_ns) {
  std::unique_ptr<Window>& w = windows_[start_ns];
  if (!w) {
    w = std::make_unique<Window>();
    w->start_ns = start_ns;
    w->duration_ns = window_ns_;
  }
  return *w;
}

Window* Aggregator::Find(int64_t start_ns) {
  auto it = windows_.find(start_ns);
  return it == windows_.end() ? nullptr : it->second.get();
}

SeriesKey Aggregator::SeriesFor(const v1::SampleBatch& b, const v1::Process* p, uint32_t* reasons) {
  SeriesKey key;
  if (p == nullptr) {
    key.service = "unknown";
  } else {
    const std::string identity =
        fmt::format("{}/{}/{}/{}", b.cluster(), b.node(), p->host_pid(), p->start_time_ticks());
    if (!p->service_name().empty()) {
      key.service = p->service_name();
      learned_services_[identity] = p->service_name();
    } else if (auto it = learned_services_.find(identity); it != learned_services_.end()) {
      key.service = it->second;
    } else if (!p->exe().empty()) {
      key.service = std::string(Basename(p->exe()));
    } else if (!p->comm().empty()) {
      key.service = p->comm();
    } else {
      key.service = "unknown";
    }
  }
  if (options_.granularity == SeriesGranularity::kServiceHost) {
    key.cluster = b.cluster();
    key.host = b.node();
    if (p != nullptr) {
      key.container_id = p->container_id();
      key.pod_uid = p->pod_uid();
    }
  }
  if (!privacy_.Keeps("cluster")) key.cluster.clear();
  if (!privacy_.Keeps("node")) key.host.clear();
  if (!privacy_.Keeps("container_id")) key.container_id.clear();
  if (!privacy_.Keeps("k8s_pod_uid")) key.pod_uid.clear();
  for (std::string* v : {&key.service, &key.cluster, &key.host, &key.container_id, &key.pod_uid}) {
    if (!v->empty()) *v = sanitizer_.Value(*v, reasons);
  }
  return key;
}

AddResult Aggregator::Add(const v1::SampleBatch& b) {
  AddResult result;
  const std::string batch_id = batch::BatchIdString(b.id());

  absl::flat_hash_map<uint32_t, const v1::Process*> processes;
  for (const v1::Process& p : b.processes()) processes[p.host_pid()] = &p;
  absl::flat_hash_map<uint64_t, const std::string*> threads;
  if (options_.labels.thread_name) {
    for (const v1::Thread& t : b.threads()) {
      threads[(uint64_t{t.pid()} << 32) | t.tid()] = &t.name();
    }
  }
  // Series key per pid, computed once per batch (it is the same in every window).
  // (key, LabelReason bits of what sanitizing changed)
  absl::flat_hash_map<uint32_t, std::pair<SeriesKey, uint32_t>> pid_keys;

  std::vector<std::unique_ptr<BatchContext>> contexts;  // one per window touched
  BatchContext* ctx = nullptr;
  int64_t ctx_start = 0;
  uint32_t last_pid = 0;
  uint32_t last_profile = 0;
  int64_t last_series = -2;  // -2 = not resolved for this ctx
  uint64_t last_thread = ~uint64_t{0};
  uint32_t last_thread_strx = 0;

  batch::SampleCursor cursor(b);
  batch::SampleRow row;
  while (cursor.Next(&row)) {
    const int64_t start = WindowStart(row.timestamp_ns);
    if (ctx == nullptr || start != ctx_start) {
      ctx = nullptr;
      for (auto& c : contexts) {
        if (c->window->start_ns == start) ctx = c.get();
      }
      if (ctx == nullptr) {
        contexts.push_back(std::make_unique<BatchContext>());
        ctx = contexts.back().get();
        Window& w = WindowAt(start);
        ctx->Init(&w, b, privacy_, options_.labels);
        if (w.period_ns == 0) w.period_ns = b.period_ns();
        w.symbol_epoch = std::max(w.symbol_epoch, b.symbol_epoch());
        result.windows.push_back(start);
      }
      ctx_start = start;
      last_series = -2;
      last_thread = ~uint64_t{0};
    }
    if (row.timestamp_ns > max_event_ns_) max_event_ns_ = row.timestamp_ns;

    // Series (and duplicate check) for this pid in this window.
    if (last_series == -2 || row.pid != last_pid || row.profile_type != last_profile) {
      auto [it, inserted] =
          ctx->pid_series.try_emplace((uint64_t{row.pid} << 1) | (row.profile_type & 1), -1);
      if (inserted) {
        auto kit = pid_keys.find(row.pid);
        if (kit == pid_keys.end()) {
          auto pit = processes.find(row.pid);
          uint32_t reasons = 0;
          SeriesKey key = SeriesFor(b, pit == processes.end() ? nullptr : pit->second, &reasons);
          kit = pid_keys.try_emplace(row.pid, std::move(key), reasons).first;
        }
        Window& w = *ctx->window;
        bool added = false;
        SeriesKey series_key = kit->second.first;
        series_key.profile = row.profile_type;
        const uint32_t s = w.SeriesIndex(series_key, &added);
        if (added) {
          if (kit->second.second != 0) sanitizer_.Count(kit->second.second);
          auto pit = processes.find(row.pid);
          if (pit != processes.end()) w.series[s].exe = privacy_.ScrubPath(pit->second->exe());
          if (new_series_hook_) new_series_hook_(w, s);
        }
        if (std::find(ctx->accepted.begin(), ctx->accepted.end(), s) != ctx->accepted.end()) {
          it->second = s;
        } else if (w.series[s].batch_ids.insert(batch_id).second) {
          ctx->accepted.push_back(s);
          it->second = s;
        }
        if (it->second >= 0) w.batch_series[batch_id].emplace_back(row.pid, s);
      }
      last_pid = row.pid;
      last_profile = row.profile_type;
      last_series = it->second;
    }
    if (last_series < 0) {
      ++result.duplicates;
      continue;
    }

    SampleKey key;
    key.series = static_cast<uint32_t>(last_series);
    key.stack = ctx->Stack(b, row.stack_index);
    if (row.span_index != 0 && options_.labels.any_span()) key.span = ctx->Span(b, row.span_index);
    if (options_.labels.thread_name) {
      const uint64_t tk = (uint64_t{row.pid} << 32) | row.tid;
      if (tk != last_thread) {
        auto [it, inserted] = ctx->thread_names.try_emplace(tk, 0);
        if (inserted) {
          auto tit = threads.find(tk);
          if (tit != threads.end()) it->second = ctx->window->dict.InternString(*tit->second);
        }
        last_thread = tk;
        last_thread_strx = it->second;
      }
      key.thread_name = last_thread_strx;
    }
    SampleValue& v = ctx->window->samples[key];
    v.count += 1;
    v.nanos += row.value_ns;
    ++result.added;
  }
  std::sort(result.windows.begin(), result.windows.end());
  return result;
}

std::vector<std::unique_ptr<Window>> Aggregator::TakeClosed(int64_t watermark_ns) {
  std::vector<std::unique_ptr<Window>> out;
  while (!windows_.empty()) {
    auto it = windows_.begin();
    if (it->first + window_ns_ > watermark_ns) break;
    out.push_back(std::move(it->second));
    windows_.erase(it);
  }
  return out;
}

std::vector<std::unique_ptr<Window>> Aggregator::TakeAll() {
  std::vector<std::unique_ptr<Window>> out;
  for (auto& [start, w] : windows_) out.push_back(std::move(w));
  windows_.clear();
  return out;
}

}  // namespace flamestream::profile
