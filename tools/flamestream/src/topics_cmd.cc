#include "topics_cmd.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>

#include "flamestream/kafka/admin.h"
#include "flamestream/kafka/topics.h"

namespace flamestream::cli {
namespace {

namespace topics = kafka::topics;

Result<std::unique_ptr<kafka::Admin>> Connect(const TopicsOptions& o) {
  if (o.brokers.empty()) return InvalidArgument("--brokers: required");
  // Each -X property on its own first, so a bad one is named as it was typed.
  for (const auto& [k, v] : o.properties) {
    if (Status s = kafka::CheckProperty(k, v); !s.ok()) {
      return InvalidArgument("-X {}={}: {}", k, v, s.message());
    }
  }
  kafka::Properties props = o.properties;
  props["bootstrap.servers"] = o.brokers;
  return kafka::Admin::Create(props);
}

// Admin requests go to the controller; a cluster that names none (librdkafka's mock cluster,
// i.e. the dev broker) would only make them time out.
bool HasController(kafka::Admin& admin, std::chrono::milliseconds timeout) {
  const auto wait = std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(5));
  return admin.ControllerId(wait).has_value();
}

}  // namespace

std::vector<TopicPlan> PlanTopics(const TopicsOptions& o) {
  const std::string retention_ms =
      std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(o.retention).count());
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
  FS_ASSIGN_OR_RETURN(std::unique_ptr<kafka::Admin> admin, Connect(o));
  if (!HasController(*admin, o.timeout)) {
    return Unavailable(
        "{} names no controller, so topics cannot be created through it (the dev broker, "
        "librdkafka's mock cluster, creates the Flamestream topics itself when it starts)",
        o.brokers);
  }
  std::vector<kafka::NewTopic> wanted;
  for (TopicPlan& p : PlanTopics(o)) {
    wanted.push_back({.name = std::move(p.name),
                      .partitions = o.partitions,
                      .replication = o.replication,
                      .configs = std::move(p.configs)});
  }
  Result<std::vector<kafka::CreateTopicResult>> results = admin->CreateTopics(wanted, o.timeout);
  if (!results.ok()) {
    if (results.error().message().find("controller") != std::string::npos) {
      return Unavailable(
          "{}; the cluster's controller does not answer Admin requests (the dev "
          "broker, librdkafka's mock cluster, cannot create topics this way: it "
          "creates the Flamestream topics itself when it starts)",
          results.error().message());
    }
    return results.error();
  }
  std::string report;
  std::vector<std::string> failed;
  for (const kafka::CreateTopicResult& r : *results) {
    if (r.status.ok()) {
      report += fmt::format("created  {} (partitions {}, replication {})\n", r.name, o.partitions,
                            o.replication);
    } else if (r.status.code() == StatusCode::kAlreadyExists) {
      report += fmt::format("exists   {}\n", r.name);
    } else {
      report += fmt::format("FAILED   {}: {}\n", r.name, r.status.message());
      failed.push_back(r.name);
    }
  }
  if (!failed.empty()) {
    // The whole report, so the topics that were created or existed are not lost from view.
    report.pop_back();
    return Unavailable("could not create {} of {} topic(s):\n{}", failed.size(), results->size(),
                       report);
  }
  return report;
}

Result<TopicsCheck> CheckTopics(const TopicsOptions& o) {
  FS_ASSIGN_OR_RETURN(std::unique_ptr<kafka::Admin> admin, Connect(o));
  using TopicsByName = std::map<std::string, kafka::TopicDescription>;
  FS_ASSIGN_OR_RETURN(const TopicsByName existing, admin->ListTopics(o.timeout));
  const std::vector<TopicPlan> plan = PlanTopics(o);
  std::vector<std::string> names;
  for (const TopicPlan& p : plan) {
    if (existing.contains(p.name)) names.push_back(p.name);
  }
  Result<std::map<std::string, kafka::TopicConfigs>> configs =
      HasController(*admin, o.timeout) ? admin->DescribeTopicConfigs(names, o.timeout)
                                       : Result<std::map<std::string, kafka::TopicConfigs>>(
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
      const kafka::TopicConfigs& have = (*configs)[p.name];
      if (!have.status.ok()) {
        // Said, not failed, like a cluster that describes no configs at all.
        line += fmt::format(", configs not readable: {}", have.status.message());
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
    check.problems.push_back(
        fmt::format("{} has {} partitions but {} has {}: the correlator needs equal counts",
                    topics::kSamplesSymbolized, a->second.partitions, topics::kSpansKeyed,
                    b->second.partitions));
  }
  return check;
}

}  // namespace flamestream::cli
