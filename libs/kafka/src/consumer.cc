#include "flamestream/kafka/consumer.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>

#include "conf.h"
#include "flamestream/common/strings.h"
#include "flamestream/log/log.h"
#include "metadata.h"

namespace flamestream::kafka {

using internal::ErrStatus;

// ---- Message ---------------------------------------------------------------------------

std::string_view Message::topic() const {
  return msg_->rkt != nullptr ? rd_kafka_topic_name(msg_->rkt) : std::string_view();
}

std::string_view Message::key() const {
  return msg_->key != nullptr ? std::string_view(static_cast<const char*>(msg_->key), msg_->key_len)
                              : std::string_view();
}

std::string_view Message::value() const {
  return msg_->payload != nullptr
             ? std::string_view(static_cast<const char*>(msg_->payload), msg_->len)
             : std::string_view();
}

int64_t Message::timestamp_ms() const {
  rd_kafka_timestamp_type_t type;
  return rd_kafka_message_timestamp(msg_.get(), &type);
}

Headers Message::headers() const {
  Headers out;
  rd_kafka_headers_t* hdrs = nullptr;
  // The headers stay owned by the message.
  if (rd_kafka_message_headers(msg_.get(), &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return out;
  }
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  for (size_t i = 0;
       rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
    out.push_back({name, value != nullptr ? std::string(static_cast<const char*>(value), size)
                                          : std::string()});
  }
  return out;
}

std::optional<std::string_view> Message::header(std::string_view name) const {
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(msg_.get(), &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::nullopt;
  }
  const std::string n(name);
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_header_get_last(hdrs, n.c_str(), &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::nullopt;
  }
  return value != nullptr ? std::string_view(static_cast<const char*>(value), size)
                          : std::string_view();
}

// ---- conversions -------------------------------------------------------------------------

PartitionList ToPartitionList(const TopicPartitions& partitions) {
  PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
  for (const TopicPartition& tp : partitions) {
    rd_kafka_topic_partition_t* e =
        rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
    e->offset = tp.offset;
    if (!tp.metadata.empty()) {
      // The list owns (and frees) its metadata.
      e->metadata = std::malloc(tp.metadata.size());
      std::memcpy(e->metadata, tp.metadata.data(), tp.metadata.size());
      e->metadata_size = tp.metadata.size();
    }
  }
  return list;
}

TopicPartitions FromPartitionList(const rd_kafka_topic_partition_list_t* list) {
  TopicPartitions out;
  if (list == nullptr) {
    return out;
  }
  out.reserve(static_cast<size_t>(list->cnt));
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& e = list->elems[i];
    TopicPartition tp{e.topic, e.partition, e.offset, {}};
    if (e.metadata != nullptr && e.metadata_size > 0) {
      tp.metadata.assign(static_cast<const char*>(e.metadata), e.metadata_size);
    }
    out.push_back(std::move(tp));
  }
  return out;
}

int64_t OffsetForTimestampAnswer(int64_t answered_offset) {
  return answered_offset >= 0 ? answered_offset : kOffsetBeginning;
}

// ---- Consumer ------------------------------------------------------------------------------

Result<std::string> EffectiveResetPolicy(const ConsumerConfig& config) {
  std::string policy = config.auto_offset_reset;
  if (auto it = config.properties.find("auto.offset.reset"); it != config.properties.end()) {
    policy = it->second;
  }
  if (policy == "earliest" || policy == "smallest" || policy == "beginning") {
    return std::string("earliest");
  }
  if (policy == "latest" || policy == "largest" || policy == "end") {
    return std::string("latest");
  }
  if (policy == "error") {
    return policy;
  }
  return InvalidArgument(
      "kafka consumer: auto.offset.reset \"{}\": expected earliest, latest or error", policy);
}

Result<Properties> EffectiveConsumerProperties(const ConsumerConfig& config) {
  if (config.group_id.empty() && !config.whole_topics) {
    return InvalidArgument("kafka consumer: group id is empty");
  }
  Properties props = {
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"partition.assignment.strategy",
       config.assignor == Assignor::kRange ? "range" : "cooperative-sticky"},
  };
  if (!config.group_id.empty()) {
    props["group.id"] = config.group_id;
  } else {
    // librdkafka's consumer API needs a group even for manual assignment; a table consumer
    // never joins it (no subscribe) and never commits to it.
    std::random_device rd;
    props["group.id"] = fmt::format("flamestream-table-{:08x}{:08x}", rd(), rd());
  }
  for (const auto& [key, value] : config.properties) {
    props[key] = value;
  }
  if (props["enable.auto.commit"] != "false" || props["enable.auto.offset.store"] != "false") {
    return InvalidArgument(
        "kafka consumer: enable.auto.commit and enable.auto.offset.store must stay false "
        "(offsets are committed only after outputs are acknowledged)");
  }
  FS_RETURN_IF_ERROR(EffectiveResetPolicy(config).status());
  // librdkafka resets a fallen-out offset with one log line; `error` hands every reset to
  // Poll(), which applies the policy itself and counts what was skipped.
  props["auto.offset.reset"] = "error";
  return props;
}

