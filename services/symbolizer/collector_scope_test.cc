// CollectorScope: a /metrics scrape after the symbolizer's objects are gone must not read them
// (the registry, and the admin listener that renders it, outlive Run()).
#include "collector_scope.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

namespace flamestream::symbolizer {
namespace {

// Stands in for the Symbolizer: a component with its own running total.
struct Component {
  explicit Component(std::atomic<bool>* destroyed) : destroyed(destroyed) {}
  ~Component() { destroyed->store(true); }
  uint64_t total = 7;
  std::atomic<bool>* destroyed;
};

TEST(CollectorScope, CollectorsStopWhenTheScopeCloses) {
  obs::Registry registry;
  std::atomic<bool> destroyed{false};
  std::atomic<int> calls_after_free{0};
  {
    auto component = std::make_unique<Component>(&destroyed);
    CollectorScope scope(registry);
    scope.Add([&, c = component.get()] {
      if (destroyed.load()) {
        ++calls_after_free;  // reading *c here would be a use after free
        return;
      }
      registry.Counter("component_total", "a component's total").Follow(c->total);
    });
    EXPECT_NE(registry.Render().find("component_total 7\n"), std::string::npos)
        << registry.Render();
    // Leaving the block destroys the scope first (declared last), then the component.
  }
  ASSERT_TRUE(destroyed.load());
  const std::string text = registry.Render();  // a scrape after Run() returned
  EXPECT_EQ(calls_after_free.load(), 0);
  EXPECT_NE(text.find("component_total 7\n"), std::string::npos)
      << "the metric keeps its last value: " << text;
}

// A scrape running on the admin listener's thread while the scope closes: Close() waits for it,
// and no collector call starts after Close() returned.
TEST(CollectorScope, CloseWaitsForARunningCollector) {
  obs::Registry registry;
  std::atomic<bool> closed{false};
  std::atomic<bool> in_collector{false};
  std::atomic<int> calls{0};
  std::atomic<int> calls_after_close{0};
  auto scope = std::make_unique<CollectorScope>(registry);
  scope->Add([&] {
    in_collector.store(true);
    if (closed.load()) {
      ++calls_after_close;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (closed.load()) {
      ++calls_after_close;  // still running after Close() returned
    }
    ++calls;
  });
  std::atomic<bool> stop{false};
  std::thread scraper([&] {
    while (!stop.load()) {
      (void)registry.Render();
    }
  });
  while (!in_collector.load()) {
    std::this_thread::yield();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  scope.reset();  // Close()
  closed.store(true);
  const int calls_at_close = calls.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop.store(true);
  scraper.join();
  EXPECT_GT(calls_at_close, 0);
  EXPECT_EQ(calls.load(), calls_at_close);
  EXPECT_EQ(calls_after_close.load(), 0);
}

}  // namespace
}  // namespace flamestream::symbolizer
