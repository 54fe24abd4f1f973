#include "exporter_stage.h"

#include <algorithm>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "flamestream/batch/batch.h"
#include "flamestream/common/clock.h"
#include "flamestream/common/strings.h"
#include "flamestream/kafka/ack_tracker.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/dlq.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/log/log.h"
#include "flamestream/profile/aggregator.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/stage/loop.h"
#include "sample_times.h"
#include "window_dlq.h"

namespace flamestream::exporter {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

ExporterStage::ExporterStage(StageConfig config, std::unique_ptr<sinks::Sink> sink,
                             obs::Registry& metrics)
    : config_(std::move(config)), sink_(std::move(sink)), metrics_(metrics) {}

ExporterStage::~ExporterStage() = default;

namespace {

// The exporter on the shared stage loop: each record is decoded, guarded against clocks far
// ahead, aggregated into windows and held (Loop::Hold) once per window it has samples in;
// each hold is released when that window is delivered or dead-lettered, so the record's offset
// commits only then.
class ExporterHandler final : public stage::Handler {
 public:
  ExporterHandler(const StageConfig& config, sinks::Sink& sink, obs::Registry& metrics)
      : config_(config),
        sink_(sink),
        sink_name_(sink.name()),
        metrics_(metrics),
        labels_{{"sink", sink_name_}},
        records_in_(metrics.Counter("fs_exporter_records_in_total", "records consumed", labels_)),
        samples_in_(metrics.Counter("fs_exporter_samples_aggregated_total",
                                    "samples aggregated into windows", labels_)),
        duplicates_(metrics.Counter("fs_exporter_duplicate_samples_total",
                                    "samples dropped as duplicates (batch id)", labels_)),
        windows_ok_(metrics.Counter("fs_exporter_windows_delivered_total",
                                    "windows acknowledged by the sink", labels_)),
        windows_dlq_(metrics.Counter("fs_exporter_windows_dead_lettered_total",
                                     "windows refused permanently (to the DLQ)", labels_)),
        series_dlq_(metrics.Counter(
            "fs_exporter_series_dead_lettered_total",
            "series refused permanently while the rest of their window was delivered (to the DLQ)",
            labels_)),
        retries_(metrics.Counter("fs_exporter_retries_total", "retryable sink failures", labels_)),
        dlq_records_(metrics.Counter("fs_exporter_dlq_records_total",
                                     "undecodable input records dead-lettered", labels_)),
        pending_(metrics.Gauge("fs_exporter_pending_windows", "closed windows waiting for the sink",
                               labels_)),
        paused_gauge_(metrics.Gauge("fs_exporter_paused", "1 while input is paused", labels_)),
        future_samples_(metrics.Counter(
            "fs_exporter_future_samples_total",
            "samples beyond now + exporter.max_clock_skew, sent to the DLQ", labels_)),
        guard_({.max_clock_skew = config.max_clock_skew,
                .window = config.window,
                .max_windows_per_batch = config.max_windows_per_batch}),
        agg_({.window = config.window,
              .labels = sink.labels(),
              .granularity = sink.granularity(),
              .label_limits = config.label_limits,
              .privacy = config.privacy}),
        queue_(sink, config.retry) {
    agg_.set_new_series_hook([this](profile::Window& w, uint32_t s) { sink_.OnNewSeries(w, s); });
  }

