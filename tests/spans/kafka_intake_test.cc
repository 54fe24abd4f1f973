// The Kafka path: records shaped exactly as the OpenTelemetry Collector's Kafka exporter writes
// them (topic otlp_spans; value one ExportTraceServiceRequest in otlp_proto or otlp_json; key
// null, or the 32-char lowercase hex trace id with partition_traces_by_id) go through the
// intake and router to flamestream.spans.keyed.v1; undecodable records go to otlp_spans.dlq.
#include "flamestream/spans/kafka_intake.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <thread>

#include "flamestream/common/strings.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/spans/kafka_writer.h"
#include "flamestream/testing/dev_broker.h"

namespace flamestream::spans {
namespace {

using opentelemetry::proto::trace::v1::Span;

otlp::ExportTraceServiceRequest Request(const std::string& host, char id) {
  otlp::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  auto* a = rs->mutable_resource()->add_attributes();
  a->set_key("host.name");
  a->mutable_value()->set_string_value(host);
  Span* s = rs->add_scope_spans()->add_spans();
  s->set_trace_id(std::string(16, id));
  s->set_span_id(std::string(8, id));
  s->set_name(std::string("span-") + id);
  s->set_start_time_unix_nano(1);
  s->set_end_time_unix_nano(2);
  return req;
}

// A copy of a consumed record (librdkafka messages must not outlive their consumer).
struct Record {
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
};

// Reads `topic` from the beginning until `want` records arrived (or 30 s passed).
std::vector<Record> ReadAll(const std::string& bootstrap, const std::string& topic, size_t want) {
  kafka::ConsumerConfig cfg;
  cfg.properties = {{"bootstrap.servers", bootstrap}};
  cfg.group_id = "reader-" + topic;
  cfg.topics = {topic};
  auto consumer = kafka::Consumer::Create(cfg);
  EXPECT_TRUE(consumer.ok()) << consumer.error();
  std::vector<Record> out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
    auto msg = (*consumer)->Poll(std::chrono::milliseconds(200));
    if (msg.ok() && msg->has_value()) {
      Record r{std::string((*msg)->key()), std::string((*msg)->value()), {}};
      for (const auto& h : (*msg)->headers()) r.headers[h.key] = h.value;
      out.push_back(std::move(r));
    }
  }
  // A reader that commits nothing need not leave the group politely.
  (*consumer)->Abandon();
  return out;
}

class KafkaIntakeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(KafkaIntakeTest, RoutesCollectorRecordsAndDeadLettersGarbage) {
  const std::string encoding = GetParam();
  auto broker = testing::DevBroker::Start({.brokers = 1, .partitions = 4});
  ASSERT_TRUE(broker.ok()) << broker.error();
  const std::string bootstrap = (*broker)->bootstrap();

  kafka::ProducerConfig pcfg;
  pcfg.properties = {{"bootstrap.servers", bootstrap}, {"linger.ms", "5"}};
  auto producer = kafka::Producer::Create(pcfg);
  ASSERT_TRUE(producer.ok()) << producer.error();

  // What the Collector's exporter would write.
  auto encode = [&](const otlp::ExportTraceServiceRequest& req) -> std::string {
    if (encoding == "otlp_proto") return req.SerializeAsString();
    // pdata's JSON marshaler: lowerCamelCase, hex ids, int64 as strings.
    const auto& s = req.resource_spans(0).scope_spans(0).spans(0);
    return fmt::format(
        R"({{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"host.name","value":{{"stringValue":"{}"}}}}]}},"scopeSpans":[{{"scope":{{}},"spans":[{{"traceId":"{}","spanId":"{}","parentSpanId":"","name":"{}","kind":1,"startTimeUnixNano":"1","endTimeUnixNano":"2","status":{{}}}}]}}]}}]}})",
        req.resource_spans(0).resource().attributes(0).value().string_value(),
        common::HexEncode(s.trace_id()), common::HexEncode(s.span_id()), s.name());
  };
  const auto null_key = Request("Node-A", 'a');
  const auto keyed = Request("node-b", 'b');
  const std::string topic(kafka::topics::kOtlpSpans);
  ASSERT_TRUE((*producer)->Produce(topic, "", encode(null_key)).ok());
  ASSERT_TRUE(
      (*producer)
          ->Produce(topic,
                    common::HexEncode(keyed.resource_spans(0).scope_spans(0).spans(0).trace_id()),
                    encode(keyed))
          .ok());
  ASSERT_TRUE((*producer)->Produce(topic, "", "\x0f not a request", {{"origin", "test"}}).ok());
  ASSERT_TRUE((*producer)->Flush(std::chrono::seconds(10)).ok());

  obs::Registry metrics;
  KafkaSpanWriter sink(**producer);
  SpanRouter router({.default_cluster = "c1"}, sink, metrics);
  OtlpKafkaIntakeConfig icfg;
  icfg.properties = {{"bootstrap.servers", bootstrap}};
  icfg.encoding = encoding;
  icfg.commit_interval = std::chrono::milliseconds(100);
  auto intake = OtlpKafkaIntake::Create(icfg, router, metrics);
  ASSERT_TRUE(intake.ok()) << intake.error();
  Status run_status;
  std::jthread runner([&](std::stop_token st) { run_status = (*intake)->Run(st); });

  std::vector<Record> keyed_out = ReadAll(bootstrap, std::string(kafka::topics::kSpansKeyed), 2);
  std::vector<Record> dlq = ReadAll(bootstrap, kafka::topics::Dlq(topic), 1);
  runner.request_stop();
  runner.join();
  EXPECT_TRUE(run_status.ok()) << run_status;

  std::map<std::string, std::string> name_by_key;
  for (const auto& m : keyed_out) {
    v1::SpanBatch batch;
    ASSERT_TRUE(batch.ParseFromString(m.value));
    ASSERT_EQ(batch.spans_size(), 1);
    EXPECT_EQ(batch.spans(0).source(), v1::SPAN_SOURCE_OTLP_KAFKA);
    name_by_key[m.key] = batch.spans(0).name();
  }
  EXPECT_EQ(name_by_key,
            (std::map<std::string, std::string>{{"c1/node-a", "span-a"}, {"c1/node-b", "span-b"}}));
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].value, "\x0f not a request");
  EXPECT_EQ(dlq[0].headers["origin"], "test");
  const std::string error = dlq[0].headers[std::string(kafka::kDlqHeaderError)];
  EXPECT_TRUE(error.starts_with(
      encoding == "otlp_proto" ? "INVALID_ARGUMENT: invalid ExportTraceServiceRequest protobuf: "
                               : "INVALID_ARGUMENT: invalid OTLP/JSON: parse error"))
      << error;
  EXPECT_EQ(dlq[0].headers[std::string(kafka::kDlqHeaderSourceTopic)], topic);
  EXPECT_EQ(metrics.Counter("fs_span_intake_dlq_records_total", "").value(), 1u);

  // Everything processed was committed: a new intake in the same group reads nothing.
  auto again = OtlpKafkaIntake::Create(icfg, router, metrics);
  ASSERT_TRUE(again.ok());
  const uint64_t before = metrics.Counter("fs_span_intake_records_total", "").value();
  std::jthread second([&](std::stop_token st) { (void)(*again)->Run(st); });
  std::this_thread::sleep_for(std::chrono::seconds(5));
  second.request_stop();
  second.join();
  EXPECT_EQ(metrics.Counter("fs_span_intake_records_total", "").value(), before);
}

INSTANTIATE_TEST_SUITE_P(Encodings, KafkaIntakeTest, ::testing::Values("otlp_proto", "otlp_json"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace flamestream::spans
