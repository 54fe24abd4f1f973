#include "exporter_stage.h"

#include <algorithm>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "flamestream/batch/batch.h"
#include "flamestream/common/strings.h"
#include "flamestream/kafka/ack_tracker.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/log/log.h"
#include "flamestream/profile/aggregator.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/stage/caught_up.h"
#include "flamestream/stage/failure_latch.h"
#include "sample_times.h"
#include "window_dlq.h"

namespace flamestream::exporter {
namespace {

using Clock = std::chrono::steady_clock;

// The records a window was built from, kept until it is delivered (or dead-lettered).
using InputRef = std::shared_ptr<const InputRecord>;

}  // namespace

namespace {
int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

ExporterStage::ExporterStage(StageConfig config, std::unique_ptr<sinks::Sink> sink,
                             obs::Registry& metrics)
    : config_(std::move(config)), sink_(std::move(sink)), metrics_(metrics) {}

ExporterStage::~ExporterStage() = default;

Status ExporterStage::Run(std::stop_token stop) {
  const std::string sink_name(sink_->name());
  const obs::Labels labels = {{"sink", sink_name}};
  obs::Counter& records_in =
      metrics_.Counter("fs_exporter_records_in_total", "records consumed", labels);
  obs::Counter& samples_in = metrics_.Counter("fs_exporter_samples_aggregated_total",
                                              "samples aggregated into windows", labels);
  obs::Counter& duplicates = metrics_.Counter("fs_exporter_duplicate_samples_total",
                                              "samples dropped as duplicates (batch id)", labels);
  obs::Counter& windows_ok = metrics_.Counter("fs_exporter_windows_delivered_total",
                                              "windows acknowledged by the sink", labels);
  obs::Counter& windows_dlq = metrics_.Counter("fs_exporter_windows_dead_lettered_total",
                                               "windows refused permanently (to the DLQ)", labels);
  obs::Counter& series_dlq = metrics_.Counter(
      "fs_exporter_series_dead_lettered_total",
      "series refused permanently while the rest of their window was delivered (to the DLQ)",
      labels);
  obs::Counter& retries =
      metrics_.Counter("fs_exporter_retries_total", "retryable sink failures", labels);
  obs::Counter& dlq_records = metrics_.Counter("fs_exporter_dlq_records_total",
                                               "undecodable input records dead-lettered", labels);
  obs::Gauge& pending =
      metrics_.Gauge("fs_exporter_pending_windows", "closed windows waiting for the sink", labels);
  obs::Gauge& paused_gauge =
      metrics_.Gauge("fs_exporter_paused", "1 while input is paused", labels);
  obs::Counter& future_samples =
      metrics_.Counter("fs_exporter_future_samples_total",
                       "samples beyond now + exporter.max_clock_skew, sent to the DLQ", labels);
  const SampleTimeGuard guard({.max_clock_skew = config_.max_clock_skew,
                               .window = config_.window,
                               .max_windows_per_batch = config_.max_windows_per_batch});
  stage::FailureLatch failure;  // DLQ deliveries that failed
  Status result;
  // The metrics every stage exposes (fs_records_in_total, fs_consumer_lag): `flamestream up`
  // drains a stage only once these say it has read everything its upstream flushed.
  obs::StageMetrics stage_metrics(metrics_, "exporter-" + sink_name);

  kafka::AckTracker acks;
  const std::string group = config_.group_prefix + sink_name;
  std::unique_ptr<kafka::Consumer> consumer;
  kafka::ConsumerConfig ccfg;
  ccfg.properties = config_.kafka;
  ccfg.group_id = group;
  ccfg.topics = {config_.topic};
  stage::CaughtUp caught_up(config_.caught_up_idle);
  ccfg.on_assigned = [&caught_up](const kafka::TopicPartitions&, bool) { caught_up.OnAssigned(); };
  ccfg.on_revoked = [&](const kafka::TopicPartitions& parts, bool lost) {
    if (!lost && consumer) {
      kafka::TopicPartitions offsets = acks.CommittableOffsets();
      if (!offsets.empty() && consumer->Commit(offsets).ok()) acks.MarkCommitted(offsets);
    }
    acks.Forget(parts);
  };
  ccfg.on_offset_reset = [&stage_metrics](const kafka::OffsetReset& r) {
    stage_metrics.Skipped(r.topic).Inc(static_cast<uint64_t>(r.skipped));
  };
  FS_RETURN_IF_ERROR(sink_->Start());  // bad sink settings fail here, not window by window
  FS_ASSIGN_OR_RETURN(consumer, kafka::Consumer::Create(ccfg));
  kafka::ProducerConfig pcfg;
  pcfg.properties = config_.kafka;
  FS_ASSIGN_OR_RETURN(std::unique_ptr<kafka::Producer> producer, kafka::Producer::Create(pcfg));
  kafka::DlqWriter dlq(*producer, "exporter-" + sink_name);

  profile::Aggregator agg({.window = config_.window,
                           .labels = sink_->labels(),
                           .granularity = sink_->granularity(),
                           .label_limits = config_.label_limits});
  agg.set_new_series_hook([this](profile::Window& w, uint32_t s) { sink_->OnNewSeries(w, s); });
  sinks::DeliveryQueue queue(*sink_, config_.retry);
  // Inputs per open or queued window start, acknowledged when that window is done.
  std::map<int64_t, std::vector<InputRef>> window_inputs;
  // Once closed, by window object: a late record may open a new window with the same start
  // while the closed one waits for the sink, and must not be acknowledged with it.
  std::map<const profile::Window*, std::vector<InputRef>> queued_inputs;
  WindowDlq window_dlq(*producer, sink_name);
  auto last_input = Clock::now();
  bool paused = false;
  auto last_lag = Clock::now();
  uint64_t seen_retries = 0;
  Clock::time_point next_retry_log{};

  auto commit = [&] {
    kafka::TopicPartitions offsets = acks.CommittableOffsets();
    if (offsets.empty()) return;
    if (Status st = consumer->Commit(offsets); st.ok()) {
      acks.MarkCommitted(offsets);
    } else {
      log::Warn("exporter: commit failed", {{"sink", sink_name}, {"error", st}});
    }
  };
  auto close_windows = [&](int64_t watermark) {
    for (std::unique_ptr<profile::Window>& w : watermark == std::numeric_limits<int64_t>::max()
                                                   ? agg.TakeAll()
                                                   : agg.TakeClosed(watermark)) {
      queued_inputs[w.get()] = std::move(window_inputs[w->start_ns]);
      window_inputs.erase(w->start_ns);
      queue.Push(std::move(w));
    }
  };
  auto finish = [&](sinks::DeliveryQueue::Done& done) {
    const int64_t start = done.window->start_ns;
    auto node = queued_inputs.extract(done.window.get());
    std::vector<InputRef> inputs =
        node.empty() ? std::vector<InputRef>{} : std::move(node.mapped());
    if (done.status.ok() && done.failed_series.empty()) {
      windows_ok.Inc();
      for (const InputRef& in : inputs) acks.Ack(in->topic, in->partition, in->offset);
      return;
    }
    if (done.status.ok()) {
      // Delivered except some series refused for good: only their samples go to the DLQ. An
      // input is acknowledged once each failure's DLQ record of it is (or it had no sample in
      // those series).
      windows_ok.Inc();
      size_t refused = 0;
      for (const sinks::SeriesFailure& f : done.failed_series) refused += f.series.size();
      series_dlq.Inc(refused);
      log::Error("exporter: sink refused series of a window, dead-lettering their samples",
                 {{"sink", sink_name},
                  {"window_start", static_cast<long long>(start)},
                  {"series", static_cast<unsigned long>(refused)},
                  {"error", done.failed_series.front().status}});
      struct Pending {
        std::mutex mu;
        std::map<const InputRecord*, size_t> left;
      };
      auto pending = std::make_shared<Pending>();
      for (const InputRef& in : inputs) pending->left[in.get()] = done.failed_series.size();
      auto on_delivered = [pending, &acks](const InputRecord& in) {
        std::lock_guard lock(pending->mu);
        auto it = pending->left.find(&in);
        if (it == pending->left.end() || --it->second > 0) return;
        pending->left.erase(it);
        acks.Ack(in.topic, in.partition, in.offset);
      };
      for (const sinks::SeriesFailure& f : done.failed_series) {
        const SeriesSelection only{.window = done.window.get(), .series = f.series};
        Status st = window_dlq.Write(inputs, start, config_.window.count(), f.status, f.response,
                                     on_delivered, &only);
        if (!st.ok()) log::Error("exporter: DLQ produce failed", {{"error", st}});
      }
      return;
    }
    // Permanent refusal (4xx): the input records that made the window go to the DLQ (cut to
    // the window, with the response), so they can be re-driven; their offsets are committed
    // once the DLQ has them.
    windows_dlq.Inc();
    log::Error("exporter: sink refused window, dead-lettering its input records",
               {{"sink", sink_name},
                {"window_start", static_cast<long long>(start)},
                {"records", static_cast<unsigned long>(inputs.size())},
                {"error", done.status}});
    Status st = window_dlq.Write(
        inputs, start, config_.window.count(), done.status, done.response,
        [&acks](const InputRecord& in) { acks.Ack(in.topic, in.partition, in.offset); });
    if (!st.ok()) log::Error("exporter: DLQ produce failed", {{"error", st}});
  };
  // Counters kept by the aggregator (label sanitizing) and the sink, published as deltas.
  std::map<std::string, uint64_t> published;
  auto publish = [&](const std::string& name, const std::string& help, obs::Labels l,
                     uint64_t value) {
    std::string key = name;
    for (const auto& [k, v] : l) key += "\x1f" + k + "=" + v;
    uint64_t& seen = published[key];
    if (value <= seen) return;
    l.insert(l.begin(), {"sink", sink_name});
    metrics_.Counter(name, help, l).Inc(value - seen);
    seen = value;
  };
  auto sync_counters = [&] {
    for (size_t r = 0; r < profile::kLabelReasons; ++r) {
      const auto reason = static_cast<profile::LabelReason>(r);
      publish("fs_exporter_labels_sanitized_total",
              "series labels changed by sanitizing, by reason",
              {{"reason", std::string(profile::LabelReasonName(reason))}, {"source", "series"}},
              agg.label_sanitizer().count(reason));
    }
    for (const sinks::SinkCounter& c : sink_->Counters()) {
      obs::Labels l(c.labels.begin(), c.labels.end());
      if (c.name == "fs_exporter_labels_sanitized_total") l.emplace_back("source", "config");
      publish(c.name, c.help, std::move(l), c.value);
    }
  };
  auto pump = [&] {
    for (sinks::DeliveryQueue::Done& d : queue.Pump(Clock::now())) finish(d);
    sync_counters();
    if (queue.retries() > seen_retries) {
      retries.Inc(queue.retries() - seen_retries);
      // A sink that is down says why, at most every 10 s (the counter has every attempt).
      if (const auto now = Clock::now(); now >= next_retry_log) {
        log::Warn("exporter: sink unavailable, retrying (input pauses while windows wait)",
                  {{"sink", sink_name},
                   {"retries", static_cast<unsigned long long>(queue.retries() - seen_retries)},
                   {"pending_windows", static_cast<unsigned long>(queue.size())},
                   {"error", queue.last_error()}});
        next_retry_log = now + std::chrono::seconds(10);
      }
    }
    seen_retries = queue.retries();
    pending.Set(static_cast<double>(queue.size()));
    commit();
  };
  auto set_paused = [&](bool want) {
    if (want == paused) return;
    // PauseAll: partitions a rebalance assigns while paused stay paused too.
    Status st = want ? consumer->PauseAll() : consumer->ResumeAll();
    if (!st.ok()) {
      log::Warn("exporter: pause/resume failed", {{"sink", sink_name}, {"error", st}});
      return;
    }
    paused = want;
    paused_gauge.Set(want ? 1 : 0);
    log::Info(want ? "exporter: sink behind, pausing input" : "exporter: sink caught up, resuming",
              {{"sink", sink_name}, {"pending_windows", static_cast<unsigned long>(queue.size())}});
  };

  log::Info("exporter: stage started",
            {{"sink", sink_name}, {"group", group}, {"topic", config_.topic}});
  while (!stop.stop_requested()) {
    if (Status f = failure.Get(); !f.ok()) {
      result = f;
      break;
    }
    // Paused partitions return nothing, but polling keeps the group membership alive.
    FS_ASSIGN_OR_RETURN(std::optional<kafka::Message> msg,
                        consumer->Poll(std::chrono::milliseconds(100)));
    if (!msg && config_.stop_when_caught_up && caught_up.Reached(*consumer)) {
      log::Info("exporter: caught up; stopping", {{"sink", sink_name}});
      break;
    }
    if (msg) {
      last_input = Clock::now();
      caught_up.OnRecord();
      records_in.Inc();
      stage_metrics.records_in.Inc();
      const std::string topic(msg->topic());
      v1::SampleBatch batch;
      Status decoded =
          batch.ParseFromArray(msg->value().data(), static_cast<int>(msg->value().size()))
              ? batch::Validate(batch)
              : DataLoss("not a flamestream.v1.SampleBatch");
      if (decoded.ok() && batch.stage() != v1::STAGE_CORRELATED &&
          batch.stage() != v1::STAGE_SYMBOLIZED) {
        decoded = InvalidArgument("batch stage {} is not symbolized/correlated",
                                  static_cast<int>(batch.stage()));
      }
      GuardOutcome guarded;
      if (decoded.ok()) {
        Result<GuardOutcome> g = guard.Apply(batch, NowNs());
        if (g.ok()) {
          guarded = std::move(*g);
        } else {
          decoded = g.error();
        }
      }
      // A DLQ record counts as one output of its input: the input commits once it landed.
      // A failed DLQ write stops the stage (a restart reads the record again) instead of
      // holding that partition's commits back without a word.
      auto dead_letter = [&](const Status& why) -> Status {
        dlq_records.Inc();
        return dlq.Write(*msg, why,
                         [&acks, &failure, topic, p = msg->partition(),
                          o = msg->offset()](const kafka::DeliveryReport& r) {
                           if (r.status.ok()) {
                             acks.Ack(topic, p, o);
                           } else {
                             failure.Set(r.status.WithContext("DLQ delivery failed"));
                           }
                         });
      };
      if (!decoded.ok()) {
        acks.Track(topic, msg->partition(), msg->offset(), 1);
        if (Status st = dead_letter(decoded); !st.ok()) {
          result = st.WithContext("DLQ produce");
          break;
        }
      } else {
        if (auto epoch = msg->header("symbol-epoch"); epoch && batch.symbol_epoch() == 0) {
          Result<uint64_t> e = common::ParseInt<uint64_t>(*epoch);
          if (e.ok()) batch.set_symbol_epoch(*e);
        }
        profile::AddResult r = agg.Add(batch);
        samples_in.Inc(static_cast<uint64_t>(r.added));
        duplicates.Inc(static_cast<uint64_t>(r.duplicates));
        const bool dlq_too = guarded.future > 0;
        acks.Track(topic, msg->partition(), msg->offset(),
                   static_cast<uint32_t>(r.windows.size()) + (dlq_too ? 1 : 0));
        if (dlq_too) {
          future_samples.Inc(static_cast<uint64_t>(guarded.future));
          log::Warn("exporter: samples from the future sent to the DLQ",
                    {{"sink", sink_name}, {"reason", guarded.reason}});
          if (Status st = dead_letter(OutOfRange("{}", guarded.reason)); !st.ok()) {
            result = st.WithContext("DLQ produce");
            break;
          }
        }
        if (!r.windows.empty()) {
          auto record = std::make_shared<const InputRecord>(InputRecord::Of(*msg));
          for (int64_t w : r.windows) window_inputs[w].push_back(record);
        }
      }
      close_windows(agg.max_event_time_ns() - config_.lateness.count());
    } else if (paused) {
      last_input =
          Clock::now();  // not idle, just not reading: closing windows now would split them
    } else if (Clock::now() - last_input > config_.idle_flush && agg.open_windows() > 0) {
      close_windows(std::numeric_limits<int64_t>::max());
    }
    pump();
    set_paused(queue.backing_off() || queue.size() >= config_.max_pending_windows);
    if (Clock::now() - last_lag > std::chrono::seconds(1)) {
      last_lag = Clock::now();
      Result<std::vector<kafka::PartitionLag>> lag = consumer->Lag();
      if (lag.ok()) {
        for (const kafka::PartitionLag& l : *lag) {
          metrics_
              .Gauge("fs_exporter_consumer_lag", "records behind the high watermark",
                     {{"sink", sink_name},
                      {"topic", l.topic},
                      {"partition", std::to_string(l.partition)}})
              .Set(static_cast<double>(l.lag));
          if (l.lag >= 0) stage_metrics.Lag(l.topic, l.partition).Set(static_cast<double>(l.lag));
        }
      }
    }
  }

  // Drain: deliver every open window (bounded), commit, leave the group.
  close_windows(std::numeric_limits<int64_t>::max());
  const auto deadline = Clock::now() + config_.drain_timeout;
  while (!queue.empty() && Clock::now() < deadline) {
    pump();
    if (!queue.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!queue.empty()) {
    log::Warn("exporter: undelivered windows left for the next run",
              {{"sink", sink_name},
               {"windows", static_cast<unsigned long>(queue.size())},
               {"error", queue.last_error()}});
  }
  (void)producer->Flush(std::chrono::seconds(10));
  commit();
  Status closed = consumer->Close();
  log::Info("exporter: stage stopped", {{"sink", sink_name}});
  if (config_.stop_when_caught_up && !queue.empty()) {
    // A replay that did not write everything has not done its job.
    return Unavailable("exporter {}: {} windows undelivered after draining: {}", sink_name,
                       queue.size(), queue.last_error().ToString());
  }
  if (Status f = failure.Get(); !f.ok() && result.ok()) result = f;
  if (!result.ok()) {
    log::Error("exporter: stage failed; uncommitted input is read again on restart",
               {{"sink", sink_name}, {"error", result}});
    return result;
  }
  return closed;
}

}  // namespace flamestream::exporter