  Status Record(stage::Loop& loop, const kafka::Message& in) override {
    if (window_dlq_ == nullptr)
      window_dlq_ = std::make_unique<WindowDlq>(loop.producer(), sink_name_);
    last_input_ = Clock::now();
    records_in_.Inc();
    v1::SampleBatch batch;
    if (!batch.ParseFromArray(in.value().data(), static_cast<int>(in.value().size()))) {
      dlq_records_.Inc();
      return DataLoss("not a flamestream.v1.SampleBatch");
    }
    Status valid = batch::Validate(batch);
    if (valid.ok() && batch.stage() != v1::STAGE_CORRELATED &&
        batch.stage() != v1::STAGE_SYMBOLIZED) {
      valid = InvalidArgument("batch stage {} is not symbolized/correlated",
                              static_cast<int>(batch.stage()));
    }
    if (!valid.ok()) {
      dlq_records_.Inc();
      return valid;
    }
    Result<GuardOutcome> guarded = guard_.Apply(batch, UnixNowNs());
    if (!guarded.ok()) {
      dlq_records_.Inc();
      return guarded.error();
    }
    if (auto epoch = in.header(kafka::topics::kHeaderSymbolEpoch);
        epoch && batch.symbol_epoch() == 0) {
      if (Result<uint64_t> e = common::ParseInt<uint64_t>(*epoch); e.ok())
        batch.set_symbol_epoch(*e);
    }
    profile::AddResult r = agg_.Add(batch);
    samples_in_.Inc(static_cast<uint64_t>(r.added));
    duplicates_.Inc(static_cast<uint64_t>(r.duplicates));
    if (guarded->future > 0) {
      // A DLQ record of the samples from the future counts as one more output of the input.
      future_samples_.Inc(static_cast<uint64_t>(guarded->future));
      dlq_records_.Inc();
      log::Warn("exporter: samples from the future sent to the DLQ",
                {{"sink", sink_name_}, {"reason", guarded->reason}});
      FS_RETURN_IF_ERROR(loop.DeadLetter(in, OutOfRange("{}", guarded->reason)));
    }
    if (!r.windows.empty()) {
      auto record = std::make_shared<const InputRecord>(InputRecord::Of(in));
      for (int64_t w : r.windows) {
        (void)loop.Hold(in);
        window_inputs_[w].push_back(record);
      }
    }
    CloseWindows(agg_.max_event_time_ns() - config_.lateness.count());
    return OkStatus();
  }

  void Tick(stage::Loop& loop) override {
    if (loop.paused()) {
      last_input_ = Clock::now();  // not idle, just not reading: closing now would split windows
    } else if (Clock::now() - last_input_ > config_.idle_flush && agg_.open_windows() > 0) {
      CloseWindows(std::numeric_limits<int64_t>::max());
    }
    Pump(loop);
    const bool paused = WantsPause();
    if (paused != was_paused_) {
      was_paused_ = paused;
      paused_gauge_.Set(paused ? 1 : 0);
      log::Info(
          paused ? "exporter: sink behind, pausing input" : "exporter: sink caught up, resuming",
          {{"sink", sink_name_}, {"pending_windows", static_cast<unsigned long>(queue_.size())}});
    }
  }

