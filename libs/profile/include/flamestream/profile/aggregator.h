// Aggregates correlated sample batches into profiles per aligned time window and series.
//
//   profile::Aggregator agg({.window = std::chrono::seconds(10),
//                            .labels = profile::LabelPolicy::Pyroscope(/*span_name=*/true)});
//   FS_ASSIGN_OR_RETURN(std::vector<int64_t> windows, agg.Add(batch));  // validated batch
//   for (std::unique_ptr<profile::Window>& w : agg.TakeClosed(watermark_ns)) {
//     perftools::profiles::Profile p = profile::EncodePprof(*w, w->SeriesOf("checkout"));
//   }
//
// A window holds one dictionary (strings, mappings, functions, locations, stacks, spans) shared
// by all of its series, like an OTLP ProfilesDictionary; per-series pprof profiles are cut out
// of it at encode time (pprof.h). Per sample the hot path is one hash-map update: every batch
// table entry (string, mapping, location, stack, span) is translated into the window's
// dictionary once per batch and window, then samples only index the translation tables.
//
// Series: service.name of the process (Process.service_name, learned by the correlator from the
// process's spans; once seen, it is remembered for that process so later batches without it
// do not split the process across two services), else the exe basename, else comm; plus
// cluster, host (node), container id and pod uid unless the granularity is kService. Every
// value is sanitized here (labels.h: control characters and invalid UTF-8 removed, length
// capped with a hash suffix), once for all sinks.
// Duplicates (the same batch id delivered twice) are dropped per window and series.
#pragma once

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>
#include <absl/hash/hash.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/profile/labels.h"
#include "flamestream/profile/privacy.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::profile {

// Which sample labels a sink keeps. Dropped labels are merged away during aggregation, so a
// Pyroscope window never holds a sample per trace.
struct LabelPolicy {
  bool span_id = true;
  bool trace_id = true;
  bool span_name = true;
  bool thread_name = true;

  // File and OTLP sinks: everything.
  static LabelPolicy Full() { return {}; }
  // Pyroscope: span_id only (+ span_name when enabled); trace_id and thread labels would make
  // a series per trace.
  static LabelPolicy Pyroscope(bool with_span_name) {
    return {.span_id = true, .trace_id = false, .span_name = with_span_name, .thread_name = false};
  }
  [[nodiscard]] bool any_span() const { return span_id || trace_id || span_name; }
};

enum class SeriesGranularity {
  kService,      // one series per service (the file sink: one file per service and window)
  kServiceHost,  // service + cluster + host + container + pod (remote sinks)
};

// Identity of one series. Fields not used by the granularity are empty.
struct SeriesKey {
  std::string service;
  std::string cluster;
  std::string host;
  std::string container_id;
  std::string pod_uid;
  // v1::ProfileType: CPU samples and off-CPU time of one process are separate series, so
  // every sink keeps them apart with their own sample type.
  uint32_t profile = 0;

  friend bool operator==(const SeriesKey&, const SeriesKey&) = default;
  friend auto operator<=>(const SeriesKey&, const SeriesKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const SeriesKey& k) {
    return H::combine(std::move(h), k.service, k.cluster, k.host, k.container_id, k.pod_uid,
                      k.profile);
  }
};

// How each profile type is named where it leaves us: the pprof sample/period type and the
// Pyroscope series name (__name__). CPU keeps Pyroscope's process_cpu:cpu:nanoseconds:cpu:
// nanoseconds; off-CPU is off_cpu:off_cpu:nanoseconds:off_cpu:nanoseconds.
struct ProfileNames {
  std::string_view sample_type;  // "cpu" | "off_cpu" (unit: nanoseconds)
  std::string_view pyroscope;    // "process_cpu" | "off_cpu"
  std::string_view file_suffix;  // appended to the service in file names: "" | ".off_cpu"
};
[[nodiscard]] ProfileNames NamesOf(uint32_t profile);

