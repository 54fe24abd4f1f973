#include "flamestream/kafka/admin.h"

#include <array>
#include <utility>

#include "conf.h"
#include "metadata.h"

namespace flamestream::kafka {
namespace {

// librdkafka times an Admin request out itself after the request timeout and then answers with
// that error; the queue is polled this much longer so the answer, not our own wait, says so.
constexpr std::chrono::seconds kAnswerSlack{5};

// The answer to one Admin request on `q`: DeadlineExceeded when none arrives within `timeout`,
// Unavailable with librdkafka's text when the request as a whole failed.
Result<KafkaEvent> WaitFor(rd_kafka_queue_t* q, std::chrono::milliseconds timeout,
                           const char* what) {
  KafkaEvent ev(rd_kafka_queue_poll(q, static_cast<int>(timeout.count())));
  if (!ev) {
    return DeadlineExceeded("{}: no answer within {}ms", what, timeout.count());
  }
  if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable("{}: {}", what, rd_kafka_event_error_string(ev.get()));
  }
  return ev;
}

// A per-topic error as the cluster put it (its message, else librdkafka's text for the code).
Status TopicStatus(rd_kafka_resp_err_t err, const char* message) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    return OkStatus();
  }
  std::string reason = message != nullptr && *message != '\0' ? message : rd_kafka_err2str(err);
  const StatusCode code = err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS ? StatusCode::kAlreadyExists
                                                                        : internal::ErrCode(err);
  return Status(code, std::move(reason));
}

Status SetRequestTimeout(rd_kafka_AdminOptions_t* opts, std::chrono::milliseconds timeout,
                         bool operation_too) {
  std::array<char, 256> err{};
  const int ms = static_cast<int>(timeout.count());
  if (rd_kafka_AdminOptions_set_request_timeout(opts, ms, err.data(), err.size()) !=
      RD_KAFKA_RESP_ERR_NO_ERROR) {
    return InvalidArgument("admin request timeout {}ms: {}", ms, err.data());
  }
  if (operation_too && rd_kafka_AdminOptions_set_operation_timeout(
                           opts, ms, err.data(), err.size()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return InvalidArgument("admin operation timeout {}ms: {}", ms, err.data());
  }
  return OkStatus();
}

}  // namespace

Status CheckProperty(const std::string& key, const std::string& value) {
  KafkaConf conf(rd_kafka_conf_new());
  std::array<char, 512> err{};
  if (rd_kafka_conf_set(conf.get(), key.c_str(), value.c_str(), err.data(), err.size()) !=
      RD_KAFKA_CONF_OK) {
    return InvalidArgument("{}", err.data());
  }
  return OkStatus();
}

Result<std::unique_ptr<Admin>> Admin::Create(const Properties& properties) {
  FS_ASSIGN_OR_RETURN(KafkaConf conf, internal::MakeConf(properties));
  internal::SetLogger(conf.get());
  std::array<char, 512> err{};
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err.data(), err.size());
  if (rk == nullptr) {
    return InvalidArgument("kafka admin client: {}", err.data());
  }
  (void)conf.release();  // rd_kafka_new owns it now
  return std::unique_ptr<Admin>(new Admin(KafkaHandle(rk)));
}

Result<std::map<std::string, TopicDescription>> Admin::ListTopics(
    std::chrono::milliseconds timeout) {
  FS_ASSIGN_OR_RETURN(std::vector<internal::TopicMetadata> md,
                      internal::DescribeTopics(rk_.get(), std::nullopt, timeout));
  std::map<std::string, TopicDescription> out;
  for (internal::TopicMetadata& t : md) {
    if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      continue;
    }
    TopicDescription d{.name = t.name,
                       .partitions = static_cast<int>(t.partitions.size()),
                       .replication = t.replication};
    out[std::move(t.name)] = std::move(d);
  }
  return out;
}

