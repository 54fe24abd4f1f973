#include "controller.h"

#include <array>

#include "flamestream/common/strings.h"
#include "flamestream/common/units.h"

namespace flamestream::devbroker {

using common::ParseInt;
using common::SplitNonEmpty;
using common::ToLower;
using common::Trim;

namespace {

struct ApiName {
  std::string_view name;
  int16_t key;
};

// Kafka protocol request types (the ones a fault test plausibly targets).
constexpr std::array<ApiName, 27> kApis = {{
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"DescribeGroups", 15},
    {"ListGroups", 16},
    {"SaslHandshake", 17},
    {"ApiVersions", 18},
    {"CreateTopics", 19},
    {"DeleteTopics", 20},
    {"DeleteRecords", 21},
    {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
    {"DescribeConfigs", 32},
    {"SaslAuthenticate", 36},
    {"DescribeCluster", 60},
}};

}  // namespace

Result<std::vector<TopicSpec>> ParseTopics(std::string_view spec, int default_partitions) {
  std::vector<TopicSpec> out;
  for (const std::string& item : SplitNonEmpty(spec, ',')) {
    std::string_view s = Trim(item);
    if (s.empty()) {
      continue;
    }
    TopicSpec t;
    size_t colon = s.find(':');
    t.name = std::string(Trim(s.substr(0, colon)));
    t.partitions = default_partitions;
    if (colon != std::string_view::npos) {
      FS_ASSIGN_OR_RETURN(t.partitions, ParseInt<int>(s.substr(colon + 1)));
    }
    if (t.name.empty() || t.partitions <= 0) {
      return InvalidArgument("topic \"{}\": expected name[:partitions>0]", s);
    }
    out.push_back(std::move(t));
  }
  return out;
}

Result<int16_t> ParseApiKey(std::string_view name) {
  if (Result<int16_t> n = ParseInt<int16_t>(name); n.ok()) {
    return *n;
  }
  std::string lower = ToLower(name);
  if (lower.ends_with("request")) {
    lower.resize(lower.size() - 7);
  }
  for (const ApiName& api : kApis) {
    if (ToLower(api.name) == lower) {
      return api.key;
    }
  }
  return InvalidArgument("unknown request type \"{}\" (e.g. Produce, Fetch, Metadata, JoinGroup)",
                         name);
}

Result<rd_kafka_resp_err_t> ParseErrorCode(std::string_view name) {
  if (Result<int> n = ParseInt<int>(name); n.ok()) {
    return static_cast<rd_kafka_resp_err_t>(*n);
  }
  std::string upper(Trim(name));
  for (char& c : upper) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  if (upper.starts_with("RD_KAFKA_RESP_")) {
    upper.erase(0, 14);
  }
  if (upper.starts_with("ERR_")) {
    upper.erase(0, 4);
  }
  if (upper == "NONE" || upper == "NO_ERROR") {
    return RD_KAFKA_RESP_ERR_NO_ERROR;
  }
  const rd_kafka_err_desc* descs = nullptr;
  size_t cnt = 0;
  rd_kafka_get_err_descs(&descs, &cnt);
  for (size_t i = 0; i < cnt; ++i) {
    if (descs[i].name != nullptr && upper == descs[i].name) {
      return descs[i].code;
    }
  }
  return InvalidArgument(
      "unknown error \"{}\" (e.g. BROKER_NOT_AVAILABLE, NOT_LEADER_FOR_PARTITION, _TRANSPORT)",
      name);
}

std::string CommandHelp() {
  return R"(Commands (stdin or --admin-port, one per line; each answers "ok" or "error: ..."):
  broker <id> down                    stop broker <id> (1..N): connections close, new ones are refused
  broker <id> up                      bring it back
  broker <id> rtt <duration>          delay every response of broker <id> ("500ms", "0" clears)
  broker <id> error <Api> <ERR> [rtt] the next <Api> request to broker <id> fails with <ERR>
  error <Api> <count> <ERR>...        the next <count> <Api> requests (any broker) fail; one
                                      <ERR> repeats, else give <count> of them in order
  error <Api> clear                   drop pending errors for <Api>
  topic create <name> <partitions>    create a topic (replication min(3, brokers))
  topic error <name> <ERR|none>       Metadata answers <ERR> for <name>
  leader <topic> <partition> <id>     move a partition's leader (-1: no leader)
  coordinator group <group.id> <id>   pin a consumer group's coordinator
  help                                this text
  <Api> is a request name or number (Produce, Fetch, ListOffsets, Metadata, OffsetCommit,
  JoinGroup, SyncGroup, Heartbeat, InitProducerId, ...); <ERR> a Kafka error name
  (BROKER_NOT_AVAILABLE, NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, _TRANSPORT: disconnect).)";
}

