// The correlator stage on the dev broker: symbolized batches and keyed spans in, correlated
// batches out; a clean run, a refused start on mismatched partition counts, and a crash with
// restart.
#include "correlator_stage.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/testing/dev_broker.h"
#include "flamestream/v1/samples.pb.h"
#include "flamestream/v1/spans.pb.h"

namespace flamestream::correlator {
namespace {

using namespace std::chrono_literals;
namespace v1 = ::flamestream::v1;

constexpr int64_t kMs = 1'000'000;
constexpr uint32_t kAppPid = 100;    // has spans (service "checkout")
constexpr uint32_t kOtherPid = 200;  // never has spans
// One sample far ahead in event time moves the watermark past every test sample, so results
// never depend on the idle rule (processing time; the test's event times are in the past).
constexpr uint32_t kTickPid = 300;
constexpr int64_t kTickMs = 10'000;
constexpr int kBatches = 30;         // per node, 100 ms of samples each
constexpr int64_t kStepMs = 5;       // app samples every 5 ms
constexpr int64_t kDirectMs = 2900;  // this app sample carries S4's ids itself

const std::vector<std::string> kNodes = {"node-a", "node-b", "node-c", "node-d"};

// The spans of one node (times in ms after the node's base time).
struct TestSpan {
  int index;
  std::string name;
  int64_t start_ms;
  int64_t end_ms;
  int parent;  // index, or -1
  int64_t thread_id;
};
const std::vector<TestSpan> kSpans = {
    {1, "GET /cart", 100, 1500, -1, 0},
    {2, "db.query", 400, 700, 1, 0},
    {3, "render", 1000, 1200, 1, 102},  // only thread 102's samples
    {4, "batch-job", 2000, 2500, -1, 0},
};

std::string Key(const std::string& node) { return "prod/" + node; }

std::string TraceIdBytes(int node_index, int span_index) {
  std::string id(16, '\0');
  id[0] = static_cast<char>(0x10 + node_index);
  id[15] = static_cast<char>(span_index);
  return id;
}
std::string SpanIdBytes(int node_index, int span_index) {
  std::string id(8, '\0');
  id[0] = static_cast<char>(0x20 + node_index);
  id[7] = static_cast<char>(span_index);
  return id;
}

// The span a sample must get: -1 none, else its index.
int Truth(uint32_t pid, uint32_t tid, int64_t t_ms) {
  if (pid != kAppPid) return -1;
  if (t_ms == kDirectMs) return 4;
  if (t_ms >= 400 && t_ms <= 700) return 2;
  if (t_ms >= 1000 && t_ms <= 1200 && tid == 102) return 3;
  if (t_ms >= 100 && t_ms <= 1500) return 1;
  if (t_ms >= 2000 && t_ms <= 2500) return 4;
  return -1;
}

std::string SymbolizedBatch(int node_index, int b, int64_t base_ns) {
  batch::BatchBuilder builder;
  const std::string& node = kNodes[static_cast<size_t>(node_index)];
  builder.SetHeader("prod/" + node + "/agent", static_cast<uint64_t>(b), "prod", node);
  builder.mutable_batch().set_stage(v1::STAGE_SYMBOLIZED);
  builder.mutable_batch().set_period_ns(5 * kMs);
  builder.mutable_batch().set_frequency_hz(200);
  v1::Location loc;
  loc.set_address(0x1000);
  loc.set_symbol_strx(builder.InternString("burn_cpu"));
  const uint32_t l = builder.InternLocation(loc);
  const std::vector<uint32_t> frames = {l};
  const uint32_t stack = builder.InternStack(frames);
  v1::Process app;
  app.set_host_pid(kAppPid);
  app.set_ns_pid(kAppPid);
  app.set_comm("app");
  builder.AddProcess(app);
  v1::Process other;
  other.set_host_pid(kOtherPid);
  other.set_comm("other");
  builder.AddProcess(other);
  for (int64_t ms = int64_t{b} * 100; ms < (int64_t{b} + 1) * 100; ms += kStepMs) {
    uint32_t span_index = 0;
    if (ms == kDirectMs) {
      v1::SpanRef ref;  // the agent knew the ids, not the name
      ref.set_trace_id(TraceIdBytes(node_index, 4));
      ref.set_span_id(SpanIdBytes(node_index, 4));
      span_index = builder.InternSpan(ref);
    }
    builder.AddSample({.stack_index = stack,
                       .pid = kAppPid,
                       .tid = (ms / kStepMs) % 2 == 0 ? 101u : 102u,
                       .cpu = 0,
                       .timestamp_ns = base_ns + ms * kMs,
                       .span_index = span_index});
    if (ms % 50 == 0) {
      builder.AddSample({.stack_index = stack,
                         .pid = kOtherPid,
                         .tid = kOtherPid,
                         .timestamp_ns = base_ns + ms * kMs + 1});
    }
  }
  v1::SampleBatch out = builder.Finish();
  EXPECT_TRUE(batch::Validate(out).ok());
  return out.SerializeAsString();
}

std::string TickBatch(int node_index, int64_t base_ns) {
  batch::BatchBuilder builder;
  const std::string& node = kNodes[static_cast<size_t>(node_index)];
  builder.SetHeader("prod/" + node + "/agent", 1000, "prod", node);
  builder.mutable_batch().set_stage(v1::STAGE_SYMBOLIZED);
  builder.mutable_batch().set_period_ns(5 * kMs);
  const std::vector<uint32_t> frames = {};
  builder.AddSample({.stack_index = builder.InternStack(frames),
                     .pid = kTickPid,
                     .tid = kTickPid,
                     .timestamp_ns = base_ns + kTickMs * kMs});
  return builder.Finish().SerializeAsString();
}

std::string SpanBatchFor(int node_index, int64_t base_ns) {
  v1::SpanBatch batch;
  batch.set_cluster("prod");
  batch.set_node(kNodes[static_cast<size_t>(node_index)]);
  batch.mutable_id()->set_agent_id("router-1");
  for (const TestSpan& s : kSpans) {
    v1::KeyedSpan* k = batch.add_spans();
    k->set_trace_id(TraceIdBytes(node_index, s.parent < 0 ? s.index : s.parent));
    k->set_span_id(SpanIdBytes(node_index, s.index));
    if (s.parent >= 0) k->set_parent_span_id(SpanIdBytes(node_index, s.parent));
    k->set_name(s.name);
    k->set_service_name("checkout");
    k->set_start_time_unix_ns(static_cast<uint64_t>(base_ns + s.start_ms * kMs));
    k->set_end_time_unix_ns(static_cast<uint64_t>(base_ns + s.end_ms * kMs));
    k->set_cluster("prod");
    k->set_node(kNodes[static_cast<size_t>(node_index)]);
    k->set_pid(kAppPid);
    k->set_thread_id(s.thread_id);
  }
  return batch.SerializeAsString();
}

// Fixes the direct sample's trace id: S4 is a root, so its trace id is its own.
int TraceOwner(int span) {
  for (const TestSpan& s : kSpans) {
    if (s.index == span) return s.parent < 0 ? s.index : s.parent;
  }
  return span;
}

struct Harness {
  std::unique_ptr<testing::DevBroker> broker;
  kafka::Properties props;