Consumer::Consumer(ConsumerConfig config) : config_(std::move(config)) {}

Result<std::unique_ptr<Consumer>> Consumer::Create(ConsumerConfig config) {
  if (config.topics.empty()) {
    return InvalidArgument("kafka consumer {}: no topics", config.group_id);
  }
  FS_ASSIGN_OR_RETURN(Properties props, EffectiveConsumerProperties(config));
  FS_ASSIGN_OR_RETURN(const std::string policy, EffectiveResetPolicy(config));
  FS_ASSIGN_OR_RETURN(KafkaConf conf, internal::MakeConf(props));
  std::unique_ptr<Consumer> c(new Consumer(std::move(config)));
  c->reset_to_earliest_ = policy != "latest";
  c->reset_is_error_ = policy == "error";
  if (auto it = props.find("session.timeout.ms"); it != props.end()) {
    if (auto ms = common::ParseInt<int64_t>(it->second); ms.ok() && *ms > 0) {
      c->session_timeout_ = std::chrono::milliseconds(*ms);
    }
  }
  internal::SetLogger(conf.get());
  rd_kafka_conf_set_opaque(conf.get(), c.get());
  rd_kafka_conf_set_rebalance_cb(conf.get(), &Consumer::RebalanceCallback);
  std::array<char, 512> err{};
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err.data(), err.size());
  if (rk == nullptr) {
    return InvalidArgument("kafka consumer: {}", err.data());
  }
  (void)conf.release();
  c->rk_.reset(rk);
  // Serve everything (errors, logs, rebalances) from consumer_poll on the owner's thread.
  rd_kafka_poll_set_consumer(rk);
  if (c->config_.whole_topics) {
    // The broker may not be up yet: Poll() retries until the topics' partitions are known.
    if (Status s = c->AssignWholeTopics(); !s.ok()) {
      log::Warn("kafka table consumer: partitions not known yet; retrying",
                {{"consumer", c->Name()}, {"error", s}});
      c->next_partition_refresh_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    }
    return c;
  }
  TopicPartitions subs;
  for (const std::string& t : c->config_.topics) {
    subs.push_back({t, RD_KAFKA_PARTITION_UA, kOffsetInvalid});
  }
  PartitionList list = ToPartitionList(subs);
  if (rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, list.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(e, "kafka subscribe");
  }
  return c;
}

Consumer::~Consumer() {
  // Whoever asked for async commit results may be half destroyed already: none is delivered.
  commits_in_flight_.clear();
  if (!closed_) {
    Status s = Close();
    if (!s.ok()) {
      log::Warn("kafka consumer close failed", {{"group", config_.group_id}, {"error", s}});
    }
  }
}

void Consumer::RebalanceCallback(rd_kafka_t* /*rk*/, rd_kafka_resp_err_t err,
                                 rd_kafka_topic_partition_list_t* parts, void* opaque) {
  static_cast<Consumer*>(opaque)->OnRebalance(err, parts);
}