Controller::Controller(rd_kafka_mock_cluster_t* mcluster, int brokers)
    : mcluster_(mcluster), up_(static_cast<size_t>(brokers), true) {}

bool Controller::BrokerUp(int id) const {
  return id >= 1 && id <= brokers() && up_[static_cast<size_t>(id - 1)];
}

std::vector<std::string> Controller::Execute(std::string_view line) {
  std::vector<std::string> out;
  std::vector<std::string> words = SplitNonEmpty(Trim(line), ' ');
  Status s = words.empty() ? InvalidArgument("empty command (try help)") : Run(words, out);
  out.push_back(s.ok() ? "ok" : "error: " + s.message());
  return out;
}

Result<int32_t> Controller::ParseBroker(std::string_view word) const {
  Result<int32_t> id = ParseInt<int32_t>(word);
  if (!id.ok() || *id < 1 || *id > brokers()) {
    return InvalidArgument("no broker {} (1..{})", word, brokers());
  }
  return *id;
}

namespace {

Status MockErr(rd_kafka_resp_err_t err) {
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return InvalidArgument("{}", rd_kafka_err2str(err));
  }
  return OkStatus();
}

}  // namespace

Status Controller::RunBroker(const std::vector<std::string>& w) {
  if (w.size() < 3) {
    return InvalidArgument("usage: broker <id> down|up|rtt <duration>|error <Api> <ERR> [rtt]");
  }
  FS_ASSIGN_OR_RETURN(int32_t id, ParseBroker(w[1]));
  const std::string verb = ToLower(w[2]);
  if (verb == "down" && w.size() == 3) {
    FS_RETURN_IF_ERROR(MockErr(rd_kafka_mock_broker_set_down(mcluster_, id)));
    up_[static_cast<size_t>(id - 1)] = false;
    return OkStatus();
  }
  if (verb == "up" && w.size() == 3) {
    FS_RETURN_IF_ERROR(MockErr(rd_kafka_mock_broker_set_up(mcluster_, id)));
    up_[static_cast<size_t>(id - 1)] = true;
    return OkStatus();
  }
  if (verb == "rtt" && w.size() == 4) {
    FS_ASSIGN_OR_RETURN(std::chrono::nanoseconds d, common::ParseDuration(w[3]));
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return MockErr(rd_kafka_mock_broker_set_rtt(mcluster_, id, static_cast<int>(ms)));
  }
  if (verb == "error" && (w.size() == 5 || w.size() == 6)) {
    FS_ASSIGN_OR_RETURN(int16_t api, ParseApiKey(w[3]));
    FS_ASSIGN_OR_RETURN(rd_kafka_resp_err_t err, ParseErrorCode(w[4]));
    int rtt_ms = 0;
    if (w.size() == 6) {
      FS_ASSIGN_OR_RETURN(std::chrono::nanoseconds d, common::ParseDuration(w[5]));
      rtt_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
    }
    return MockErr(
        rd_kafka_mock_broker_push_request_error_rtts(mcluster_, id, api, 1, err, rtt_ms));
  }
  return InvalidArgument("usage: broker <id> down|up|rtt <duration>|error <Api> <ERR> [rtt]");
}