  void Start(testing::DevBrokerOptions options = {}) {
    auto b = testing::DevBroker::Start(std::move(options));
    ASSERT_TRUE(b.ok()) << b.error();
    broker = std::move(*b);
    // The mock cluster holds a departed member until its session times out.
    props = {{"bootstrap.servers", broker->bootstrap()},
             {"session.timeout.ms", "6000"},
             {"heartbeat.interval.ms", "500"}};
  }

  // Spans first, then the samples of every node, then the tick.
  void ProduceInput(int64_t base_ns) {
    ASSERT_NO_FATAL_FAILURE(ProduceSpans(base_ns));
    ASSERT_NO_FATAL_FAILURE(ProduceBatches(base_ns, 0, kBatches, /*tick=*/true));
  }
  void ProduceSpans(int64_t base_ns) {
    auto producer =
        kafka::Producer::Create({.properties = {{"bootstrap.servers", broker->bootstrap()}}});
    ASSERT_TRUE(producer.ok()) << producer.error();
    for (size_t n = 0; n < kNodes.size(); ++n) {
      ASSERT_TRUE((*producer)
                      ->Produce(kafka::topics::kSpansKeyed, Key(kNodes[n]),
                                SpanBatchFor(static_cast<int>(n), base_ns))
                      .ok());
    }
    ASSERT_TRUE((*producer)->Flush(10s).ok());
  }
  // Batches [from, to) of every node.
  void ProduceBatches(int64_t base_ns, int from, int to, bool tick = false,
                      const std::string& topic = std::string(kafka::topics::kSamplesSymbolized)) {
    auto producer =
        kafka::Producer::Create({.properties = {{"bootstrap.servers", broker->bootstrap()}}});
    ASSERT_TRUE(producer.ok()) << producer.error();
    for (int b = from; b < to; ++b) {
      for (size_t n = 0; n < kNodes.size(); ++n) {
        ASSERT_TRUE((*producer)
                        ->Produce(topic, Key(kNodes[n]),
                                  SymbolizedBatch(static_cast<int>(n), b, base_ns),
                                  {{"symbol-epoch", "7"}})
                        .ok());
      }
    }
    for (size_t n = 0; tick && n < kNodes.size(); ++n) {
      ASSERT_TRUE((*producer)
                      ->Produce(topic, Key(kNodes[n]), TickBatch(static_cast<int>(n), base_ns),
                                {{"symbol-epoch", "7"}})
                      .ok());
    }
    ASSERT_TRUE((*producer)->Flush(10s).ok());
  }

