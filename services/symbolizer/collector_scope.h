// Metric collectors that stop reading their objects before those objects are destroyed.
//
//   std::unique_ptr<Symbolizer> symbolizer = ...;
//   CollectorScope collectors(ctx.metrics);      // declared after what the collectors read
//   collectors.Add([&registry = ctx.metrics, s = symbolizer.get()] { ... s->stats() ... });
//   // ~CollectorScope (first, in reverse declaration order): later scrapes skip the collector
//
// obs::Registry keeps a collector until the registry itself goes, and the admin listener runs
// collectors on its own thread for every /metrics scrape, also after service::Main's run()
// returned and the objects a collector reads (the Symbolizer, the Redis cache) were freed. A
// collector added through a CollectorScope runs only while the scope is open: Close() (or the
// destructor) waits for a collector that is running right now and turns every later call into
// a no-op. Metric objects themselves live as long as the registry and stay safe to use.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <utility>

#include "flamestream/obs/metrics.h"

namespace flamestream::symbolizer {

class CollectorScope {
 public:
  explicit CollectorScope(obs::Registry& registry)
      : registry_(registry), state_(std::make_shared<State>()) {}
  ~CollectorScope() { Close(); }
  CollectorScope(const CollectorScope&) = delete;
  CollectorScope& operator=(const CollectorScope&) = delete;

  void Add(std::function<void()> collect) {
    registry_.AddCollector([state = state_, collect = std::move(collect)] {
      std::lock_guard<std::mutex> lock(state->mu);
      if (state->open) {
        collect();
      }
    });
  }

  // After Close() returns no collector of this scope runs, or is still running.
  void Close() {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->open = false;
  }

 private:
  struct State {
    std::mutex mu;
    bool open = true;
  };
  obs::Registry& registry_;
  std::shared_ptr<State> state_;  // shared with the collectors, which outlive the scope
};

}  // namespace flamestream::symbolizer