void Consumer::OnRebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts) {
  rd_kafka_t* rk = rk_.get();
  const bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  const TopicPartitions tps = FromPartitionList(parts);
  // User hooks must not unwind through librdkafka.
  auto call = [&](const PartitionsCallback& cb, bool lost) {
    if (!cb) {
      return;
    }
    try {
      cb(tps, lost);
    } catch (const std::exception& e) {
      log::Error("kafka rebalance hook threw", {{"group", config_.group_id}, {"error", e.what()}});
    }
  };
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    ResolveStartOffsets(parts);
    log::Info("kafka partitions assigned",
              {{"group", config_.group_id}, {"count", parts->cnt}, {"cooperative", cooperative}});
    if (cooperative) {
      KafkaError e(rd_kafka_incremental_assign(rk, parts));
      if (e) {
        log::Error("kafka incremental assign failed", {{"error", rd_kafka_error_string(e.get())}});
      }
    } else if (rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
               e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      log::Error("kafka assign failed", {{"error", rd_kafka_err2str(e)}});
    }
    if (Status s = Repause(); !s.ok()) {
      log::Error("kafka pause after assign failed", {{"group", config_.group_id}, {"error", s}});
    }
    call(config_.on_assigned, false);
    commit_refused_at_.reset();
    return;
  }
  const bool lost = err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS || rd_kafka_assignment_lost(rk);
  log::Info("kafka partitions revoked",
            {{"group", config_.group_id}, {"count", parts->cnt}, {"lost", lost}});
  // Before unassigning: the owner commits what is acknowledged while it still owns them.
  call(config_.on_revoked, lost);
  commit_refused_at_.reset();  // the partitions whose commit was refused are gone
  if (cooperative) {
    KafkaError e(rd_kafka_incremental_unassign(rk, parts));
    if (e) {
      log::Error("kafka incremental unassign failed", {{"error", rd_kafka_error_string(e.get())}});
    }
  } else {
    (void)rd_kafka_assign(rk, nullptr);
  }
}

Result<std::optional<Message>> Consumer::Poll(std::chrono::milliseconds timeout) {
  if (closed_) {
    return FailedPrecondition("kafka consumer {} is closed", Name());
  }
  if (config_.whole_topics && std::chrono::steady_clock::now() >= next_partition_refresh_) {
    if (Status s = AssignWholeTopics(); !s.ok()) {
      log::Warn("kafka table consumer: partition refresh failed; retrying",
                {{"consumer", Name()}, {"error", s}});
      next_partition_refresh_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    }
  }
  if (commit_queue_) (void)rd_kafka_queue_poll_callback(commit_queue_.get(), 0);
  KafkaMessage msg(rd_kafka_consumer_poll(rk_.get(), static_cast<int>(timeout.count())));
  if (!msg) {
    return std::optional<Message>();
  }
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::optional<Message>(Message(std::move(msg)));
  }
  if (msg->err == RD_KAFKA_RESP_ERR__FATAL) {
    return FatalError();
  }
  if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
    FS_RETURN_IF_ERROR(OnOffsetReset(*msg));
    return std::optional<Message>();
  }
  if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    // Consumer errors are informational; librdkafka keeps retrying.
    log::Warn("kafka consumer error",
              {{"group", config_.group_id}, {"error", rd_kafka_message_errstr(msg.get())}});
  }
  return std::optional<Message>();
}

std::string Consumer::Name() const {
  if (!config_.group_id.empty()) {
    return config_.group_id;
  }
  std::string topics;
  for (const std::string& t : config_.topics) {
    topics += (topics.empty() ? "" : ",") + t;
  }
  return "table:" + topics;
}