  StageConfig Config() const {
    StageConfig cfg;
    cfg.kafka = props;
    cfg.group = "correlator-test";
    cfg.join.allowed_lateness = 2s;
    cfg.join.idle_timeout = 60s;  // the tick releases the samples
    cfg.commit_interval = 200ms;
    return cfg;
  }
};

struct RunningStage {
  obs::Registry registry;
  std::stop_source stop;
  std::thread thread;
  Status result;
  std::atomic<bool> ready{false};
  service::Context ctx{.metrics = registry,
                       .stop = stop.get_token(),
                       .set_ready = [this](bool r) { ready = r; },
                       .set_unhealthy = [](const std::string&) {}};
  CorrelatorStage stage;

  explicit RunningStage(const StageConfig& cfg) : stage(cfg, registry) {
    thread = std::thread([this] { result = stage.Run(ctx); });
  }
  ~RunningStage() {
    if (thread.joinable()) (void)StopAndJoin();
  }
  Status StopAndJoin() {
    stop.request_stop();
    thread.join();
    return result;
  }
  Status AbandonAndJoin() {
    stage.Abandon();
    return StopAndJoin();
  }
  uint64_t Counter(const std::string& name, const obs::Labels& labels) {
    return registry.Counter(name, "", labels).value();
  }
};

// One sample of the output: node, pid, time, with what it was joined to.
struct Seen {
  int span = -1;  // test span index, -1 none
  std::string span_name;
  std::string span_service;
  std::string process_service;
  bool trace_ok = true;
};
using SampleKey = std::tuple<std::string, uint32_t, int64_t>;  // node, pid, time ns

struct Output {
  std::map<SampleKey, std::vector<Seen>> samples;
  size_t records = 0;
  std::set<std::string> epochs;
  std::set<int> stages;
};

// Reads the correlated topic from the start until `want` distinct samples were seen (or `wait`).
Output ReadCorrelated(const kafka::Properties& props, size_t want, int64_t base_ns,
                      std::chrono::seconds wait = 60s,
                      const std::string& topic = std::string(kafka::topics::kSamplesCorrelated)) {
  kafka::ConsumerConfig cfg;
  cfg.properties = {{"bootstrap.servers", props.at("bootstrap.servers")}};
  cfg.group_id =
      "reader-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  cfg.topics = {topic};
  auto consumer = kafka::Consumer::Create(cfg);
  EXPECT_TRUE(consumer.ok());
  Output out;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  auto quiet_until = std::chrono::steady_clock::time_point::max();
  while (std::chrono::steady_clock::now() < deadline &&
         std::chrono::steady_clock::now() < quiet_until) {
    auto m = (*consumer)->Poll(100ms);
    if (!m.ok() || !m->has_value()) continue;
    {
      v1::SampleBatch peek;
      if (peek.ParseFromArray((*m)->value().data(), static_cast<int>((*m)->value().size())) &&
          peek.id().sequence() == 1000) {
        continue;  // the tick
      }
    }
    ++out.records;
    if (auto e = (*m)->header("symbol-epoch")) out.epochs.insert(std::string(*e));
    v1::SampleBatch b;
    EXPECT_TRUE(b.ParseFromArray((*m)->value().data(), static_cast<int>((*m)->value().size())));
    EXPECT_TRUE(batch::Validate(b).ok()) << batch::Validate(b);
    out.stages.insert(b.stage());
    const std::string node = b.node();
    EXPECT_EQ(std::string((*m)->key()), Key(node));
    std::map<uint32_t, std::string> services;
    for (const v1::Process& p : b.processes()) services[p.host_pid()] = p.service_name();
    int node_index = -1;
    for (size_t n = 0; n < kNodes.size(); ++n) {
      if (kNodes[n] == node) node_index = static_cast<int>(n);
    }
    for (const batch::SampleRow& row : batch::DecodeSamples(b)) {
      Seen s;
      s.process_service = services[row.pid];
      if (const v1::SpanRef* ref = batch::SpanOf(b, row.span_index)) {
        for (const TestSpan& ts : kSpans) {
          if (ref->span_id() == SpanIdBytes(node_index, ts.index)) s.span = ts.index;
        }
        if (s.span < 0) s.span = 99;  // unknown id
        s.span_name = ref->name();
        s.span_service = ref->service_name();
        s.trace_ok = ref->trace_id() == TraceIdBytes(node_index, TraceOwner(s.span));
      }
      out.samples[{node, row.pid, row.timestamp_ns}].push_back(s);
    }
    if (out.samples.size() >= want && quiet_until == std::chrono::steady_clock::time_point::max()) {
      // Everything is there; linger briefly so duplicates would show up too.
      quiet_until = std::chrono::steady_clock::now() + 2s;
    }
  }
  (void)base_ns;
  return out;
}

size_t ExpectedSamples() {
  const size_t app = static_cast<size_t>(kBatches) * 100 / kStepMs;
  const size_t other = static_cast<size_t>(kBatches) * 2;
  return (app + other) * kNodes.size();
}

// Every distinct sample is checked against the truth; returns the number of duplicates.
size_t CheckMatches(const Output& out, int64_t base_ns) {
  size_t duplicates = 0;
  for (const auto& [key, seen] : out.samples) {
    const auto& [node, pid, t] = key;
    const int64_t rel = t - base_ns;
    const int64_t t_ms = rel / kMs;
    const uint32_t tid = pid == kAppPid ? ((t_ms / kStepMs) % 2 == 0 ? 101u : 102u) : pid;
    const int want = Truth(pid, tid, t_ms);
    duplicates += seen.size() - 1;
    for (const Seen& s : seen) {
      SCOPED_TRACE(::testing::Message() << node << " pid " << pid << " t " << t_ms << "ms");
      EXPECT_EQ(s.span, want);
      if (want >= 0) {
        EXPECT_EQ(s.span_name, kSpans[static_cast<size_t>(want - 1)].name);
        EXPECT_EQ(s.span_service, "checkout");
        EXPECT_TRUE(s.trace_ok);
      } else {
        EXPECT_EQ(s.span_name, "");
      }
      // The learned service applies to the whole process, inside spans or not.
      EXPECT_EQ(s.process_service, pid == kAppPid ? "checkout" : "");
    }
  }
  return duplicates;
}

int64_t BaseNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
             .count() -
         int64_t{120'000} * kMs;
}

TEST(CorrelatorStage, JoinsEverySampleOnceWithItsInnermostSpan) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.Start());
  const int64_t base = BaseNs();
  ASSERT_NO_FATAL_FAILURE(h.ProduceInput(base));

