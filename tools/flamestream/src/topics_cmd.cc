#include "topics_cmd.h"

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <memory>

#include "flamestream/kafka/handles.h"
#include "flamestream/kafka/topics.h"

namespace flamestream::cli {
namespace {

namespace topics = kafka::topics;

struct NewTopicDeleter {
  void operator()(rd_kafka_NewTopic_t* t) const { rd_kafka_NewTopic_destroy(t); }
};
struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct ConfigResourceDeleter {
  void operator()(rd_kafka_ConfigResource_t* r) const { rd_kafka_ConfigResource_destroy(r); }
};
struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* m) const { rd_kafka_metadata_destroy(m); }
};
using NewTopic = std::unique_ptr<rd_kafka_NewTopic_t, NewTopicDeleter>;
using AdminOptions = std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter>;
using Queue = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
using Event = std::unique_ptr<rd_kafka_event_t, EventDeleter>;
using ConfigResource = std::unique_ptr<rd_kafka_ConfigResource_t, ConfigResourceDeleter>;
using Metadata = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;

Result<kafka::KafkaHandle> Connect(const TopicsOptions& o) {
  if (o.brokers.empty()) return InvalidArgument("--brokers: required");
  kafka::KafkaConf conf(rd_kafka_conf_new());
  char errstr[512];
  std::map<std::string, std::string> props = o.properties;
  props["bootstrap.servers"] = o.brokers;
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
      return InvalidArgument("-X {}={}: {}", k, v, errstr);
    }
  }
  // A producer handle is the lightest client that can run Admin API requests.
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof(errstr));
  if (rk == nullptr) return InvalidArgument("kafka client: {}", errstr);
  (void)conf.release();  // owned by rk now
  return kafka::KafkaHandle(rk);
}

Result<Event> WaitFor(rd_kafka_queue_t* q, std::chrono::milliseconds timeout, const char* what) {
  Event ev(rd_kafka_queue_poll(q, static_cast<int>(timeout.count())));
  if (!ev) return DeadlineExceeded("{}: no answer within {}ms", what, timeout.count());
  if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable("{}: {}", what, rd_kafka_event_error_string(ev.get()));
  }
  return ev;
}

struct TopicInfo {
  int partitions = 0;
  int replication = 0;
};

Result<std::map<std::string, TopicInfo>> DescribeTopics(rd_kafka_t* rk,
                                                        std::chrono::milliseconds timeout) {
  const rd_kafka_metadata_t* raw = nullptr;
  const rd_kafka_resp_err_t err =
      rd_kafka_metadata(rk, /*all_topics=*/1, nullptr, &raw, static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable("metadata: {}", rd_kafka_err2str(err));
  }
  Metadata md(raw);
  std::map<std::string, TopicInfo> out;
  for (int i = 0; i < md->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& t = md->topics[i];
    if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    TopicInfo info{.partitions = t.partition_cnt};
    if (t.partition_cnt > 0) info.replication = t.partitions[0].replica_cnt;
    out[t.topic] = info;
  }
  return out;
}

// The configs of one topic, or why the cluster would not describe them (e.g. an ACL).
struct TopicConfigs {
  std::map<std::string, std::string> values;
  std::string error;  // empty when `values` is what the cluster answered
};