// Tables shared by all series of a window. Index 0 of every table is the "none" entry (as in
// OTLP), so an index is also a valid pprof id when non-zero.
class Dictionary {
 public:
  struct Mapping {
    uint32_t filename = 0;  // strx
    uint32_t build_id = 0;  // strx of the lower-case hex build id
    bool kernel = false;
    bool has_functions = false;
    friend bool operator==(const Mapping&, const Mapping&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Mapping& m) {
      return H::combine(std::move(h), m.filename, m.build_id, m.kernel, m.has_functions);
    }
  };
  struct Function {
    uint32_t name = 0;         // strx, demangled
    uint32_t system_name = 0;  // strx, mangled
    uint32_t filename = 0;     // strx
    friend bool operator==(const Function&, const Function&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Function& f) {
      return H::combine(std::move(h), f.name, f.system_name, f.filename);
    }
  };
  struct Line {
    uint32_t function = 0;
    int64_t line = 0;
    int64_t column = 0;
    friend bool operator==(const Line&, const Line&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Line& l) {
      return H::combine(std::move(h), l.function, l.line, l.column);
    }
  };
  // `address` is the file offset for user frames (so one library aggregates across
  // processes; mappings are emitted with memory_start 0 and file_offset 0, which makes
  // pprof's address-to-file-offset arithmetic the identity) and the kernel virtual address for
  // kernel frames. `lines` are innermost (inlined callee) first, as pprof's Location.line.
  struct Location {
    uint32_t mapping = 0;
    uint64_t address = 0;
    std::vector<Line> lines;
    friend bool operator==(const Location&, const Location&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Location& l) {
      return H::combine(std::move(h), l.mapping, l.address, l.lines);
    }
  };
  struct Span {
    std::string trace_id;  // 16 raw bytes
    std::string span_id;   // 8 raw bytes
    uint32_t name = 0;     // strx
    friend bool operator==(const Span&, const Span&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Span& s) {
      return H::combine(std::move(h), s.trace_id, s.span_id, s.name);
    }
  };

  Dictionary();

  uint32_t InternString(std::string_view s);
  uint32_t InternMapping(const Mapping& m) { return Intern(mappings_, mapping_index_, m); }
  uint32_t InternFunction(const Function& f) { return Intern(functions_, function_index_, f); }
  uint32_t InternLocation(Location l) { return Intern(locations_, location_index_, std::move(l)); }
  uint32_t InternSpan(Span s) { return Intern(spans_, span_index_, std::move(s)); }
  // Leaf-first location indices.
  uint32_t InternStack(std::vector<uint32_t> locations) {
    return Intern(stacks_, stack_index_, std::move(locations));
  }

  [[nodiscard]] const std::vector<std::string>& strings() const { return strings_; }
  [[nodiscard]] const std::vector<Mapping>& mappings() const { return mappings_; }
  [[nodiscard]] const std::vector<Function>& functions() const { return functions_; }
  [[nodiscard]] const std::vector<Location>& locations() const { return locations_; }
  [[nodiscard]] const std::vector<Span>& spans() const { return spans_; }
  [[nodiscard]] const std::vector<std::vector<uint32_t>>& stacks() const { return stacks_; }
  [[nodiscard]] const std::string& str(uint32_t strx) const { return strings_[strx]; }

 private:
  template <typename T, typename Map>
  static uint32_t Intern(std::vector<T>& table, Map& index, T value) {
    auto [it, inserted] = index.try_emplace(value, static_cast<uint32_t>(table.size()));
    if (inserted) table.push_back(std::move(value));
    return it->second;
  }

  std::vector<std::string> strings_;
  absl::flat_hash_map<std::string, uint32_t> string_index_;
  std::vector<Mapping> mappings_;
  absl::flat_hash_map<Mapping, uint32_t> mapping_index_;
  std::vector<Function> functions_;
  absl::flat_hash_map<Function, uint32_t> function_index_;
  std::vector<Location> locations_;
  absl::flat_hash_map<Location, uint32_t> location_index_;
  std::vector<Span> spans_;
  absl::flat_hash_map<Span, uint32_t> span_index_;
  std::vector<std::vector<uint32_t>> stacks_;
  absl::flat_hash_map<std::vector<uint32_t>, uint32_t> stack_index_;
};

// Aggregation key of one sample row in a window.
struct SampleKey {
  uint32_t series = 0;
  uint32_t stack = 0;
  uint32_t span = 0;         // Dictionary::spans index; 0 = none
  uint32_t thread_name = 0;  // strx; 0 = none
  friend bool operator==(const SampleKey&, const SampleKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const SampleKey& k) {
    return H::combine(std::move(h), k.series, k.stack, k.span, k.thread_name);
  }
};
struct SampleValue {
  int64_t count = 0;  // samples
  int64_t nanos = 0;  // CPU nanoseconds (sum of each sample's value_ns = count x period)
};

// Extra data a series carries besides its key (resource attributes for OTLP).
struct SeriesInfo {
  SeriesKey key;
  // Process identity of the first process seen in the series (for resource attributes).
  std::string exe;
  // Batch ids already aggregated into this series (duplicates are dropped).
  absl::flat_hash_set<std::string> batch_ids;
};

// One aligned window: [start_ns, start_ns + duration_ns).
struct Window {
  int64_t start_ns = 0;
  int64_t duration_ns = 0;
  int64_t period_ns = 0;      // of the first batch seen (nominal sampling period)
  uint64_t symbol_epoch = 0;  // highest epoch seen
  Dictionary dict;
  std::vector<SeriesInfo> series;
  absl::flat_hash_map<SeriesKey, uint32_t> series_index;
  absl::flat_hash_map<SampleKey, SampleValue> samples;
  // Batch id -> (pid, series) of every process of that batch admitted to the window: which
  // input samples made which series (a sink refusing one series dead-letters only those).
  absl::flat_hash_map<std::string, std::vector<std::pair<uint32_t, uint32_t>>> batch_series;