  RunningStage stage(h.Config());
  Output out = ReadCorrelated(h.props, ExpectedSamples(), base);
  ASSERT_TRUE(stage.StopAndJoin().ok()) << stage.result;

  EXPECT_EQ(out.samples.size(), ExpectedSamples());
  EXPECT_EQ(out.records, static_cast<size_t>(kBatches) * kNodes.size());
  EXPECT_EQ(CheckMatches(out, base), 0u) << "a clean run emits every sample exactly once";
  EXPECT_EQ(out.epochs, std::set<std::string>{"7"});
  EXPECT_EQ(out.stages, std::set<int>{v1::STAGE_CORRELATED});

  // Metrics: matched / direct / unmatched add up to every sample.
  const uint64_t matched = stage.Counter("fs_correlator_samples_total",
                                         {{"result", "matched"}, {"stage", "correlator"}});
  const uint64_t direct =
      stage.Counter("fs_correlator_samples_total", {{"result", "direct"}, {"stage", "correlator"}});
  const uint64_t unmatched = stage.Counter("fs_correlator_samples_total",
                                           {{"result", "unmatched"}, {"stage", "correlator"}});
  EXPECT_EQ(direct, kNodes.size());
  EXPECT_EQ(matched + direct + unmatched, ExpectedSamples() + kNodes.size());  // + ticks
  size_t in_spans = 0;
  for (const auto& [key, seen] : out.samples) in_spans += seen[0].span >= 0 ? 1 : 0;
  EXPECT_EQ(matched + direct, in_spans);
  EXPECT_EQ(stage.Counter("fs_records_out_total", {{"stage", "correlator"}}),
            static_cast<uint64_t>(kBatches + 1) * kNodes.size());  // + the ticks, on drain
}

