#include "flamestream/stage/map_stage.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "flamestream/common/strings.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/testing/dev_broker.h"

namespace flamestream::stage {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kIn = "stage.in";
constexpr std::string_view kOut = "stage.out";

// Reads `topic` from the beginning until `want` records arrived (or 30 s passed).
std::vector<std::pair<std::string, kafka::Headers>> ReadAll(const std::string& bootstrap,
                                                            std::string_view topic, size_t want,
                                                            std::chrono::seconds wait = 30s) {
  kafka::ConsumerConfig cfg;
  cfg.properties = {{"bootstrap.servers", bootstrap}};
  cfg.group_id = "reader-" + std::string(topic) + std::to_string(std::rand());
  cfg.topics = {std::string(topic)};
  auto consumer = kafka::Consumer::Create(cfg);
  EXPECT_TRUE(consumer.ok());
  std::vector<std::pair<std::string, kafka::Headers>> out;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
    auto m = (*consumer)->Poll(100ms);
    if (m.ok() && m->has_value()) {
      out.emplace_back(std::string((*m)->value()), (*m)->headers());
    }
  }
  return out;
}

struct RunningStage {
  obs::Registry registry;
  std::stop_source stop;
  std::thread thread;
  Status result;
  std::atomic<bool> ready{false};  // partitions were assigned
  service::Context ctx{.metrics = registry,
                       .stop = stop.get_token(),
                       .set_ready = [this](bool r) { ready.store(r); },
                       .set_unhealthy = [](const std::string&) {}};

  RunningStage(const MapStageConfig& cfg, const Transform& t) {
    thread = std::thread([this, cfg, t] { result = RunMapStage(cfg, ctx, t); });
  }
  ~RunningStage() {
    if (thread.joinable()) (void)StopAndJoin();
  }
  Status StopAndJoin() {
    stop.request_stop();
    thread.join();
    return result;
  }
};

// The stage's topics on a dev broker, and client properties for it. The mock cluster keeps a
// departed member until its session times out, so a restart rejoins faster with a short session.
kafka::Properties StageProperties(const testing::DevBroker& broker) {
  return {{"bootstrap.servers", broker.bootstrap()},
          {"session.timeout.ms", "6000"},
          {"heartbeat.interval.ms", "500"}};
}
Result<std::unique_ptr<testing::DevBroker>> StartStageBroker() {
  return testing::DevBroker::Start({.topics = {"stage.in:4", "stage.out:4", "stage.in.dlq:1"}});
}