Status Controller::Run(const std::vector<std::string>& w, std::vector<std::string>& out) {
  const std::string cmd = ToLower(w[0]);
  if (cmd == "help") {
    for (const std::string& l : common::Split(CommandHelp(), '\n')) {
      out.push_back(l);
    }
    return OkStatus();
  }
  if (cmd == "broker") {
    return RunBroker(w);
  }
  if (cmd == "error") {
    if (w.size() == 3 && ToLower(w[2]) == "clear") {
      FS_ASSIGN_OR_RETURN(int16_t api, ParseApiKey(w[1]));
      rd_kafka_mock_clear_request_errors(mcluster_, api);
      return OkStatus();
    }
    if (w.size() < 4) {
      return InvalidArgument("usage: error <Api> <count> <ERR>... | error <Api> clear");
    }
    FS_ASSIGN_OR_RETURN(int16_t api, ParseApiKey(w[1]));
    Result<size_t> count = ParseInt<size_t>(w[2]);
    if (!count.ok() || *count == 0 || *count > 100000) {
      return InvalidArgument("error count \"{}\" must be 1..100000", w[2]);
    }
    std::vector<rd_kafka_resp_err_t> errs;
    for (size_t i = 3; i < w.size(); ++i) {
      FS_ASSIGN_OR_RETURN(rd_kafka_resp_err_t e, ParseErrorCode(w[i]));
      errs.push_back(e);
    }
    if (errs.size() == 1) {
      errs.resize(*count, errs[0]);
    } else if (errs.size() != *count) {
      return InvalidArgument("{} errors given for count {}", errs.size(), *count);
    }
    rd_kafka_mock_push_request_errors_array(mcluster_, api, errs.size(), errs.data());
    return OkStatus();
  }
  if (cmd == "topic") {
    if (w.size() == 4 && ToLower(w[1]) == "create") {
      FS_ASSIGN_OR_RETURN(int partitions, ParseInt<int>(w[3]));
      if (partitions <= 0) {
        return InvalidArgument("partitions must be > 0");
      }
      return MockErr(
          rd_kafka_mock_topic_create(mcluster_, w[2].c_str(), partitions, std::min(3, brokers())));
    }
    if (w.size() == 4 && ToLower(w[1]) == "error") {
      FS_ASSIGN_OR_RETURN(rd_kafka_resp_err_t e, ParseErrorCode(w[3]));
      rd_kafka_mock_topic_set_error(mcluster_, w[2].c_str(), e);
      return OkStatus();
    }
    return InvalidArgument("usage: topic create <name> <partitions> | topic error <name> <ERR>");
  }
  if (cmd == "leader" && w.size() == 4) {
    FS_ASSIGN_OR_RETURN(int32_t partition, ParseInt<int32_t>(w[2]));
    FS_ASSIGN_OR_RETURN(int32_t id, ParseInt<int32_t>(w[3]));
    if (id != -1) {
      FS_RETURN_IF_ERROR(ParseBroker(w[3]).status());
    }
    return MockErr(rd_kafka_mock_partition_set_leader(mcluster_, w[1].c_str(), partition, id));
  }
  if (cmd == "coordinator" && w.size() == 4) {
    FS_ASSIGN_OR_RETURN(int32_t id, ParseBroker(w[3]));
    const std::string type = ToLower(w[1]);
    if (type != "group" && type != "transaction") {
      return InvalidArgument("coordinator type must be group or transaction");
    }
    return MockErr(rd_kafka_mock_coordinator_set(mcluster_, type.c_str(), w[2].c_str(), id));
  }
  return InvalidArgument("unknown command \"{}\" (try help)", Trim(common::Join(w, " ")));
}

}  // namespace flamestream::devbroker
