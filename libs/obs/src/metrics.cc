#include "flamestream/obs/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace flamestream::obs {
namespace {

void AtomicAdd(std::atomic<double>& a, double d) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

std::string EscapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatLabels(const Labels& labels, const std::string& extra_key = "",
                         const std::string& extra_value = "") {
  if (labels.empty() && extra_key.empty()) {
    return "";
  }
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    out += fmt::format("{}{}=\"{}\"", first ? "" : ",", k, EscapeLabel(v));
    first = false;
  }
  if (!extra_key.empty()) {
    out += fmt::format("{}{}=\"{}\"", first ? "" : ",", extra_key, extra_value);
  }
  return out + "}";
}

std::string FormatValue(double v) {
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return fmt::format("{}", static_cast<int64_t>(v));
  }
  return fmt::format("{}", v);
}

}  // namespace

void Gauge::Add(double d) { AtomicAdd(value_, d); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  std::sort(bounds_.begin(), bounds_.end());
}

void Histogram::Observe(double v) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::Cumulative() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

Registry::Family& Registry::FamilyFor(const std::string& name, Kind kind,
                                      const std::string& help) {
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.kind = kind;
    it->second.help = help;
  }
  return it->second;
}

obs::Counter& Registry::Counter(const std::string& name, const std::string& help,
                                const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = FamilyFor(name, Kind::kCounter, help).counters[labels];
  if (!slot) {
    slot = std::make_unique<obs::Counter>();
  }
  return *slot;
}

obs::Gauge& Registry::Gauge(const std::string& name, const std::string& help,
                            const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = FamilyFor(name, Kind::kGauge, help).gauges[labels];
  if (!slot) {
    slot = std::make_unique<obs::Gauge>();
  }
  return *slot;
}

obs::Histogram& Registry::Histogram(const std::string& name, const std::string& help,
                                    const std::vector<double>& bounds, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = FamilyFor(name, Kind::kHistogram, help).histograms[labels];
  if (!slot) {
    slot = std::make_unique<obs::Histogram>(bounds);
  }
  return *slot;
}

void Registry::AddCollector(std::function<void()> collect) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(collect));
}

std::string Registry::Render() const {
  std::vector<std::function<void()>> collectors;
  {
    std::lock_guard lock(mu_);
    collectors = collectors_;
  }
  for (const auto& c : collectors) {
    c();
  }
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    const char* type = family.kind == Kind::kCounter  ? "counter"
                       : family.kind == Kind::kGauge ? "gauge"
                                                     : "histogram";
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, family.help, name, type);
    for (const auto& [labels, c] : family.counters) {
      out += fmt::format("{}{} {}\n", name, FormatLabels(labels), c->value());
    }
    for (const auto& [labels, g] : family.gauges) {
      out += fmt::format("{}{} {}\n", name, FormatLabels(labels), FormatValue(g->value()));
    }
    for (const auto& [labels, h] : family.histograms) {
      const std::vector<uint64_t> cum = h->Cumulative();
      for (size_t i = 0; i < h->bounds().size(); ++i) {
        out += fmt::format("{}_bucket{} {}\n", name,
                           FormatLabels(labels, "le", FormatValue(h->bounds()[i])), cum[i]);
      }
      out += fmt::format("{}_bucket{} {}\n", name, FormatLabels(labels, "le", "+Inf"),
                         cum.back());
      out += fmt::format("{}_sum{} {}\n", name, FormatLabels(labels), FormatValue(h->sum()));
      out += fmt::format("{}_count{} {}\n", name, FormatLabels(labels), h->count());
    }
  }
  return out;
}

StageMetrics::StageMetrics(Registry& registry, const std::string& stage)
    : records_in(registry.Counter("fs_records_in_total", "Input records consumed",
                                  {{"stage", stage}})),
      bytes_in(registry.Counter("fs_bytes_in_total", "Input bytes consumed", {{"stage", stage}})),
      records_out(registry.Counter("fs_records_out_total", "Output records acknowledged",
                                   {{"stage", stage}})),
      bytes_out(registry.Counter("fs_bytes_out_total", "Output bytes acknowledged",
                                 {{"stage", stage}})),
      dlq_records(registry.Counter("fs_dlq_records_total",
                                   "Undecodable input records sent to the dead-letter topic",
                                   {{"stage", stage}})),
      processing_seconds(registry.Histogram("fs_processing_seconds",
                                            "Time from consuming a record to producing its output",
                                            kLatencyBuckets, {{"stage", stage}})),
      registry_(registry),
      stage_(stage) {}

obs::Counter& StageMetrics::Errors(const std::string& kind) {
  return registry_.Counter("fs_errors_total", "Errors by kind", {{"stage", stage_}, {"kind", kind}});
}

obs::Gauge& StageMetrics::Lag(const std::string& topic, int32_t partition) {
  return registry_.Gauge("fs_consumer_lag", "Records between the committed position and the end",
                         {{"stage", stage_}, {"topic", topic}, {"partition", std::to_string(partition)}});
}

obs::Counter& StageMetrics::Skipped(const std::string& topic) {
  return registry_.Counter("fs_records_skipped_total",
                           "Input records deleted by the broker (retention) before they were read",
                           {{"stage", stage_}, {"topic", topic}});
}

}  // namespace flamestream::obs