  // The series the samples of process `pid` (of profile type `profile`) of batch `batch_id`
  // went to, or -1.
  [[nodiscard]] int64_t SeriesOfBatchPid(const std::string& batch_id, uint32_t pid,
                                         uint32_t profile = 0) const;

  // Index of the series, adding it when new (and reporting that through *added).
  uint32_t SeriesIndex(const SeriesKey& key, bool* added = nullptr);
  // Indices of the series whose service is `service` (all series when empty).
  [[nodiscard]] std::vector<uint32_t> SeriesOf(std::string_view service) const;
  // ... and whose profile type is `profile`.
  [[nodiscard]] std::vector<uint32_t> SeriesOf(std::string_view service, uint32_t profile) const;
  // Distinct (service, profile type) pairs, sorted.
  [[nodiscard]] std::vector<std::pair<std::string, uint32_t>> ServiceProfiles() const;
  // Distinct services, sorted.
  [[nodiscard]] std::vector<std::string> Services() const;
  [[nodiscard]] SampleValue Total() const;
};

struct AggregatorOptions {
  // Window length; windows are aligned to multiples of it since the Unix epoch.
  std::chrono::nanoseconds window = std::chrono::seconds(10);
  LabelPolicy labels;
  SeriesGranularity granularity = SeriesGranularity::kServiceHost;
  // Caps and cleaning of series label values (labels.h), applied to every SeriesKey field.
  LabelLimits label_limits;
  // Labels removed and paths rewritten before any sink sees them (privacy.h); removed series
  // labels merge the series they told apart.
  PrivacyPolicy privacy;
};

// What Add() did with a batch.
struct AddResult {
  // Start of every window the batch has samples in (sorted, unique).
  std::vector<int64_t> windows;
  // Samples added, and samples dropped as duplicates (batch id already in the window).
  int64_t added = 0;
  int64_t duplicates = 0;
};

class Aggregator {
 public:
  explicit Aggregator(const AggregatorOptions& options);
  ~Aggregator();
  Aggregator(const Aggregator&) = delete;
  Aggregator& operator=(const Aggregator&) = delete;

  // Called when a (window, series) pair is created, before the first sample lands in it: the
  // file sink loads what an earlier run wrote for that window (exactly-once across restarts).
  using NewSeriesHook = std::function<void(Window& window, uint32_t series)>;
  void set_new_series_hook(NewSeriesHook hook) { new_series_hook_ = std::move(hook); }

  // Aggregates a validated batch (batch::Validate()).
  AddResult Add(const v1::SampleBatch& batch);

  // Removes and returns the windows that end at or before `watermark_ns`, oldest first.
  std::vector<std::unique_ptr<Window>> TakeClosed(int64_t watermark_ns);
  // Removes and returns every window (on shutdown), oldest first.
  std::vector<std::unique_ptr<Window>> TakeAll();
  // The open window starting at `start_ns`, or nullptr.
  [[nodiscard]] Window* Find(int64_t start_ns);

  [[nodiscard]] size_t open_windows() const { return windows_.size(); }
  // Newest sample time seen (event time), 0 before the first sample.
  [[nodiscard]] int64_t max_event_time_ns() const { return max_event_ns_; }
  [[nodiscard]] const AggregatorOptions& options() const { return options_; }
  // What label sanitizing changed: counted once per (window, series) and label changed.
  [[nodiscard]] const LabelSanitizer& label_sanitizer() const { return sanitizer_; }
  // Window start of a timestamp.
  [[nodiscard]] int64_t WindowStart(int64_t timestamp_ns) const;

 private:
  struct BatchContext;
  Window& WindowAt(int64_t start_ns);
  // The series key (values sanitized); the LabelReason bits of what changed into *reasons.
  SeriesKey SeriesFor(const v1::SampleBatch& batch, const v1::Process* process, uint32_t* reasons);

  AggregatorOptions options_;
  int64_t window_ns_;
  std::map<int64_t, std::unique_ptr<Window>> windows_;
  int64_t max_event_ns_ = 0;
  NewSeriesHook new_series_hook_;
  LabelSanitizer sanitizer_;
  Privacy privacy_;
  // (cluster/node/host_pid/start_ticks) -> service name learned from spans.
  absl::flat_hash_map<std::string, std::string> learned_services_;
};

// The name an unresolved frame gets: "<mapping basename>+0x<address hex>", or "0x<address>"
// without a mapping.
std::string UnresolvedFrameName(std::string_view mapping_path, uint64_t address);

// Window start "2026-11-23T13:01:00Z"-free deterministic form used in file names:
// the start in Unix nanoseconds, zero-padded to 19 digits so names sort by time.
std::string WindowFileStem(int64_t start_ns);

}  // namespace flamestream::profile
