// The stage loop's commit contract for handlers that finish records later (Hold/Release) or
// partly dead-letter them: an input is committed exactly when everything it led to is done.
#include "flamestream/stage/loop.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/testing/dev_broker.h"

namespace flamestream::stage {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kIn = "loop.in";

// Holds every record; releases the held ones on Tick once `release` is set. Records whose
// value starts with "half-" also go to the DLQ (the rest of them is held like the others).
class HoldingHandler final : public Handler {
 public:
  Status Record(Loop& loop, const kafka::Message& in) override {
    std::lock_guard lock(mu_);
    seen_.insert(std::string(in.value()));
    if (std::string_view(in.value()).starts_with("half-")) {
      FS_RETURN_IF_ERROR(loop.DeadLetter(in, OutOfRange("half of it is bad")));
    }
    held_.push_back(loop.Hold(in));
    return OkStatus();
  }
  void Tick(Loop& loop) override {
    if (!release_.load()) return;
    std::lock_guard lock(mu_);
    for (const InputToken& t : held_) loop.Release(t);
    held_.clear();
  }
  [[nodiscard]] bool Idle() const override {
    std::lock_guard lock(mu_);
    return held_.empty();
  }
  std::set<std::string> seen() const {
    std::lock_guard lock(mu_);
    return seen_;
  }
  std::atomic<bool> release_{false};

 private:
  mutable std::mutex mu_;
  std::vector<InputToken> held_;
  std::set<std::string> seen_;
};

// Runs the loop until it has seen `want` records (or `wait`), then stops it (a drain).
Status RunUntilSeen(const LoopConfig& cfg, HoldingHandler& h, size_t want, bool release,
                    std::chrono::seconds wait = 30s) {
  obs::Registry registry;
  std::stop_source stop;
  Status result;
  h.release_ = release;
  std::thread t([&] { result = RunLoop(cfg, {.metrics = registry, .stop = stop.get_token()}, h); });
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (h.seen().size() < want && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(500ms);  // a few ticks and commits
  stop.request_stop();
  t.join();
  return result;
}

TEST(StageLoop, HeldInputsCommitOnlyOnceReleasedAndPartialDeadLettersToo) {
  auto broker = testing::DevBroker::Start({.topics = {"loop.in:2", "loop.in.dlq:1"}});
  ASSERT_TRUE(broker.ok()) << broker.error();
  const kafka::Properties props = {{"bootstrap.servers", (*broker)->bootstrap()},
                                   {"session.timeout.ms", "6000"},
                                   {"heartbeat.interval.ms", "500"}};
  constexpr int kRecords = 40;
  {
    auto producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok());
    for (int i = 0; i < kRecords; ++i) {
      const std::string v = (i % 10 == 3 ? "half-" : "r") + std::to_string(i);
      ASSERT_TRUE((*producer)->Produce(kIn, "k" + std::to_string(i), v).ok());
    }
    ASSERT_TRUE((*producer)->Flush(10s).ok());
  }
  const LoopConfig cfg{.stage = "loop-test",
                       .group_id = "loop-test",
                       .input_topics = {std::string(kIn)},
                       .kafka = props,
                       .commit_interval = 100ms};

  // Never released: nothing is committed, so the next run reads all of it again.
  HoldingHandler first;
  ASSERT_TRUE(RunUntilSeen(cfg, first, kRecords, /*release=*/false).ok());
  EXPECT_EQ(first.seen().size(), static_cast<size_t>(kRecords));
  HoldingHandler second;
  ASSERT_TRUE(RunUntilSeen(cfg, second, kRecords, /*release=*/true).ok());
  EXPECT_EQ(second.seen().size(), static_cast<size_t>(kRecords)) << "held inputs were committed";
  // Released (and their DLQ records delivered): committed. A third run, given one new record,
  // reads only that one.
  {
    auto producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok());
    ASSERT_TRUE((*producer)->Produce(kIn, "k0", "new").ok());
    ASSERT_TRUE((*producer)->Flush(10s).ok());
  }
  HoldingHandler third;
  ASSERT_TRUE(RunUntilSeen(cfg, third, 1, /*release=*/true).ok());
  EXPECT_EQ(third.seen(), std::set<std::string>{"new"});

  // Each "half-" record went to the DLQ once per run that handled it (two runs).
  kafka::ConsumerConfig rc{
      .properties = props, .group_id = "loop-dlq-reader", .topics = {"loop.in.dlq"}};
  auto reader = kafka::Consumer::Create(rc);
  ASSERT_TRUE(reader.ok());
  size_t dlq = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (dlq < 8 && std::chrono::steady_clock::now() < deadline) {
    auto m = (*reader)->Poll(100ms);
    ASSERT_TRUE(m.ok());
    if (m->has_value()) {
      EXPECT_TRUE(std::string_view((*m)->value()).starts_with("half-"));
      ++dlq;
    }
  }
  EXPECT_EQ(dlq, 8u);
}

}  // namespace
}  // namespace flamestream::stage