std::optional<int32_t> Admin::ControllerId(std::chrono::milliseconds timeout) {
  const int32_t id = rd_kafka_controllerid(rk_.get(), static_cast<int>(timeout.count()));
  return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
}

Result<std::vector<CreateTopicResult>> Admin::CreateTopics(const std::vector<NewTopic>& topics,
                                                           std::chrono::milliseconds timeout) {
  std::vector<KafkaNewTopic> owned;
  std::vector<rd_kafka_NewTopic_t*> raw;
  std::array<char, 512> err{};
  for (const NewTopic& t : topics) {
    KafkaNewTopic nt(
        rd_kafka_NewTopic_new(t.name.c_str(), t.partitions, t.replication, err.data(), err.size()));
    if (!nt) {
      return InvalidArgument("topic {}: {}", t.name, err.data());
    }
    for (const auto& [key, value] : t.configs) {
      if (rd_kafka_NewTopic_set_config(nt.get(), key.c_str(), value.c_str()) !=
          RD_KAFKA_RESP_ERR_NO_ERROR) {
        return InvalidArgument("topic {}: config {}={} rejected", t.name, key, value);
      }
    }
    raw.push_back(nt.get());
    owned.push_back(std::move(nt));
  }
  KafkaQueue q(rd_kafka_queue_new(rk_.get()));
  KafkaAdminOptions opts(rd_kafka_AdminOptions_new(rk_.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS));
  FS_RETURN_IF_ERROR(SetRequestTimeout(opts.get(), timeout, /*operation_too=*/true));
  rd_kafka_CreateTopics(rk_.get(), raw.data(), raw.size(), opts.get(), q.get());
  FS_ASSIGN_OR_RETURN(KafkaEvent ev, WaitFor(q.get(), timeout + kAnswerSlack, "CreateTopics"));
  const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev.get());
  if (res == nullptr) {
    return InternalError("CreateTopics: unexpected event");
  }
  size_t n = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &n);
  std::vector<CreateTopicResult> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back({.name = rd_kafka_topic_result_name(results[i]),
                   .status = TopicStatus(rd_kafka_topic_result_error(results[i]),
                                         rd_kafka_topic_result_error_string(results[i]))});
  }
  return out;
}

Result<std::map<std::string, TopicConfigs>> Admin::DescribeTopicConfigs(
    const std::vector<std::string>& topics, std::chrono::milliseconds timeout) {
  std::vector<KafkaConfigResource> owned;
  std::vector<rd_kafka_ConfigResource_t*> raw;
  for (const std::string& t : topics) {
    owned.emplace_back(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, t.c_str()));
    raw.push_back(owned.back().get());
  }
  KafkaQueue q(rd_kafka_queue_new(rk_.get()));
  KafkaAdminOptions opts(rd_kafka_AdminOptions_new(rk_.get(), RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS));
  FS_RETURN_IF_ERROR(SetRequestTimeout(opts.get(), timeout, /*operation_too=*/false));
  rd_kafka_DescribeConfigs(rk_.get(), raw.data(), raw.size(), opts.get(), q.get());
  FS_ASSIGN_OR_RETURN(KafkaEvent ev, WaitFor(q.get(), timeout + kAnswerSlack, "DescribeConfigs"));
  const rd_kafka_DescribeConfigs_result_t* res = rd_kafka_event_DescribeConfigs_result(ev.get());
  if (res == nullptr) {
    return InternalError("DescribeConfigs: unexpected event");
  }
  size_t n = 0;
  const rd_kafka_ConfigResource_t** rs = rd_kafka_DescribeConfigs_result_resources(res, &n);
  std::map<std::string, TopicConfigs> out;
  for (size_t i = 0; i < n; ++i) {
    TopicConfigs& topic = out[rd_kafka_ConfigResource_name(rs[i])];
    topic.status = TopicStatus(rd_kafka_ConfigResource_error(rs[i]),
                               rd_kafka_ConfigResource_error_string(rs[i]));
    if (!topic.status.ok()) {
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

}  // namespace flamestream::kafka