// The configs (cleanup.policy, retention.ms, ...) of each topic; an error when the cluster does
// not answer DescribeConfigs (the dev broker's mock cluster does not implement it).
Result<std::map<std::string, TopicConfigs>> DescribeConfigs(
    rd_kafka_t* rk, const std::vector<std::string>& names, std::chrono::milliseconds timeout) {
  std::vector<ConfigResource> resources;
  std::vector<rd_kafka_ConfigResource_t*> raw;
  for (const std::string& n : names) {
    resources.emplace_back(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, n.c_str()));
    raw.push_back(resources.back().get());
  }
  Queue q(rd_kafka_queue_new(rk));
  AdminOptions opts(rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS));
  char errstr[256];
  rd_kafka_AdminOptions_set_request_timeout(opts.get(), static_cast<int>(timeout.count()), errstr,
                                            sizeof(errstr));
  rd_kafka_DescribeConfigs(rk, raw.data(), raw.size(), opts.get(), q.get());
  FS_ASSIGN_OR_RETURN(Event ev, WaitFor(q.get(), timeout + std::chrono::seconds(5),
                                        "DescribeConfigs"));
  const rd_kafka_DescribeConfigs_result_t* res = rd_kafka_event_DescribeConfigs_result(ev.get());
  if (res == nullptr) return InternalError("DescribeConfigs: unexpected event");
  size_t n = 0;
  const rd_kafka_ConfigResource_t** rs = rd_kafka_DescribeConfigs_result_resources(res, &n);
  std::map<std::string, TopicConfigs> out;
  for (size_t i = 0; i < n; ++i) {
    const std::string name = rd_kafka_ConfigResource_name(rs[i]);
    TopicConfigs& topic = out[name];
    const rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(rs[i]);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* msg = rd_kafka_ConfigResource_error_string(rs[i]);
      topic.error = msg != nullptr && *msg != '\0' ? msg : rd_kafka_err2str(err);
      continue;
    }
    size_t cnt = 0;
    const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(rs[i], &cnt);
    for (size_t j = 0; j < cnt; ++j) {
      const char* value = rd_kafka_ConfigEntry_value(entries[j]);
      topic.values[rd_kafka_ConfigEntry_name(entries[j])] = value != nullptr ? value : "";
    }
  }
  return out;
}

// Admin requests go to the controller; a cluster that names none (librdkafka's mock cluster,
// i.e. the dev broker) would only make them time out.
bool HasController(rd_kafka_t* rk, std::chrono::milliseconds timeout) {
  const auto wait = std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(5));
  return rd_kafka_controllerid(rk, static_cast<int>(wait.count())) >= 0;
}

}  // namespace

std::vector<TopicPlan> PlanTopics(const TopicsOptions& o) {
  const std::string retention_ms = std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(o.retention).count());
  std::vector<TopicPlan> plan;
  for (const std::string& name : topics::All()) {
    TopicPlan p{.name = name};
    if (name == topics::kProcesses) {
      // The latest record per process key is what the span router needs; compaction keeps it
      // for as long as the process may still be referenced.
      p.configs["cleanup.policy"] = "compact";
    } else {
      p.configs["cleanup.policy"] = "delete";
      p.configs["retention.ms"] = retention_ms;
    }
    plan.push_back(std::move(p));
  }
  return plan;
}

Result<std::string> CreateTopics(const TopicsOptions& o) {
  if (o.partitions < 1) return InvalidArgument("--partitions {}: expected 1 or more", o.partitions);
  if (o.replication < 1) {
    return InvalidArgument("--replication {}: expected 1 or more", o.replication);
  }
  FS_ASSIGN_OR_RETURN(kafka::KafkaHandle rk, Connect(o));
  if (!HasController(rk.get(), o.timeout)) {
    return Unavailable(
        "{} names no controller, so topics cannot be created through it (the dev broker, "
        "librdkafka's mock cluster, creates the Flamestream topics itself when it starts)",
        o.brokers);
  }
  const std::vector<TopicPlan> plan = PlanTopics(o);
  std::vector<NewTopic> owned;
  std::vector<rd_kafka_NewTopic_t*> raw;
  char errstr[512];
  for (const TopicPlan& p : plan) {
    NewTopic t(rd_kafka_NewTopic_new(p.name.c_str(), o.partitions, o.replication, errstr,
                                     sizeof(errstr)));
    if (!t) return InvalidArgument("topic {}: {}", p.name, errstr);
    for (const auto& [k, v] : p.configs) {
      if (rd_kafka_NewTopic_set_config(t.get(), k.c_str(), v.c_str()) !=
          RD_KAFKA_RESP_ERR_NO_ERROR) {
        return InvalidArgument("topic {}: config {}={} rejected", p.name, k, v);
      }
    }
    raw.push_back(t.get());
    owned.push_back(std::move(t));
  }
  Queue q(rd_kafka_queue_new(rk.get()));
  AdminOptions opts(rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS));
  rd_kafka_AdminOptions_set_operation_timeout(opts.get(), static_cast<int>(o.timeout.count()),
                                              errstr, sizeof(errstr));
  rd_kafka_AdminOptions_set_request_timeout(opts.get(), static_cast<int>(o.timeout.count()),
                                            errstr, sizeof(errstr));
  rd_kafka_CreateTopics(rk.get(), raw.data(), raw.size(), opts.get(), q.get());
  Result<Event> waited = WaitFor(q.get(), o.timeout + std::chrono::seconds(5), "CreateTopics");
  if (!waited.ok()) {
    if (waited.error().message().find("controller") != std::string::npos) {
      return Unavailable("{}; the cluster's controller does not answer Admin requests (the dev "
                         "broker, librdkafka's mock cluster, cannot create topics this way: it "
                         "creates the Flamestream topics itself when it starts)",
                         waited.error().message());
    }
    return waited.error();
  }
  Event ev = std::move(waited).value();
  const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev.get());
  if (res == nullptr) return InternalError("CreateTopics: unexpected event");
  size_t n = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &n);
  std::string report;
  std::vector<std::string> failed;
  for (size_t i = 0; i < n; ++i) {
    const std::string name = rd_kafka_topic_result_name(results[i]);
    const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      report += fmt::format("created  {} (partitions {}, replication {})\n", name, o.partitions,
                            o.replication);
    } else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      report += fmt::format("exists   {}\n", name);
    } else {
      const char* msg = rd_kafka_topic_result_error_string(results[i]);
      report += fmt::format("FAILED   {}: {}\n", name, msg != nullptr ? msg : rd_kafka_err2str(err));
      failed.push_back(name);
    }
  }
  if (!failed.empty()) {
    // The whole report, so the topics that were created or existed are not lost from view.
    report.pop_back();
    return Unavailable("could not create {} of {} topic(s):\n{}", failed.size(), n, report);
  }
  return report;
}