Status Consumer::AssignWholeTopics() {
  next_partition_refresh_ = std::chrono::steady_clock::now() + config_.partition_refresh;
  FS_ASSIGN_OR_RETURN(TopicPartitions current, Assignment());
  if (!current.empty()) {
    PartitionList positions = ToPartitionList(current);
    if (rd_kafka_position(rk_.get(), positions.get()) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      current = FromPartitionList(positions.get());
    }
  }
  TopicPartitions wanted;
  for (const std::string& topic : config_.topics) {
    FS_ASSIGN_OR_RETURN(const std::vector<internal::TopicMetadata> md,
                        internal::DescribeTopics(rk_.get(), topic, std::chrono::seconds(2)));
    for (const internal::TopicMetadata& mt : md) {
      if (mt.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log::Debug("kafka table consumer: topic not ready",
                   {{"topic", topic}, {"error", rd_kafka_err2str(mt.err)}});
        continue;
      }
      for (const int32_t partition : mt.partitions) {
        TopicPartition tp{topic, partition, kOffsetBeginning};
        for (const TopicPartition& have : current) {
          if (have.topic == tp.topic && have.partition == tp.partition) {
            tp.offset = have.offset >= 0 ? have.offset : kOffsetBeginning;
          }
        }
        wanted.push_back(std::move(tp));
      }
    }
  }
  std::sort(wanted.begin(), wanted.end());
  std::sort(current.begin(), current.end());
  auto same_partitions = [](const TopicPartitions& a, const TopicPartitions& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [](const TopicPartition& x, const TopicPartition& y) {
                        return x.topic == y.topic && x.partition == y.partition;
                      });
  };
  if (wanted.empty()) {
    next_partition_refresh_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    return OkStatus();
  }
  if (same_partitions(wanted, current)) {
    return OkStatus();
  }
  PartitionList list = ToPartitionList(wanted);
  if (rd_kafka_resp_err_t e = rd_kafka_assign(rk_.get(), list.get());
      e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(e, "kafka assign");
  }
  log::Info("kafka table consumer reads every partition",
            {{"consumer", Name()}, {"partitions", wanted.size()}});
  return OkStatus();
}

OffsetResetPlan PlanOffsetReset(int64_t requested, int64_t log_start, int64_t log_end,
                                bool earliest) {
  if (requested < log_start) {
    // Deleted before it was read: everything from `requested` to where reading resumes.
    const int64_t resume = earliest ? log_start : log_end;
    return {resume, resume - requested};
  }
  if (requested > log_end) {
    // Past the end (the topic was recreated or truncated): nothing of the log was skipped.
    return {earliest ? log_start : log_end, 0};
  }
  return {requested, 0};  // in the log after all (a leader change): read it
}

Status Consumer::Reassign(const TopicPartition& restart) {
  rd_kafka_t* rk = rk_.get();
  PartitionList one = ToPartitionList({restart});
  if (!config_.whole_topics && std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0) {
    KafkaError off(rd_kafka_incremental_unassign(rk, one.get()));
    KafkaError on(off ? nullptr : rd_kafka_incremental_assign(rk, one.get()));
    if (off || on) {
      return Unavailable("kafka reassign {}[{}]: {}", restart.topic, restart.partition,
                         rd_kafka_error_string(off ? off.get() : on.get()));
    }
  } else {
    // Eager or manual: the whole assignment again, every other partition at its position.
    FS_ASSIGN_OR_RETURN(TopicPartitions current, Assignment());
    PartitionList list = ToPartitionList(current);
    (void)rd_kafka_position(rk, list.get());
    for (int i = 0; i < list->cnt; ++i) {
      rd_kafka_topic_partition_t& e = list->elems[i];
      if (restart.topic == e.topic && restart.partition == e.partition) {
        e.offset = restart.offset;
      } else if (e.offset < 0) {
        e.offset = kOffsetInvalid;  // not read yet: its committed offset, as before
      }
    }
    if (rd_kafka_resp_err_t e = rd_kafka_assign(rk, list.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return ErrStatus(e, "kafka reassign");
    }
  }
  return Repause();
}

Status Consumer::PauseAll() {
  pause_all_ = true;
  return Repause();
}

Status Consumer::ResumeAll() {
  pause_all_ = false;
  FS_ASSIGN_OR_RETURN(TopicPartitions assigned, Assignment());
  // Also those paused while assigned and revoked since: librdkafka keeps a partition's pause
  // across an unassign, so one assigned again later would stay paused.
  std::set<std::pair<std::string, int32_t>> all = std::move(paused_by_all_);
  paused_by_all_.clear();
  for (const TopicPartition& tp : assigned) all.insert({tp.topic, tp.partition});
  TopicPartitions resume;
  for (const auto& [topic, partition] : all) {
    if (!paused_.contains({topic, partition})) {
      resume.push_back({topic, partition, kOffsetInvalid});
    }
  }
  if (resume.empty()) {
    return OkStatus();
  }
  PartitionList list = ToPartitionList(resume);
  if (rd_kafka_resp_err_t err = rd_kafka_resume_partitions(rk_.get(), list.get());
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, "kafka resume");
  }
  return OkStatus();
}

