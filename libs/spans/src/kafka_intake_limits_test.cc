// The otlp_spans intake never retries a poison record: a record over the decode limits goes to
// otlp_spans.dlq with the reason and the next record is processed; a record whose keyed output
// is larger than a Kafka message is split (the producer's message.max.bytes refuses the whole
// batch), and a span too large for any message sends its record to the DLQ (without the
// value, itself too large for the DLQ).
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <thread>

#include "flamestream/kafka/topics.h"
#include "flamestream/spans/kafka_intake.h"
#include "flamestream/spans/kafka_writer.h"
#include "flamestream/testing/dev_broker.h"

namespace flamestream::spans {
namespace {

using opentelemetry::proto::trace::v1::Span;

otlp::ExportTraceServiceRequest Spans(const std::string& host, int n, char id, size_t name_len = 40,
                                      size_t route_len = 0) {
  otlp::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  auto* a = rs->mutable_resource()->add_attributes();
  a->set_key("host.name");
  a->mutable_value()->set_string_value(host);
  auto* ss = rs->add_scope_spans();
  for (int i = 0; i < n; ++i) {
    Span* s = ss->add_spans();
    s->set_trace_id(std::string(15, id) + static_cast<char>(i + 1));
    s->set_span_id(std::string(7, id) + static_cast<char>(i + 1));
    s->set_name(std::string(name_len, id));
    s->set_start_time_unix_nano(1);
    s->set_end_time_unix_nano(2);
    if (route_len > 0) {
      auto* kv = s->add_attributes();
      kv->set_key("http.route");
      kv->mutable_value()->set_string_value(std::string(route_len, 'r'));
    }
  }
  return req;
}

// n empty spans (refused by the span limit before the router sees them).
std::string EmptySpans(int n) {
  otlp::ExportTraceServiceRequest req;
  auto* ss = req.add_resource_spans()->add_scope_spans();
  for (int i = 0; i < n; ++i) ss->add_spans();
  return req.SerializeAsString();
}

struct Record {
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
};

// Reads `topic` from the start until `done(records)` holds or 30 s passed.
template <typename Done>
std::vector<Record> ReadUntil(const std::string& bootstrap, const std::string& topic, Done done) {
  kafka::ConsumerConfig cfg;
  cfg.properties = {{"bootstrap.servers", bootstrap}};
  cfg.group_id = "reader-" + topic;
  cfg.topics = {topic};
  auto consumer = kafka::Consumer::Create(cfg);
  EXPECT_TRUE(consumer.ok()) << consumer.error();
  std::vector<Record> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done(out) && std::chrono::steady_clock::now() < deadline) {
    auto msg = (*consumer)->Poll(std::chrono::milliseconds(200));
    if (msg.ok() && msg->has_value()) {
      Record r{std::string((*msg)->key()), std::string((*msg)->value()), {}};
      for (const auto& h : (*msg)->headers()) r.headers[h.key] = h.value;
      out.push_back(std::move(r));
    }
  }
  (*consumer)->Abandon();
  return out;
}

TEST(KafkaIntakeLimits, DeadLettersPoisonRecordsSplitsLargeOutputAndKeepsGoing) {
  auto broker = testing::DevBroker::Start({.brokers = 1, .partitions = 1});
  ASSERT_TRUE(broker.ok()) << broker.error();
  const std::string bootstrap = (*broker)->bootstrap();
  const std::string topic(kafka::topics::kOtlpSpans);

  kafka::ProducerConfig in_cfg;
  in_cfg.properties = {{"bootstrap.servers", bootstrap}};
  auto input = kafka::Producer::Create(in_cfg);
  ASSERT_TRUE(input.ok()) << input.error();
  // In order, on one partition:
  //  0: 41 empty spans, over max_spans_per_request = 40: poison, to the DLQ;
  //  1: one good span;
  //  2: 30 spans whose one keyed batch (~3 KB) exceeds the intake producer's
  //     message.max.bytes (2000): split until each part fits;
  //  3: one span that alone (a 1800-byte kept attribute) fits no message: to the DLQ, whose
  //     record would be too large too, so it goes without its value.
  ASSERT_TRUE((*input)->Produce(topic, "", EmptySpans(41), {{"origin", "test"}}).ok());
  ASSERT_TRUE((*input)->Produce(topic, "", Spans("node-a", 1, 'a').SerializeAsString()).ok());
  ASSERT_TRUE((*input)->Produce(topic, "", Spans("node-b", 30, 'b').SerializeAsString()).ok());
  ASSERT_TRUE(
      (*input)->Produce(topic, "", Spans("node-c", 1, 'c', 40, 1800).SerializeAsString()).ok());
  ASSERT_TRUE((*input)->Flush(std::chrono::seconds(10)).ok());

  kafka::ProducerConfig out_cfg;
  out_cfg.properties = {{"bootstrap.servers", bootstrap}, {"message.max.bytes", "2000"}};
  auto producer = kafka::Producer::Create(out_cfg);
  ASSERT_TRUE(producer.ok()) << producer.error();
  obs::Registry metrics;
  KafkaSpanWriter sink(**producer);
  // max_batch_bytes far above the producer's limit: the split below is Kafka's refusal's.
  SpanRouter router(
      {.default_cluster = "c1", .keep_attributes = {"http.route"}, .max_batch_bytes = 1 << 20},
      sink, metrics);
  OtlpKafkaIntakeConfig icfg;
  // The intake's own producer (its DLQ writes) has the same limit as the router's.
  icfg.properties = {{"bootstrap.servers", bootstrap}, {"message.max.bytes", "2000"}};
  icfg.commit_interval = std::chrono::milliseconds(100);
  icfg.retry_backoff = std::chrono::milliseconds(100);
  icfg.limits.max_spans = 40;
  auto intake = OtlpKafkaIntake::Create(icfg, router, metrics);
  ASSERT_TRUE(intake.ok()) << intake.error();
  Status run_status;
  std::jthread runner([&](std::stop_token st) { run_status = (*intake)->Run(st); });

  std::map<std::string, int> spans_by_key;
  size_t keyed_records = 0;
  auto count = [&](const std::vector<Record>& rs) {
    spans_by_key.clear();
    keyed_records = rs.size();
    for (const Record& r : rs) {
      v1::SpanBatch b;
      EXPECT_TRUE(b.ParseFromString(r.value));
      EXPECT_LE(r.value.size(), 2000u);
      spans_by_key[r.key] += b.spans_size();
    }
  };
  (void)ReadUntil(bootstrap, std::string(kafka::topics::kSpansKeyed),
                  [&](const std::vector<Record>& rs) {
                    count(rs);
                    return spans_by_key["c1/node-a"] == 1 && spans_by_key["c1/node-b"] == 30;
                  });
  std::vector<Record> dlq = ReadUntil(bootstrap, kafka::topics::Dlq(topic),
                                      [](const std::vector<Record>& rs) { return rs.size() >= 2; });
  runner.request_stop();
  runner.join();
  EXPECT_TRUE(run_status.ok()) << run_status;

  EXPECT_EQ(spans_by_key, (std::map<std::string, int>{{"c1/node-a", 1}, {"c1/node-b", 30}}));
  EXPECT_GE(keyed_records, 3u);  // node-a's record, and node-b's in at least two parts
  EXPECT_GE(metrics.Counter("fs_span_batches_split_total", "").value(), 1u);

  ASSERT_EQ(dlq.size(), 2u);
  EXPECT_EQ(dlq[0].value, EmptySpans(41));
  EXPECT_EQ(dlq[0].headers["origin"], "test");
  EXPECT_EQ(dlq[0].headers[std::string(kafka::kDlqHeaderError)],
            "RESOURCE_EXHAUSTED: request refused: resource_spans[0].scope_spans[0].spans[40]: "
            "more than 40 spans in one request (max_spans_per_request)");
  EXPECT_EQ(dlq[0].headers[std::string(kafka::kDlqHeaderSourceOffset)], "0");
  EXPECT_EQ(dlq[1].value, "");
  EXPECT_EQ(dlq[1].headers[std::string(kafka::kDlqHeaderSourceOffset)], "3");
  const std::string error = dlq[1].headers[std::string(kafka::kDlqHeaderError)];
  EXPECT_TRUE(
      error.starts_with("OUT_OF_RANGE: 1 spans of the record are each larger than a "
                        "Kafka message and were not written (0 others were)"))
      << error;
  EXPECT_NE(error.find("byte value is not kept"), std::string::npos) << error;

  EXPECT_EQ(metrics
                .Counter("fs_spans_refused_total", "",
                         {{"source", "kafka"}, {"reason", "too_many_spans"}})
                .value(),
            1u);
  EXPECT_EQ(metrics
                .Counter("fs_spans_refused_total", "",
                         {{"source", "kafka"}, {"reason", "too_large_for_kafka"}})
                .value(),
            1u);
  EXPECT_EQ(metrics.Counter("fs_span_intake_dlq_records_total", "").value(), 2u);
  EXPECT_EQ(router.inflight_bytes(), 0u);
}

}  // namespace
}  // namespace flamestream::spans