TEST(MapStage, MapsEveryRecordOnceSendsPoisonToDlqAndCommitsOnDrain) {
  auto broker = StartStageBroker();
  ASSERT_TRUE(broker.ok()) << broker.error();
  const std::string bootstrap = (*broker)->bootstrap();
  const kafka::Properties props = StageProperties(**broker);

  constexpr int kRecords = 300;
  {
    auto producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok());
    for (int i = 0; i < kRecords; ++i) {
      const std::string value =
          (i % 50 == 7) ? "poison-" + std::to_string(i) : "r" + std::to_string(i);
      ASSERT_TRUE((*producer)->Produce(kIn, "key" + std::to_string(i % 13), value).ok());
    }
    ASSERT_TRUE((*producer)->Flush(10s).ok());
  }

  MapStageConfig cfg;
  cfg.stage = "test";
  cfg.group_id = "stage-test";
  cfg.input_topics = {std::string(kIn)};
  cfg.kafka = props;
  cfg.commit_interval = 200ms;
  std::atomic<int> calls{0};
  Transform upper = [&](const kafka::Message& m) -> Result<std::vector<Output>> {
    ++calls;
    std::string v(m.value());
    if (v.rfind("poison", 0) == 0) {
      return DataLoss("cannot decode {}", v);
    }
    for (char& c : v) c = static_cast<char>(std::toupper(c));
    return std::vector<Output>{{.topic = std::string(kOut),
                                .key = std::string(m.key()),
                                .value = v,
                                .headers = {{"symbol-epoch", "1"}}}};
  };
  {
    RunningStage stage(cfg, upper);
    const int kPoison = kRecords / 50;
    auto outputs = ReadAll(bootstrap, kOut, kRecords - kPoison);
    ASSERT_TRUE(stage.StopAndJoin().ok()) << stage.result;
    ASSERT_EQ(outputs.size(), static_cast<size_t>(kRecords - kPoison));
    std::set<std::string> values;
    for (const auto& [v, h] : outputs) {
      values.insert(v);
      ASSERT_EQ(h.size(), 1u);
      EXPECT_EQ(h[0], (kafka::Header{"symbol-epoch", "1"}));
    }
    EXPECT_EQ(values.size(), outputs.size());  // no duplicates in a clean run
    EXPECT_TRUE(values.count("R0"));
    EXPECT_TRUE(values.count("R299"));

    auto dlq = ReadAll(bootstrap, "stage.in.dlq", kPoison);
    ASSERT_EQ(dlq.size(), static_cast<size_t>(kPoison));
    std::map<std::string, std::string> headers;
    for (const kafka::Header& h : dlq[0].second) headers[h.key] = h.value;
    EXPECT_EQ(headers["stage"], "test");
    EXPECT_EQ(headers["source.topic"], kIn);
    EXPECT_NE(headers["error"].find("DATA_LOSS: cannot decode poison-"), std::string::npos);
    EXPECT_TRUE(headers.count("source.partition"));
    EXPECT_TRUE(headers.count("source.offset"));
    EXPECT_EQ(stage.registry.Counter("fs_dlq_records_total", "", {{"stage", "test"}}).value(),
              static_cast<uint64_t>(kPoison));
    EXPECT_EQ(stage.registry.Counter("fs_records_in_total", "", {{"stage", "test"}}).value(),
              static_cast<uint64_t>(kRecords));
  }
  EXPECT_EQ(calls.load(), kRecords);

  // A restart of the same group resumes after the committed offsets: one new record is
  // mapped, none of the old ones again.
  {
    RunningStage again(cfg, upper);
    auto producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok());
    ASSERT_TRUE((*producer)->Produce(kIn, "late", "after-restart").ok());
    ASSERT_TRUE((*producer)->Flush(10s).ok());
    auto outputs = ReadAll(bootstrap, kOut, kRecords - kRecords / 50 + 1);
    ASSERT_TRUE(again.StopAndJoin().ok());
    // Partitions interleave, so look for it anywhere.
    EXPECT_TRUE(std::any_of(outputs.begin(), outputs.end(),
                            [](const auto& o) { return o.first == "AFTER-RESTART"; }));
  }
  EXPECT_EQ(calls.load(), kRecords + 1);
}