Status Consumer::Repause() {
  if (paused_.empty() && !pause_all_) {
    return OkStatus();
  }
  FS_ASSIGN_OR_RETURN(TopicPartitions assigned, Assignment());
  TopicPartitions again;
  for (const TopicPartition& tp : assigned) {
    if (pause_all_ || paused_.contains({tp.topic, tp.partition})) {
      again.push_back({tp.topic, tp.partition, kOffsetInvalid});
      if (pause_all_) paused_by_all_.insert({tp.topic, tp.partition});
    }
  }
  if (again.empty()) {
    return OkStatus();
  }
  PartitionList list = ToPartitionList(again);
  if (rd_kafka_resp_err_t err = rd_kafka_pause_partitions(rk_.get(), list.get());
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, "kafka pause");
  }
  return OkStatus();
}

void Consumer::ResolveStartOffsets(rd_kafka_topic_partition_list_t* parts) {
  // Where a partition has no committed offset, start it per auto.offset.reset explicitly:
  // librdkafka runs with `error` so that offsets that fall out of the log reach Poll().
  PartitionList committed(rd_kafka_topic_partition_list_copy(parts));
  const rd_kafka_resp_err_t err = rd_kafka_committed(rk_.get(), committed.get(), 10000);
  for (int i = 0; i < parts->cnt; ++i) {
    rd_kafka_topic_partition_t& e = parts->elems[i];
    if (e.offset >= 0 || e.offset == kOffsetBeginning || e.offset == kOffsetEnd) {
      continue;  // given explicitly
    }
    const int64_t c = err == RD_KAFKA_RESP_ERR_NO_ERROR ? committed->elems[i].offset : -1;
    if (c >= 0) {
      e.offset = c;
    } else if (err == RD_KAFKA_RESP_ERR_NO_ERROR && !reset_is_error_) {
      e.offset = reset_to_earliest_ ? kOffsetBeginning : kOffsetEnd;
    }
    // Else leave it INVALID: librdkafka fetches the committed offset itself and, when there
    // is none, OnOffsetReset() starts it.
  }
}

Status Consumer::OnOffsetReset(const rd_kafka_message_t& msg) {
  OffsetReset r;
  r.topic = msg.rkt != nullptr ? rd_kafka_topic_name(msg.rkt) : "";
  r.partition = msg.partition;
  r.requested = msg.offset;
  if (r.topic.empty()) {
    log::Warn("kafka offset reset without a partition", {{"consumer", Name()}});
    return OkStatus();
  }
  const int64_t logical = reset_to_earliest_ ? kOffsetBeginning : kOffsetEnd;
  if (r.requested < 0) {
    // No committed offset: where a new group (or a table consumer) starts; nothing is lost.
    if (reset_is_error_) {
      return FailedPrecondition("kafka {}[{}]: no committed offset and auto.offset.reset=error",
                                r.topic, r.partition);
    }
    r.resumed_at = logical;
  } else {
    const bool known =
        rd_kafka_query_watermark_offsets(rk_.get(), r.topic.c_str(), r.partition, &r.log_start,
                                         &r.log_end, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!known) {
      r.resumed_at = logical;
    } else {
      const OffsetResetPlan plan =
          PlanOffsetReset(r.requested, r.log_start, r.log_end, reset_to_earliest_);
      r.resumed_at = plan.resume_at;
      r.skipped = plan.skipped;
    }
    const std::string range = fmt::format("[{}, {})", r.requested, r.resumed_at);
    if (reset_is_error_) {
      return DataLoss(
          "kafka {}[{}]: offset {} is not in the log [{}, {}) and auto.offset.reset=error", r.topic,
          r.partition, r.requested, r.log_start, r.log_end);
    }
    records_skipped_ += r.skipped;
    log::Error(r.skipped > 0 ? "kafka records lost: the broker deleted them before they were read"
                             : "kafka offset out of the log; consumer position reset",
               {{"consumer", Name()},
                {"topic", r.topic},
                {"partition", r.partition},
                {"requested", static_cast<long long>(r.requested)},
                {"resumed_at", static_cast<long long>(r.resumed_at)},
                {"skipped", static_cast<long long>(r.skipped)},
                {"skipped_range", r.skipped > 0 ? range : std::string("unknown")},
                {"log_start", static_cast<long long>(r.log_start)},
                {"log_end", static_cast<long long>(r.log_end)}});
  }
  // librdkafka stopped fetching the partition (a seek is refused in that state): assign it
  // again at the new offset.
  FS_RETURN_IF_ERROR(Reassign({r.topic, r.partition, r.resumed_at}));
  if (r.requested >= 0 && config_.on_offset_reset) {
    config_.on_offset_reset(r);
  }
  return OkStatus();
}