// No tick: once the stage has read everything (caught up on both topics), the idle rule moves
// the watermark with processing time and releases every sample without a stop. (Input pending
// turns the rule off; this shows "caught up" is recognised.)
TEST(CorrelatorStage, CaughtUpIdlePartitionsReleaseTheirSamples) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.Start());
  const int64_t base = BaseNs();
  ASSERT_NO_FATAL_FAILURE(h.ProduceSpans(base));
  ASSERT_NO_FATAL_FAILURE(h.ProduceBatches(base, 0, kBatches, /*tick=*/false));
  StageConfig cfg = h.Config();
  cfg.join.idle_timeout = 1s;
  RunningStage stage(cfg);
  // ~10 s alone; a loaded 2-core machine (ctest -j2 beside the BPF tests) took over 60 s once.
  Output out = ReadCorrelated(h.props, ExpectedSamples(), base, 180s);
  EXPECT_EQ(stage.Counter("fs_records_out_total", {{"stage", "correlator"}}),
            static_cast<uint64_t>(kBatches) * kNodes.size())
      << "written before the stop";
  ASSERT_TRUE(stage.StopAndJoin().ok()) << stage.result;
  EXPECT_EQ(out.samples.size(), ExpectedSamples());
  EXPECT_EQ(CheckMatches(out, base), 0u);
}

TEST(CorrelatorStage, RefusesToStartWhenPartitionCountsDiffer) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.Start({.brokers = 1, .topics = {"mm.samples:4", "mm.spans:2"}}));
  StageConfig cfg = h.Config();
  cfg.samples_topic = "mm.samples";
  cfg.spans_topic = "mm.spans";
  RunningStage stage(cfg);
  stage.thread.join();
  ASSERT_FALSE(stage.result.ok());
  EXPECT_EQ(stage.result.code(), StatusCode::kFailedPrecondition);
  const std::string msg = stage.result.ToString();
  EXPECT_NE(msg.find("mm.samples has 4 partitions"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mm.spans has 2"), std::string::npos) << msg;
  EXPECT_FALSE(stage.ready.load());
}

TEST(CorrelatorStage, CrashAndRestartEmitsEverySampleWithTheSameMatch) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.Start());
  const int64_t base = BaseNs();
  ASSERT_NO_FATAL_FAILURE(h.ProduceSpans(base));
  // Batches 0-24: the watermark (2.5 s - 2 s lateness) releases the first 0.5 s only.
  ASSERT_NO_FATAL_FAILURE(h.ProduceBatches(base, 0, 25));
  StageConfig cfg = h.Config();
  {
    RunningStage first(cfg);
    // Let it emit (and commit) some, then crash it while the rest is held: no flush, no
    // commit, no leave.
    Output partial = ReadCorrelated(h.props, 1, base, 30s);
    ASSERT_GE(partial.samples.size(), 1u);
    ASSERT_LT(partial.samples.size(), ExpectedSamples() / 2);
    std::this_thread::sleep_for(500ms);
    ASSERT_TRUE(first.AbandonAndJoin().ok()) << first.result;
  }
  // The rest arrives while no correlator runs. The held samples (most of S1..S4) are re-read
  // after the restart; their matches need the span state rebuilt from the keyed topic.
  ASSERT_NO_FATAL_FAILURE(h.ProduceBatches(base, 25, kBatches, /*tick=*/true));
  {
    RunningStage second(cfg);
    Output out = ReadCorrelated(h.props, ExpectedSamples(), base, 90s);
    ASSERT_TRUE(second.StopAndJoin().ok()) << second.result;
    EXPECT_EQ(out.samples.size(), ExpectedSamples()) << "every sample at least once";
    const size_t duplicates = CheckMatches(out, base);  // matches unchanged across the crash
    std::cout << "duplicates after restart: " << duplicates << "\n";
    // The rebuilt span state came from the keyed topic.
    EXPECT_GT(second.Counter("fs_correlator_spans_total",
                             {{"kind", "replayed"}, {"stage", "correlator"}}),
              0u);
    // The samples held at the crash were joined by the second run, against rebuilt spans.
    EXPECT_GT(second.Counter("fs_correlator_samples_total",
                             {{"result", "matched"}, {"stage", "correlator"}}),
              0u);
  }
}