// Scaling a stage out and back in while records keep arriving: a second replica joins the
// group (partitions move to it), then the first leaves (they move back). Every input is mapped.
// A revoked partition's outputs land and its offsets are committed before it moves, so a record
// is mapped again only when the broker refused that commit -- librdkafka's mock cluster refuses
// commits for the whole rebalance (Kafka only in its sync phase) -- and then only records from
// the last moments before the rebalance.
TEST(MapStage, ScalingOutAndInWhileRecordsArriveMapsEveryRecordOnce) {
  auto broker = StartStageBroker();
  ASSERT_TRUE(broker.ok()) << broker.error();
  const std::string bootstrap = (*broker)->bootstrap();
  const kafka::Properties props = StageProperties(**broker);
  MapStageConfig cfg;
  cfg.stage = "scale";
  cfg.group_id = "stage-scale";
  cfg.input_topics = {std::string(kIn)};
  cfg.kafka = props;
  cfg.commit_interval = 100ms;
  std::mutex mu;
  std::map<std::string, int> mapped;  // input value -> times mapped, over both replicas
  Transform upper = [&](const kafka::Message& m) -> Result<std::vector<Output>> {
    std::string v(m.value());
    {
      std::lock_guard lock(mu);
      ++mapped[v];
    }
    for (char& c : v) c = static_cast<char>(std::toupper(c));
    return std::vector<Output>{
        {.topic = std::string(kOut), .key = std::string(m.key()), .value = v}};
  };

  // The first replica has its partitions before records arrive; each later step waits for the
  // replica to have done work, not only for time to pass (a loaded machine may be slow).
  const auto records_in = [](RunningStage& s) {
    return s.registry.Counter("fs_records_in_total", "", {{"stage", "scale"}}).value();
  };
  const auto wait_until = [](const auto& done) {
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (!done() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
    return done();
  };
  auto first = std::make_unique<RunningStage>(cfg, upper);
  ASSERT_TRUE(wait_until([&] { return first->ready.load(); }));

  constexpr int kRecords = 3000;
  std::atomic<int> produced{0};
  // A jthread: a failed ASSERT below returns with the writer running, and must report the
  // failure instead of aborting in ~thread.
  std::jthread writer([&] {
    auto producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok());
    for (int i = 0; i < kRecords; ++i) {
      ASSERT_TRUE(
          (*producer)->Produce(kIn, "key" + std::to_string(i % 17), "r" + std::to_string(i)).ok());
      produced.store(i + 1);
      std::this_thread::sleep_for(2ms);
    }
    ASSERT_TRUE((*producer)->Flush(10s).ok());
  });
  // Caught up: a rebalance leaves a backlog, and a replica that leaves while the other works
  // it off makes the other's uncommitted part of it be read again.
  const auto caught_up = [&] {
    std::lock_guard lock(mu);
    return mapped.size() + 20 >= static_cast<size_t>(produced.load());
  };
  // A partition left paused by a rebalance (librdkafka keeps a pause across an unassign)
  // never catches up.
  EXPECT_TRUE(wait_until(
      [&] { return produced.load() >= kRecords / 3 && records_in(*first) > 0 && caught_up(); }));
  RunningStage second(cfg, upper);
  EXPECT_TRUE(wait_until([&] {
    return produced.load() >= 2 * kRecords / 3 && records_in(second) > 0 && caught_up();
  })) << "the group did not catch up with both replicas";
  std::this_thread::sleep_for(300ms);  // a few commit intervals
  ASSERT_TRUE(first->StopAndJoin().ok()) << first->result;
  const uint64_t first_in = records_in(*first);
  const uint64_t first_errors =
      first->registry.Counter("fs_errors_total", "", {{"stage", "scale"}, {"kind", "commit"}})
          .value();
  first.reset();
  writer.join();

  // Wait until every input was mapped (duplicates make the output longer than the input).
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mu);
      if (mapped.size() == static_cast<size_t>(kRecords)) break;
    }
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(second.StopAndJoin().ok()) << second.result;
  const uint64_t second_in = records_in(second);
  const uint64_t refused_commits =
      first_errors +
      second.registry.Counter("fs_errors_total", "", {{"stage", "scale"}, {"kind", "commit"}})
          .value();
  // Each of the two rebalances can make a replica read again what it handled since its last
  // accepted commit: a record is mapped at most three times.
  size_t extra = 0;  // mappings beyond the first
  for (const auto& [v, n] : mapped) {
    EXPECT_LE(n, 3) << v;
    extra += static_cast<size_t>(n - 1);
  }
  // Both replicas did part of the work, and together all of it: no record lost.
  EXPECT_GT(first_in, 0u);
  EXPECT_GT(second_in, 0u);
  ASSERT_EQ(mapped.size(), static_cast<size_t>(kRecords));
  EXPECT_EQ(first_in + second_in, kRecords + extra);
  auto outputs = ReadAll(bootstrap, kOut, kRecords + extra, 60s);
  std::set<std::string> values;
  for (const auto& [v, h] : outputs) values.insert(v);
  EXPECT_EQ(outputs.size(), kRecords + extra);
  EXPECT_EQ(values.size(), static_cast<size_t>(kRecords));
  // Mapped again: what was handled since the last accepted commit (a commit refused by the
  // rebalance) or whose outputs were still unacknowledged when the partition was revoked (not
  // committable yet, so the new owner reads it again) -- at-least-once, about a heartbeat of
  // input per rebalance; never a partition read again from its start.
  EXPECT_LT(extra, static_cast<size_t>(kRecords / 3));
  std::printf("scaling: %zu of %d records mapped again, %llu commits refused\n", extra, kRecords,
              static_cast<unsigned long long>(refused_commits));
}