Result<TopicsCheck> CheckTopics(const TopicsOptions& o) {
  FS_ASSIGN_OR_RETURN(kafka::KafkaHandle rk, Connect(o));
  FS_ASSIGN_OR_RETURN(auto existing, DescribeTopics(rk.get(), o.timeout));
  const std::vector<TopicPlan> plan = PlanTopics(o);
  std::vector<std::string> names;
  for (const TopicPlan& p : plan) {
    if (existing.contains(p.name)) names.push_back(p.name);
  }
  Result<std::map<std::string, TopicConfigs>> configs =
      HasController(rk.get(), o.timeout)
          ? DescribeConfigs(rk.get(), names, o.timeout)
          : Result<std::map<std::string, TopicConfigs>>(
                Unavailable("the cluster names no controller"));

  TopicsCheck check;
  for (const TopicPlan& p : plan) {
    auto it = existing.find(p.name);
    if (it == existing.end()) {
      check.report += fmt::format("MISSING  {}\n", p.name);
      check.problems.push_back(fmt::format("{} does not exist", p.name));
      continue;
    }
    std::string line = fmt::format("{} (partitions {}, replication {}", p.name,
                                   it->second.partitions, it->second.replication);
    bool bad = false;
    if (configs.ok()) {
      const TopicConfigs& have = (*configs)[p.name];
      if (!have.error.empty()) {
        // Said, not failed, like a cluster that describes no configs at all.
        line += fmt::format(", configs not readable: {}", have.error);
      } else {
        for (const auto& [key, want] : p.configs) {
          auto h = have.values.find(key);
          const std::string value = h == have.values.end() ? "?" : h->second;
          line += fmt::format(", {} {}", key, value);
          if (value == want) continue;
          if (key == "cleanup.policy" && p.name == topics::kProcesses &&
              value.find("compact") == std::string::npos) {
            check.problems.push_back(
                fmt::format("{} is not compacted (cleanup.policy={})", p.name, value));
            bad = true;
          } else if (key == "retention.ms") {
            line += fmt::format(" (wanted {})", want);
          }
        }
      }
    }
    check.report += fmt::format("{:<9}{})\n", bad ? "BAD" : "ok", line);
  }
  if (!configs.ok()) {
    check.report += fmt::format("(topic configs not checked: {})\n", configs.error().message());
  }
  // The correlator owns partition p of both topics: the counts must match.
  const auto a = existing.find(std::string(topics::kSamplesSymbolized));
  const auto b = existing.find(std::string(topics::kSpansKeyed));
  if (a != existing.end() && b != existing.end() && a->second.partitions != b->second.partitions) {
    check.problems.push_back(fmt::format(
        "{} has {} partitions but {} has {}: the correlator needs equal counts",
        topics::kSamplesSymbolized, a->second.partitions, topics::kSpansKeyed,
        b->second.partitions));
  }
  return check;
}

}  // namespace flamestream::cli
