// Prometheus metrics: a registry owned by the service, handed to every component.
//
//   obs::Registry registry;
//   obs::Counter& in = registry.Counter("fs_records_in_total", "records consumed",
//                                       {{"stage", "symbolizer"}});
//   in.Inc();
//   registry.Gauge("fs_consumer_lag", "records behind", {{"partition", "3"}}).Set(42);
//   registry.Histogram("fs_processing_seconds", "batch latency", obs::kLatencyBuckets).Observe(0.01);
//   std::string text = registry.Render();   // text exposition format 0.0.4, for /metrics
//
// Metric objects live as long as the registry and are safe to update from any thread; asking
// twice for the same name and labels returns the same object. Collectors run before each
// Render() to refresh values that are cheaper to read on demand (consumer lag, BPF stats).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace flamestream::obs {

using Labels = std::vector<std::pair<std::string, std::string>>;

inline const std::vector<double> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                    0.05,   0.1,   0.25,   0.5,   1,    2.5,
                                                    5,      10,    30};

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  // For a component that keeps its own running total (read by a collector before Render):
  // the counter takes that total. A total never shrinks, so a smaller value is ignored.
  void Follow(uint64_t total) {
    uint64_t cur = value_.load(std::memory_order_relaxed);
    while (cur < total && !value_.compare_exchange_weak(cur, total, std::memory_order_relaxed)) {
    }
  }
  [[nodiscard]] uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Exporting counters: code that counts an event calls Counter::Inc. A component that keeps its
// own running totals (a library's Stats) is exported from a collector or a periodic tick with
// Follow (one total per counter) or, when several totals feed one counter (per-partition
// engines, a total that restarts with its component), with AddGrowth: the counter grows by what
// `total` grew since `seen`, and `seen` becomes `total`.
inline void AddGrowth(Counter& counter, uint64_t total, uint64_t& seen) {
  if (total > seen) counter.Inc(total - seen);
  seen = total;
}

// One total mirrored into one counter with AddGrowth.
class TotalMirror {
 public:
  explicit TotalMirror(Counter& counter) : counter_(counter) {}
  void Update(uint64_t total) { AddGrowth(counter_, total, seen_); }

 private:
  Counter& counter_;
  uint64_t seen_ = 0;
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d);
  [[nodiscard]] double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  [[nodiscard]] const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative count per bound, then +Inf; sum and count.
  [[nodiscard]] std::vector<uint64_t> Cumulative() const;
  [[nodiscard]] double sum() const { return sum_.load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // one per bound plus +Inf
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

class Registry {
 public:
  obs::Counter& Counter(const std::string& name, const std::string& help, const Labels& labels = {});
  obs::Gauge& Gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  obs::Histogram& Histogram(const std::string& name, const std::string& help,
                            const std::vector<double>& bounds, const Labels& labels = {});
  // Runs before every Render(), e.g. to set lag gauges.
  void AddCollector(std::function<void()> collect);
  [[nodiscard]] std::string Render() const;

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Family {
    Kind kind;
    std::string help;
    std::map<Labels, std::unique_ptr<obs::Counter>> counters;
    std::map<Labels, std::unique_ptr<obs::Gauge>> gauges;
    std::map<Labels, std::unique_ptr<obs::Histogram>> histograms;
  };
  Family& FamilyFor(const std::string& name, Kind kind, const std::string& help);

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
  std::vector<std::function<void()>> collectors_;
};

// The standard metrics of a Kafka stage, so every stage names them the same way.
struct StageMetrics {
  StageMetrics(Registry& registry, const std::string& stage);
  obs::Counter& records_in;
  obs::Counter& bytes_in;
  obs::Counter& records_out;
  obs::Counter& bytes_out;
  obs::Counter& dlq_records;
  obs::Histogram& processing_seconds;
  // Errors by kind ("decode", "produce", "commit", ...).
  obs::Counter& Errors(const std::string& kind);
  // Consumer lag in records for one partition.
  obs::Gauge& Lag(const std::string& topic, int32_t partition);
  // Input records the broker deleted before this stage read them (retention; offset reset).
  obs::Counter& Skipped(const std::string& topic);

 private:
  Registry& registry_;
  std::string stage_;
};

}  // namespace flamestream::obs