// Test outputs for the oversize tests: comma-separated tokens. The splitter halves the token
// list until each piece fits; a single token cannot be split.
Result<std::vector<std::string>> SplitTokens(std::string_view value, size_t max_value_bytes) {
  std::vector<std::string> tokens;
  for (std::string_view rest = value; !rest.empty();) {
    const size_t comma = rest.find(',');
    tokens.emplace_back(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  std::vector<std::string> out;
  std::function<Status(size_t, size_t)> fit = [&](size_t from, size_t to) -> Status {
    std::string joined;
    for (size_t i = from; i < to; ++i) joined += (i > from ? "," : "") + tokens[i];
    if (joined.size() <= max_value_bytes) {
      out.push_back(std::move(joined));
      return OkStatus();
    }
    if (to - from < 2) return OutOfRange("one token of {} bytes", joined.size());
    FS_RETURN_IF_ERROR(fit(from, from + (to - from) / 2));
    return fit(from + (to - from) / 2, to);
  };
  FS_RETURN_IF_ERROR(fit(0, tokens.size()));
  return out;
}

std::multiset<std::string> Tokens(const std::vector<std::pair<std::string, kafka::Headers>>& recs) {
  std::multiset<std::string> out;
  for (const auto& [v, h] : recs) {
    for (const std::string& t : common::SplitNonEmpty(v, ',')) out.insert(t);
  }
  return out;
}

std::string TokenList(const std::string& prefix, int n, size_t token_bytes = 10) {
  std::string v;
  for (int j = 0; j < n; ++j) {
    std::string t = fmt::format("{}-{}-", prefix, j);
    t.resize(std::max(token_bytes, t.size()), 'x');
    v += (j > 0 ? "," : "") + t;
  }
  return v;
}

// An output over the producer's message.max.bytes is split before it is produced; one that
// cannot be split sends its input to the DLQ with the reason; the stage never stops.
TEST(MapStage, OutputsOverTheMessageLimitAreSplitOrDeadLettered) {
  auto broker = StartStageBroker();
  ASSERT_TRUE(broker.ok()) << broker.error();
  const std::string bootstrap = (*broker)->bootstrap();
  kafka::Properties props = StageProperties(**broker);
  constexpr int kRecords = 60;
  {
    auto producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok());
    for (int i = 0; i < kRecords; ++i) {
      ASSERT_TRUE((*producer)->Produce(kIn, "k" + std::to_string(i), std::to_string(i)).ok());
    }
    ASSERT_TRUE((*producer)->Flush(10s).ok());
  }
  // Each input i becomes: i%10==3 a 40 KB list of 4,000 tokens; i%10==5 one 30 KB token
  // (cannot be split); else 5 tokens.
  std::multiset<std::string> expected;
  auto output_of = [](int i) {
    if (i % 10 == 3) return TokenList("big" + std::to_string(i), 4000);
    if (i % 10 == 5) return TokenList("huge" + std::to_string(i), 1, 30000);
    return TokenList("r" + std::to_string(i), 5);
  };
  int unsplittable = 0;
  for (int i = 0; i < kRecords; ++i) {
    if (i % 10 == 5) {
      ++unsplittable;
      continue;
    }
    for (const std::string& t : common::SplitNonEmpty(output_of(i), ',')) expected.insert(t);
  }
  props["message.max.bytes"] = "20000";
  MapStageConfig cfg;
  cfg.stage = "oversize";
  cfg.group_id = "stage-oversize";
  cfg.input_topics = {std::string(kIn)};
  cfg.kafka = props;
  cfg.commit_interval = 200ms;
  cfg.split = SplitTokens;
  Transform t = [&](const kafka::Message& m) -> Result<std::vector<Output>> {
    const int i = *common::ParseInt<int>(m.value());
    return std::vector<Output>{{.topic = std::string(kOut),
                                .key = std::string(m.key()),
                                .value = output_of(i),
                                .headers = {{"symbol-epoch", "1"}}}};
  };
  RunningStage stage(cfg, t);
  auto dlq = ReadAll(bootstrap, "stage.in.dlq", unsplittable);
  // Every token of the splittable outputs arrives exactly once, in pieces under the limit.
  std::vector<std::pair<std::string, kafka::Headers>> outputs;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (Tokens(outputs).size() < expected.size() && std::chrono::steady_clock::now() < deadline) {
    outputs = ReadAll(bootstrap, kOut, 1'000'000, 10s);
  }
  ASSERT_TRUE(stage.StopAndJoin().ok()) << stage.result;
  EXPECT_EQ(Tokens(outputs), expected);
  for (const auto& [v, h] : outputs) {
    EXPECT_LE(RecordBytes("k00", v, h), 20000u);
    EXPECT_EQ(h, (kafka::Headers{{"symbol-epoch", "1"}}));
  }
  EXPECT_GT(outputs.size(), static_cast<size_t>(kRecords - unsplittable));  // some were split
  ASSERT_EQ(dlq.size(), static_cast<size_t>(unsplittable));
  for (const auto& [v, h] : dlq) {
    std::map<std::string, std::string> headers;
    for (const kafka::Header& x : h) headers[x.key] = x.value;
    EXPECT_NE(headers["error"].find("exceeds the 20000-byte message limit"), std::string::npos)
        << headers["error"];
    EXPECT_EQ(headers["stage"], "oversize");
  }
  EXPECT_EQ(
      stage.registry.Counter("fs_errors_total", "", {{"stage", "oversize"}, {"kind", "too_large"}})
          .value(),
      static_cast<uint64_t>(unsplittable));
}

// The broker refuses records the producer thought fine (its limit is lower; here injected as
// MESSAGE_TOO_LARGE answers): the refused outputs are re-sent in halves and every token
// arrives once; the inputs are committed only after all their pieces.
TEST(MapStage, OutputsTheBrokerRefusesAsTooLargeAreResentInPieces) {
  auto broker = StartStageBroker();
  ASSERT_TRUE(broker.ok()) << broker.error();
  const std::string bootstrap = (*broker)->bootstrap();
  const kafka::Properties props = StageProperties(**broker);
  constexpr int kRecords = 20;
  {
    auto producer = kafka::Producer::Create({.properties = props});
    ASSERT_TRUE(producer.ok());
    for (int i = 0; i < kRecords; ++i) {
      ASSERT_TRUE((*producer)->Produce(kIn, "k" + std::to_string(i), std::to_string(i)).ok());
    }
    ASSERT_TRUE((*producer)->Flush(10s).ok());
  }
  std::multiset<std::string> expected;
  for (int i = 0; i < kRecords; ++i) {
    for (const std::string& t : common::SplitNonEmpty(TokenList("t" + std::to_string(i), 64), ','))
      expected.insert(t);
  }
  // The stage's first two produce requests are refused.
  ASSERT_TRUE((*broker)->Command("error Produce 2 MSG_SIZE_TOO_LARGE").ok());
  MapStageConfig cfg;
  cfg.stage = "refused";
  cfg.group_id = "stage-refused";
  cfg.input_topics = {std::string(kIn)};
  cfg.kafka = props;
  cfg.commit_interval = 200ms;
  cfg.split = SplitTokens;
  Transform t = [&](const kafka::Message& m) -> Result<std::vector<Output>> {
    return std::vector<Output>{{.topic = std::string(kOut),
                                .key = std::string(m.key()),
                                .value = TokenList("t" + std::string(m.value()), 64)}};
  };
  RunningStage stage(cfg, t);
  std::vector<std::pair<std::string, kafka::Headers>> outputs;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (Tokens(outputs).size() < expected.size() && std::chrono::steady_clock::now() < deadline) {
    outputs = ReadAll(bootstrap, kOut, 1'000'000, 10s);
  }
  ASSERT_TRUE(stage.StopAndJoin().ok()) << stage.result;
  EXPECT_EQ(Tokens(outputs), expected);
  EXPECT_GT(
      stage.registry.Counter("fs_errors_total", "", {{"stage", "refused"}, {"kind", "too_large"}})
          .value(),
      0u);
  EXPECT_EQ(stage.registry.Counter("fs_dlq_records_total", "", {{"stage", "refused"}}).value(), 0u);
  // Everything was committed: a restart of the group maps nothing again.
  std::atomic<int> again{0};
  Transform count = [&](const kafka::Message&) -> Result<std::vector<Output>> {
    ++again;
    return std::vector<Output>{};
  };
  RunningStage restarted(cfg, count);
  std::this_thread::sleep_for(4s);
  ASSERT_TRUE(restarted.StopAndJoin().ok());
  EXPECT_EQ(again.load(), 0);
}

}  // namespace
}  // namespace flamestream::stage