  void Drain(stage::Loop& loop) override {
    // Deliver every open window (bounded); what stays undelivered is rebuilt from the
    // uncommitted input by the next run.
    CloseWindows(std::numeric_limits<int64_t>::max());
    const auto deadline = Clock::now() + config_.drain_timeout;
    while (!queue_.empty() && Clock::now() < deadline) {
      Pump(loop);
      if (!queue_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (queue_.empty()) return;
    log::Warn("exporter: undelivered windows left for the next run",
              {{"sink", sink_name_},
               {"windows", static_cast<unsigned long>(queue_.size())},
               {"error", queue_.last_error()}});
    if (config_.stop_when_caught_up) {
      // A replay that did not write everything has not done its job.
      loop.Fail(Unavailable("exporter {}: {} windows undelivered after draining: {}", sink_name_,
                            queue_.size(), queue_.last_error().ToString()));
    }
  }

  [[nodiscard]] bool WantsPause() const override {
    return queue_.backing_off() || queue_.size() >= config_.max_pending_windows;
  }

 private:
  // The records a window was built from, kept until it is delivered (or dead-lettered).
  using InputRef = std::shared_ptr<const InputRecord>;

  static void Release(stage::Loop& loop, const InputRecord& in) {
    loop.Release({{in.topic, in.partition, in.offset}});
  }

  void CloseWindows(int64_t watermark) {
    for (std::unique_ptr<profile::Window>& w : watermark == std::numeric_limits<int64_t>::max()
                                                   ? agg_.TakeAll()
                                                   : agg_.TakeClosed(watermark)) {
      // By window object: a late record may open a new window with the same start while the
      // closed one waits for the sink, and must not be acknowledged with it.
      queued_inputs_[w.get()] = std::move(window_inputs_[w->start_ns]);
      window_inputs_.erase(w->start_ns);
      queue_.Push(std::move(w));
    }
  }

  void Pump(stage::Loop& loop) {
    for (sinks::DeliveryQueue::Done& d : queue_.Pump(Clock::now())) Finish(loop, d);
    SyncCounters();
    if (const uint64_t retried = queue_.retries() - seen_retries_; retried > 0) {
      obs::AddGrowth(retries_, queue_.retries(), seen_retries_);
      // A sink that is down says why, at most every 10 s (the counter has every attempt).
      if (const auto now = Clock::now(); now >= next_retry_log_) {
        log::Warn("exporter: sink unavailable, retrying (input pauses while windows wait)",
                  {{"sink", sink_name_},
                   {"retries", static_cast<unsigned long long>(retried)},
                   {"pending_windows", static_cast<unsigned long>(queue_.size())},
                   {"error", queue_.last_error()}});
        next_retry_log_ = now + std::chrono::seconds(10);
      }
    }
    pending_.Set(static_cast<double>(queue_.size()));
  }

  void Finish(stage::Loop& loop, sinks::DeliveryQueue::Done& done) {
    const int64_t start = done.window->start_ns;
    auto node = queued_inputs_.extract(done.window.get());
    std::vector<InputRef> inputs =
        node.empty() ? std::vector<InputRef>{} : std::move(node.mapped());
    if (done.status.ok() && done.failed_series.empty()) {
      windows_ok_.Inc();
      for (const InputRef& in : inputs) Release(loop, *in);
      return;
    }
    if (done.status.ok()) {
      // Delivered except some series refused for good: only their samples go to the DLQ. An
      // input is released once each failure's DLQ record of it is (or it had no sample in
      // those series).
      windows_ok_.Inc();
      size_t refused = 0;
      for (const sinks::SeriesFailure& f : done.failed_series) refused += f.series.size();
      series_dlq_.Inc(refused);
      log::Error("exporter: sink refused series of a window, dead-lettering their samples",
                 {{"sink", sink_name_},
                  {"window_start", static_cast<long long>(start)},
                  {"series", static_cast<unsigned long>(refused)},
                  {"error", done.failed_series.front().status}});
      struct Pending {
        std::mutex mu;
        std::map<const InputRecord*, size_t> left;
      };
      auto pending = std::make_shared<Pending>();
      for (const InputRef& in : inputs) pending->left[in.get()] = done.failed_series.size();
      auto on_delivered = [pending, &loop](const InputRecord& in) {
        std::lock_guard lock(pending->mu);
        auto it = pending->left.find(&in);
        if (it == pending->left.end() || --it->second > 0) return;
        pending->left.erase(it);
        Release(loop, in);
      };
      for (const sinks::SeriesFailure& f : done.failed_series) {
        const SeriesSelection only{.window = done.window.get(), .series = f.series};
        Status st = window_dlq_->Write(inputs, start, config_.window.count(), f.status, f.response,
                                       on_delivered, &only);
        if (!st.ok()) loop.Fail(st.WithContext("DLQ produce"));
      }
      return;
    }
    // Permanent refusal (4xx): the input records that made the window go to the DLQ (cut to
    // the window, with the response), so they can be re-driven; their offsets are committed
    // once the DLQ has them.
    windows_dlq_.Inc();
    log::Error("exporter: sink refused window, dead-lettering its input records",
               {{"sink", sink_name_},
                {"window_start", static_cast<long long>(start)},
                {"records", static_cast<unsigned long>(inputs.size())},
                {"error", done.status}});
    Status st =
        window_dlq_->Write(inputs, start, config_.window.count(), done.status, done.response,
                           [&loop](const InputRecord& in) { Release(loop, in); });
    if (!st.ok()) loop.Fail(st.WithContext("DLQ produce"));
  }

  // Counters kept by the aggregator (label sanitizing) and the sink, published as deltas.
  void SyncCounters() {
    auto publish = [&](const std::string& name, const std::string& help, obs::Labels l,
                       uint64_t value) {
      std::string key = name;
      for (const auto& [k, v] : l) key.append("\x1f").append(k).append("=").append(v);
      uint64_t& seen = published_[key];
      if (value <= seen) return;
      l.insert(l.begin(), {"sink", sink_name_});
      obs::AddGrowth(metrics_.Counter(name, help, l), value, seen);
    };
    for (size_t r = 0; r < profile::kLabelReasons; ++r) {
      const auto reason = static_cast<profile::LabelReason>(r);
      publish("fs_exporter_labels_sanitized_total",
              "series labels changed by sanitizing, by reason",
              {{"reason", std::string(profile::LabelReasonName(reason))}, {"source", "series"}},
              agg_.label_sanitizer().count(reason));
    }
    for (const sinks::SinkCounter& c : sink_.Counters()) {
      obs::Labels l(c.labels.begin(), c.labels.end());
      if (c.name == "fs_exporter_labels_sanitized_total") l.emplace_back("source", "config");
      publish(c.name, c.help, std::move(l), c.value);
    }
  }

  const StageConfig& config_;
  sinks::Sink& sink_;
  const std::string sink_name_;
  obs::Registry& metrics_;
  const obs::Labels labels_;
  obs::Counter& records_in_;
  obs::Counter& samples_in_;
  obs::Counter& duplicates_;
  obs::Counter& windows_ok_;
  obs::Counter& windows_dlq_;
  obs::Counter& series_dlq_;
  obs::Counter& retries_;
  obs::Counter& dlq_records_;
  obs::Gauge& pending_;
  obs::Gauge& paused_gauge_;
  obs::Counter& future_samples_;
  SampleTimeGuard guard_;
  profile::Aggregator agg_;
  sinks::DeliveryQueue queue_;
  std::unique_ptr<WindowDlq> window_dlq_;
  // Inputs per open window start, released when that window is done.
  std::map<int64_t, std::vector<InputRef>> window_inputs_;
  // Once closed, by window object.
  std::map<const profile::Window*, std::vector<InputRef>> queued_inputs_;
  std::map<std::string, uint64_t> published_;
  Clock::time_point last_input_ = Clock::now();
  uint64_t seen_retries_ = 0;
  Clock::time_point next_retry_log_{};
  bool was_paused_ = false;
};

}  // namespace

Status ExporterStage::Run(std::stop_token stop) {
  const std::string sink_name(sink_->name());
  FS_RETURN_IF_ERROR(sink_->Start());  // bad sink settings fail here, not window by window
  // stage "exporter-<sink>": the metrics every stage exposes (fs_records_in_total,
  // fs_consumer_lag), which `flamestream up` reads to drain a stage only once it has read
  // everything its upstream flushed.
  stage::LoopConfig loop{
      .stage = "exporter-" + sink_name,
      .group_id = config_.group_prefix + sink_name,
      .input_topics = {config_.topic},
      .kafka = config_.kafka,
      .commit_interval = std::chrono::milliseconds(200),
      .drain_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config_.drain_timeout),
      .stop_when_caught_up = config_.stop_when_caught_up,
      .caught_up_idle = config_.caught_up_idle};
  ExporterHandler handler(config_, *sink_, metrics_);
  log::Info("exporter: stage started",
            {{"sink", sink_name}, {"group", loop.group_id}, {"topic", config_.topic}});
  Status result = stage::RunLoop(
      loop, {.metrics = metrics_, .stop = std::move(stop), .set_ready = {}}, handler);
  log::Info("exporter: stage stopped", {{"sink", sink_name}});
  if (!result.ok()) {
    log::Error("exporter: stage failed; uncommitted input is read again on restart",
               {{"sink", sink_name}, {"error", result}});
  }
  return result;
}

}  // namespace flamestream::exporter