// One app sample per time, in one batch of node `node_index`.
std::string BatchAt(int node_index, uint64_t seq, const std::vector<int64_t>& times_ns) {
  batch::BatchBuilder builder;
  const std::string& node = kNodes[static_cast<size_t>(node_index)];
  builder.SetHeader("prod/" + node + "/agent", seq, "prod", node);
  builder.mutable_batch().set_stage(v1::STAGE_SYMBOLIZED);
  builder.mutable_batch().set_period_ns(5 * kMs);
  const std::vector<uint32_t> frames = {};
  const uint32_t stack = builder.InternStack(frames);
  for (int64_t t : times_ns) {
    builder.AddSample({.stack_index = stack, .pid = kAppPid, .tid = kAppPid, .timestamp_ns = t});
  }
  return builder.Finish().SerializeAsString();
}

// A restart re-reads the keyed spans from about one lateness window before the committed
// position, not from the start of the topic. 100 span records, one span each, 1 s apart; the
// first run joins samples up to 102 s (watermark 100 s, lateness 2 s: spans ending before
// 98 s are no longer needed), commits and stops. The second run in the same group re-reads
// only the records of spans ending at or after 98 s (s98, s99). Without span commits (the
// second row, as in replay mode) it re-reads all 100.
TEST(CorrelatorStage, RestartRereadsSpansFromTheCommittedPositionNotTheBeginning) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.Start());
  const int64_t base = BaseNs();
  constexpr int kRecords = 100;
  {
    auto producer =
        kafka::Producer::Create({.properties = {{"bootstrap.servers", h.broker->bootstrap()}}});
    ASSERT_TRUE(producer.ok()) << producer.error();
    for (int i = 0; i < kRecords; ++i) {
      v1::SpanBatch b;
      b.set_cluster("prod");
      b.set_node(kNodes[0]);
      v1::KeyedSpan* k = b.add_spans();
      k->set_trace_id(TraceIdBytes(0, 1));
      k->mutable_trace_id()->at(14) = static_cast<char>(i);
      k->set_span_id(SpanIdBytes(0, 1));
      k->mutable_span_id()->at(6) = static_cast<char>(i);
      k->set_name("s" + std::to_string(i));
      k->set_start_time_unix_ns(static_cast<uint64_t>(base + int64_t{i} * 1000 * kMs));
      k->set_end_time_unix_ns(static_cast<uint64_t>(base + int64_t{i} * 1000 * kMs + 500 * kMs));
      k->set_cluster("prod");
      k->set_node(kNodes[0]);
      k->set_pid(kAppPid);
      ASSERT_TRUE((*producer)
                      ->Produce(kafka::topics::kSpansKeyed, Key(kNodes[0]), b.SerializeAsString())
                      .ok());
    }
    for (int i = 0; i <= kRecords; ++i) {
      // Inside span i; the last (102 s, no span) is the tick that moves the watermark to 100 s.
      const int64_t t =
          i < kRecords ? base + int64_t{i} * 1000 * kMs + 200 * kMs : base + 102'000 * kMs;
      ASSERT_TRUE((*producer)
                      ->Produce(kafka::topics::kSamplesSymbolized, Key(kNodes[0]),
                                BatchAt(0, static_cast<uint64_t>(i), {t}))
                      .ok());
    }
    ASSERT_TRUE((*producer)->Flush(10s).ok());
  }
  struct Case {
    const char* name;
    bool commit_span_offsets;
    uint64_t min_reread;
    uint64_t max_reread;
  };
  const std::vector<Case> cases = {
      {"span offsets committed", true, 2, 2},
      {"span offsets not committed", false, kRecords, kRecords},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    StageConfig cfg = h.Config();
    cfg.group = std::string("restart-reread-") + (c.commit_span_offsets ? "on" : "off");
    cfg.commit_span_offsets = c.commit_span_offsets;
    {
      RunningStage first(cfg);
      const auto deadline = std::chrono::steady_clock::now() + 60s;
      // Both counters: they are exported one after the other, so seeing one complete does
      // not mean the other already is.
      while (std::chrono::steady_clock::now() < deadline &&
             (first.Counter("fs_correlator_samples_total",
                            {{"result", "matched"}, {"stage", "correlator"}}) < kRecords ||
              first.Counter("fs_correlator_spans_total",
                            {{"kind", "replayed"}, {"stage", "correlator"}}) < kRecords)) {
        std::this_thread::sleep_for(100ms);
      }
      ASSERT_EQ(first.Counter("fs_correlator_samples_total",
                              {{"result", "matched"}, {"stage", "correlator"}}),
                static_cast<uint64_t>(kRecords));
      EXPECT_EQ(first.Counter("fs_correlator_spans_total",
                              {{"kind", "replayed"}, {"stage", "correlator"}}),
                static_cast<uint64_t>(kRecords));  // the first start reads them all
      std::this_thread::sleep_for(500ms);          // a periodic commit
      ASSERT_TRUE(first.StopAndJoin().ok()) << first.result;
    }
    RunningStage second(cfg);
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline &&
           second.Counter("fs_correlator_spans_total",
                          {{"kind", "replayed"}, {"stage", "correlator"}}) < c.min_reread) {
      std::this_thread::sleep_for(100ms);
    }
    std::this_thread::sleep_for(2s);  // anything more would be read by now
    ASSERT_TRUE(second.StopAndJoin().ok()) << second.result;
    const uint64_t reread = second.Counter("fs_correlator_spans_total",
                                           {{"kind", "replayed"}, {"stage", "correlator"}});
    std::cout << c.name << ": spans re-read after restart: " << reread << " of " << kRecords
              << "\n";
    EXPECT_GE(reread, c.min_reread);
    EXPECT_LE(reread, c.max_reread);
    EXPECT_EQ(
        second.Counter("fs_correlator_spans_total", {{"kind", "in"}, {"stage", "correlator"}}), 0u);
    // Nothing of the samples topic was read again: all of it was committed.
    EXPECT_EQ(second.Counter("fs_records_in_total", {{"stage", "correlator"}}), reread);
  }
}