Status Consumer::Pause(const TopicPartitions& partitions) {
  if (!rk_) {
    return FailedPrecondition("kafka consumer {} is closed", config_.group_id);
  }
  PartitionList list = ToPartitionList(partitions);
  if (rd_kafka_resp_err_t err = rd_kafka_pause_partitions(rk_.get(), list.get());
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, "kafka pause");
  }
  for (const TopicPartition& tp : partitions) {
    paused_.insert({tp.topic, tp.partition});
  }
  return OkStatus();
}

Status Consumer::Resume(const TopicPartitions& partitions) {
  if (!rk_) {
    return FailedPrecondition("kafka consumer {} is closed", config_.group_id);
  }
  for (const TopicPartition& tp : partitions) {
    paused_.erase({tp.topic, tp.partition});
  }
  if (pause_all_) {
    // PauseAll holds every partition: these stay paused until ResumeAll.
    for (const TopicPartition& tp : partitions) paused_by_all_.insert({tp.topic, tp.partition});
    return OkStatus();
  }
  PartitionList list = ToPartitionList(partitions);
  if (rd_kafka_resp_err_t err = rd_kafka_resume_partitions(rk_.get(), list.get());
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, "kafka resume");
  }
  return OkStatus();
}

Result<TopicPartitions> Consumer::Assignment() const {
  if (!rk_) {
    return FailedPrecondition("kafka consumer {} is closed", config_.group_id);
  }
  rd_kafka_topic_partition_list_t* raw = nullptr;
  if (rd_kafka_resp_err_t err = rd_kafka_assignment(rk_.get(), &raw);
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, "kafka assignment");
  }
  PartitionList list(raw);
  return FromPartitionList(list.get());
}

Status Consumer::Close() {
  if (closed_) {
    return OkStatus();
  }
  closed_ = true;
  const auto start = std::chrono::steady_clock::now();
  DrainCommits(std::chrono::seconds(5));
  rd_kafka_resp_err_t err = rd_kafka_consumer_close(rk_.get());
  // Closed already: the deleter must not close again.
  rd_kafka_destroy(rk_.release());
  log::Debug("kafka consumer closed",
             {{"group", config_.group_id},
              {"ms", static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::steady_clock::now() - start)
                                                .count())}});
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return ErrStatus(err, "kafka consumer close");
  }
  return OkStatus();
}

void Consumer::Abandon() {
  if (closed_) {
    return;
  }
  closed_ = true;
  commit_queue_.reset();
  commits_in_flight_.clear();
  rd_kafka_destroy_flags(rk_.release(), RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

Status Consumer::FatalError() const {
  if (!rk_) {
    return OkStatus();
  }
  std::array<char, 512> buf{};
  rd_kafka_resp_err_t err = rd_kafka_fatal_error(rk_.get(), buf.data(), buf.size());
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    return OkStatus();
  }
  return FailedPrecondition("kafka consumer fatal error {}: {}", rd_kafka_err2name(err),
                            buf.data());
}

}  // namespace flamestream::kafka