TEST(CorrelatorStage, ReplayModeUsesReplayTopicsPassesTheEpochAndStopsWhenCaughtUp) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(h.Start());
  const int64_t base = BaseNs();
  ASSERT_NO_FATAL_FAILURE(h.ProduceSpans(base));
  ASSERT_NO_FATAL_FAILURE(h.ProduceBatches(
      base, 0, kBatches, /*tick=*/true, kafka::topics::Replay(kafka::topics::kSamplesSymbolized)));
  StageConfig cfg = h.Config();
  ApplyReplayMode(cfg);
  EXPECT_EQ(cfg.group, "correlator-test-replay");
  EXPECT_EQ(cfg.samples_topic, "flamestream.samples.symbolized.v1.replay");
  EXPECT_EQ(cfg.output_topic, "flamestream.samples.correlated.v1.replay");
  EXPECT_EQ(cfg.spans_topic, "flamestream.spans.keyed.v1");
  RunningStage stage(cfg);
  // It returns by itself once caught up.
  const auto deadline = std::chrono::steady_clock::now() + 90s;
  while (stage.thread.joinable() && std::chrono::steady_clock::now() < deadline &&
         stage.registry.Counter("fs_records_out_total", "", {{"stage", "correlator"}}).value() <
             static_cast<uint64_t>(kBatches + 1) * kNodes.size()) {
    std::this_thread::sleep_for(100ms);
  }
  stage.thread.join();
  ASSERT_TRUE(stage.result.ok()) << stage.result;
  Output out = ReadCorrelated(h.props, ExpectedSamples(), base, 30s,
                              kafka::topics::Replay(kafka::topics::kSamplesCorrelated));
  EXPECT_EQ(out.samples.size(), ExpectedSamples());
  EXPECT_EQ(CheckMatches(out, base), 0u);
  EXPECT_EQ(out.epochs, std::set<std::string>{"7"});
  // Nothing went to the live topic.
  Output live = ReadCorrelated(h.props, 1, base, 3s);
  EXPECT_EQ(live.records, 0u);
}

}  // namespace
}  // namespace flamestream::correlator
