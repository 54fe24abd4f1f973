#include "replay_cmd.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <optional>
#include <thread>

#include "flamestream/batch/batch.h"
#include "flamestream/common/strings.h"
#include "flamestream/common/units.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/pprofutil/profile_io.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/stage/caught_up.h"
#include "interrupts.h"
#include "probe.h"
#include "up.h"

namespace flamestream::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using common::FormatDuration;

bool IsHex(std::string_view s) {
  return !s.empty() && s.size() % 2 == 0 &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// The stages a `--set key=value` goes to, by the key's first component.
Result<std::vector<std::string>> StagesOfKey(const std::string& kv) {
  const size_t eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) {
    return InvalidArgument("--set {}: expected key=value", kv);
  }
  const std::string key = kv.substr(0, eq);
  const std::string head = key.substr(0, key.find('.'));
  if (head == "symbolizer" || head == "correlator" || head == "exporter") {
    return std::vector<std::string>{head};
  }
  if (head == "kafka" || head == "log") {
    return std::vector<std::string>{"symbolizer", "correlator", "exporter"};
  }
  return InvalidArgument(
      "--set {}: the key must start with symbolizer., correlator., exporter. (that stage) or "
      "kafka., log. (every stage)",
      kv);
}

Result<std::vector<std::string>> ChooseSinks(const ReplayOptions& o) {
  std::vector<std::string> sinks;
  if (o.sinks.empty()) {
    sinks.emplace_back("file");
    if (!o.pyroscope.empty()) sinks.emplace_back("pyroscope");
    if (!o.otlp.empty()) sinks.emplace_back("otlp");
    return sinks;
  }
  for (const std::string& s : o.sinks) {
    for (const std::string& name : common::SplitNonEmpty(s, ',')) {
      if (name != "file" && name != "pyroscope" && name != "otlp") {
        return InvalidArgument("--sink {}: expected file, pyroscope or otlp", name);
      }
      if (name == "pyroscope" && o.pyroscope.empty()) {
        return InvalidArgument("--sink pyroscope needs --pyroscope URL");
      }
      if (name == "otlp" && o.otlp.empty()) {
        return InvalidArgument("--sink otlp needs --otlp ENDPOINT");
      }
      if (std::find(sinks.begin(), sinks.end(), name) == sinks.end()) sinks.push_back(name);
    }
  }
  return sinks;
}

// Samples of this epoch a topic received since the audit group last read it.
struct EpochCount {
  int64_t batches = 0;
  int64_t samples = 0;
};

// Reads `topic` with a persistent audit group (so each replay reads only what came since the
// previous one) to its end, counting the batches and samples stamped with `epoch`.
Result<EpochCount> CountEpoch(const std::string& brokers, const kafka::Properties& extra,
                              const std::string& topic, uint64_t epoch,
                              std::chrono::nanoseconds timeout, const Interrupts& interrupts) {
  kafka::ConsumerConfig cfg;
  cfg.properties = extra;
  cfg.properties["bootstrap.servers"] = brokers;
  cfg.group_id = "flamestream-replay-audit." + topic;
  cfg.topics = {topic};
  stage::CaughtUp caught_up(1s);
  cfg.on_assigned = [&caught_up](const kafka::TopicPartitions&, bool) { caught_up.OnAssigned(); };
  FS_ASSIGN_OR_RETURN(std::unique_ptr<kafka::Consumer> consumer, kafka::Consumer::Create(cfg));
  EpochCount count;
  std::map<std::pair<std::string, int32_t>, int64_t> next;  // offsets to commit
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (Clock::now() > deadline) {
      return DeadlineExceeded("counting {}: not at its end after {}", topic,
                              FormatDuration(timeout));
    }
    if (interrupts.count() > 0) return CancelledError("interrupted");
    FS_ASSIGN_OR_RETURN(std::optional<kafka::Message> msg, consumer->Poll(200ms));
    if (!msg) {
      if (caught_up.Reached(*consumer)) break;
      continue;
    }
    caught_up.OnRecord();
    next[{std::string(msg->topic()), msg->partition()}] = msg->offset() + 1;
    v1::SampleBatch batch;
    if (!batch.ParseFromArray(msg->value().data(), static_cast<int>(msg->value().size()))) {
      continue;  // the stage dead-letters what it cannot read; nothing of ours
    }
    uint64_t e = batch.symbol_epoch();
    if (auto h = msg->header("symbol-epoch"); e == 0 && h) {
      Result<uint64_t> parsed = common::ParseInt<uint64_t>(*h);
      if (parsed.ok()) e = *parsed;
    }
    if (e != epoch) continue;
    ++count.batches;
    count.samples += batch::SampleCount(batch);
  }
  kafka::TopicPartitions offsets;
  for (const auto& [tp, offset] : next) offsets.push_back({tp.first, tp.second, offset});
  FS_RETURN_IF_ERROR(consumer->Commit(offsets));
  FS_RETURN_IF_ERROR(consumer->Close());
  return count;
}

// The file sink's windows written at `epoch` under `out`: files, and samples in them.
struct FileCount {
  int64_t files = 0;
  int64_t samples = 0;
  int64_t other_epoch_files = 0;
};

FileCount CountFiles(const fs::path& out, uint64_t epoch) {
  FileCount c;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(out, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file() || !it->path().string().ends_with(".pb.gz")) continue;
    Result<std::string> bytes = pprofutil::ReadFile(it->path().string());
    if (!bytes.ok()) continue;
    Result<perftools::profiles::Profile> p = profile::DecodePprof(*bytes);
    if (!p.ok()) continue;
    if (profile::EpochOf(*p) != epoch) {
      ++c.other_epoch_files;
      continue;
    }
    ++c.files;
    Result<std::vector<profile::FoldedStack>> stacks = profile::Fold(*p);
    if (!stacks.ok()) continue;
    for (const profile::FoldedStack& s : *stacks) c.samples += s.count;
  }
  return c;
}

}  // namespace

Result<std::vector<StageSpec>> BuildReplayStages(const ReplayOptions& o, uint64_t epoch,
                                                 int64_t now_ns) {
  const StageKeys& k = kStageKeys;
  if (o.from.empty()) return InvalidArgument("--from is required (now, -1h, RFC 3339, Unix time)");
  Result<int64_t> from = common::ParseTimestampNs(o.from, now_ns);
  if (!from.ok()) return InvalidArgument("--from {}: {}", o.from, from.error().message());
  Result<int64_t> to = common::ParseTimestampNs(o.to, now_ns);
  if (!to.ok()) return InvalidArgument("--to {}: {}", o.to, to.error().message());
  if (*to < *from) return InvalidArgument("--to {} is before --from {}", o.to, o.from);
  for (const std::string& id : o.build_ids) {
    if (!IsHex(id)) return InvalidArgument("--build-id {}: expected an even number of hex digits", id);
  }
  if (o.brokers.empty()) return InvalidArgument("--brokers: empty");
  if (o.window.count() <= 0) return InvalidArgument("--window: must be positive");
  FS_ASSIGN_OR_RETURN(std::vector<std::string> sinks, ChooseSinks(o));
  FS_ASSIGN_OR_RETURN(std::vector<std::string> debug_dirs, SymbolizerDebugDirs(o.debug_dirs));

  std::map<std::string, std::vector<std::string>> user_sets;
  for (const std::string& kv : o.sets) {
    FS_ASSIGN_OR_RETURN(std::vector<std::string> stages, StagesOfKey(kv));
    for (const std::string& s : stages) user_sets[s].push_back(kv);
  }

  const fs::path out = fs::absolute(o.out).lexically_normal();
  const fs::path logs = out / "logs";
  std::vector<StageSpec> stages;
  const auto stage = [&](const std::string& name,
                         std::vector<std::string> sets) -> Result<StageSpec> {
    FS_ASSIGN_OR_RETURN(std::string bin, FindStageBinary("flamestream-" + name, o.bin_dir));
    FS_ASSIGN_OR_RETURN(int admin_port, PickFreePort());
    StageSpec s{.name = name,
                .binary = bin,
                .args = {k.admin_listen_flag, fmt::format("127.0.0.1:{}", admin_port)},
                .ready = {.kind = ReadyKind::kNone},
                .metrics_port = admin_port,
                .log_file = (logs / ("replay-" + name + ".log")).string(),
                .run_to_completion = true};
    sets.insert(sets.begin(), SetArg(k.kafka_bootstrap, o.brokers));
    for (const std::string& kv : user_sets[name]) sets.push_back(kv);
    for (std::string& kv : sets) {
      s.args.emplace_back("--set");
      s.args.push_back(std::move(kv));
    }
    return s;
  };

  std::vector<std::string> symbolizer_sets = {
      SetArg(k.symbolizer_replay, "true"), SetArg(k.symbolizer_replay_from, std::to_string(*from)),
      SetArg(k.symbolizer_replay_to, std::to_string(*to)),
      SetArg(k.symbolizer_replay_epoch, std::to_string(epoch))};
  if (!o.build_ids.empty()) {
    std::vector<std::string> ids;
    for (const std::string& id : o.build_ids) ids.push_back(common::ToLower(id));
    symbolizer_sets.push_back(SetArg(k.symbolizer_replay_build_ids, common::Join(ids, ",")));
  }
  if (!o.redis.empty()) symbolizer_sets.push_back(SetArg(k.symbolizer_redis, o.redis));
  if (!debug_dirs.empty()) {
    symbolizer_sets.push_back(SetArg(k.symbolizer_debug_dirs, common::Join(debug_dirs, ",")));
  }
  FS_ASSIGN_OR_RETURN(StageSpec symbolizer, stage("symbolizer", std::move(symbolizer_sets)));
  stages.push_back(std::move(symbolizer));

  FS_ASSIGN_OR_RETURN(StageSpec correlator,
                      stage("correlator", {SetArg(k.correlator_replay, "true")}));
  stages.push_back(std::move(correlator));

  std::vector<std::string> exporter_sets = {SetArg(k.exporter_replay, "true"),
                                            SetArg(k.exporter_sinks, common::Join(sinks, ",")),
                                            SetArg(k.exporter_file_out, out.string()),
                                            SetArg(k.exporter_window, FormatDuration(o.window))};
  if (!o.pyroscope.empty()) exporter_sets.push_back(SetArg(k.exporter_pyroscope_url, o.pyroscope));
  if (!o.otlp.empty()) exporter_sets.push_back(SetArg(k.exporter_otlp_endpoint, o.otlp));
  FS_ASSIGN_OR_RETURN(StageSpec exporter, stage("exporter", std::move(exporter_sets)));
  stages.push_back(std::move(exporter));
  return stages;
}

namespace {

struct StageRun {
  std::string exit;  // "exit 0", "exit 1", "signal 9", "interrupted", "timeout"
  double seconds = 0;
  MetricSums metrics;  // the last scrape before it exited
};

// Starts one replay stage under the supervisor and waits until it finished by itself (or
// failed for good, was interrupted, or ran past `timeout`).
StageRun RunStage(const StageSpec& spec, std::chrono::nanoseconds timeout,
                  const Interrupts& interrupts, std::ostream& err) {
  StageRun run;
  SupervisorOptions sup_opts{
      .backoff_initial = 1s,
      .stop_timeout = 60s,
      .on_event = [&err](const Event& e) {
        if (e.kind == Event::Kind::kReady) return;
        err << "flamestream replay: " << e.stage << " " << EventKindName(e.kind);
        if (!e.detail.empty()) err << " (" << e.detail << ")";
        err << "\n" << std::flush;
      },
      .abort = [&interrupts] { return interrupts.count() >= 2; },
  };
  Supervisor sup({spec}, sup_opts);
  const auto started = Clock::now();
  if (Status s = sup.Start(); !s.ok()) {
    err << "flamestream replay: " << s.message() << "\n";
    run.exit = "not started";
    return run;
  }
  auto next_scrape = Clock::now();
  while (true) {
    sup.Poll();
    const StageState st = sup.Snapshot().front();
    if (st.done || st.failed) {
      run.exit = st.last_exit;
      break;
    }
    if (interrupts.count() > 0 || Clock::now() - started > timeout) {
      run.exit = interrupts.count() > 0 ? "interrupted" : "timeout";
      err << "flamestream replay: " << spec.name
          << (interrupts.count() > 0 ? std::string(": interrupted; stopping it\n")
                                   : fmt::format(": still running after {}; stopping it\n",
                                                 FormatDuration(timeout)));
      (void)sup.Drain();
      break;
    }
    // What it read settles before it stops (it stops only after its input was idle).
    if (Clock::now() >= next_scrape && st.pid > 0) {
      if (Result<MetricSums> m = ScrapeMetrics(spec.metrics_port, 300ms); m.ok()) {
        run.metrics = std::move(*m);
      }
      next_scrape = Clock::now() + 250ms;
    }
    std::this_thread::sleep_for(50ms);
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return run;
}

}  // namespace

int RunReplay(const ReplayOptions& o, std::ostream& out, std::ostream& err) {
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const uint64_t epoch = o.epoch != 0 ? o.epoch : static_cast<uint64_t>(now_ns / 1'000'000);
  Result<std::vector<StageSpec>> stages = BuildReplayStages(o, epoch, now_ns);
  if (!stages.ok()) {
    err << "flamestream replay: " << stages.error().message() << "\n";
    return 2;
  }
  const fs::path out_dir = fs::absolute(o.out).lexically_normal();
  std::error_code ec;
  fs::create_directories(out_dir / "logs", ec);
  if (ec) {
    err << "flamestream replay: --out " << o.out << ": cannot create " << (out_dir / "logs").string()
        << ": " << ec.message() << "\n";
    return 2;
  }
  kafka::Properties kafka_extra;
  for (const std::string& kv : o.sets) {
    if (kv.starts_with("kafka.")) {
      const size_t eq = kv.find('=');
      kafka_extra[kv.substr(6, eq - 6)] = kv.substr(eq + 1);
    }
  }
  const std::vector<std::string> sinks = *ChooseSinks(o);
  const bool file_sink = std::find(sinks.begin(), sinks.end(), "file") != sinks.end();
  if (sinks.size() > (file_sink ? 1u : 0u)) {
    err << "flamestream replay: note: Pyroscope and OTLP add what they receive; replay into a "
           "backend or tenant that lacks this range (backfill), or its samples count twice\n";
  }
  err << fmt::format("flamestream replay: epoch {}, Kafka {}, output {}, logs {}/logs/replay-*.log\n",
                     epoch, o.brokers, out_dir.string(), out_dir.string());

  Interrupts interrupts;
  std::vector<ReplayStageReport> reports;
  std::vector<std::string> ins;  // per stage: what it read, for the table
  // The count of what the previous stage wrote runs while the next stage works.
  struct Audit {
    size_t report;
    std::string topic;
    std::future<Result<EpochCount>> count;
  };
  std::optional<Audit> audit;
  int code = 0;
  const auto settle = [&] {
    if (!audit) return;
    Result<EpochCount> c = audit->count.get();
    ReplayStageReport& r = reports[audit->report];
    if (c.ok()) {
      r.samples_out = c->samples;
      err << fmt::format("flamestream replay: {} wrote {} samples in {} batches to {}\n", r.stage,
                         c->samples, c->batches, audit->topic);
    } else {
      err << "flamestream replay: cannot count " << audit->topic << ": " << c.error().message()
          << "\n";
    }
    audit.reset();
  };

  for (const StageSpec& spec : *stages) {
    StageRun run = RunStage(spec, o.stage_timeout, interrupts, err);
    settle();  // the previous stage's output count (its reader just finished)
    ReplayStageReport report{.stage = spec.name, .exit = run.exit, .seconds = run.seconds};
    const bool ok = run.exit == "exit 0";
    const MetricSums& m = run.metrics;
    std::string in;
    if (spec.name == "symbolizer") {
      in = fmt::format("{:.0f} raw batches", m.Get("fs_records_in_total").value_or(0));
      report.summary = fmt::format(
          "read {}; frames resolved {:.0f}, unresolved {:.0f}", in,
          m.Series("fs_symbolizer_frames_total", "outcome=\"resolved\""),
          m.Series("fs_symbolizer_frames_total", "outcome=\"unresolved\""));
    } else if (spec.name == "correlator") {
      in = reports.back().samples_out >= 0
               ? fmt::format("{} samples", reports.back().samples_out)
               : std::string("?");
      report.summary = fmt::format("read {} batches; samples matched to spans {:.0f}",
                                   m.Get("fs_records_in_total").value_or(0),
                                   m.Series("fs_correlator_samples_total", "result=\"matched\"") +
                                       m.Series("fs_correlator_samples_total", "result=\"direct\""));
    } else {
      std::vector<std::string> parts;
      for (const std::string& sink : sinks) {
        const std::string label = fmt::format("sink=\"{}\"", sink);
        const double aggregated = m.Series("fs_exporter_samples_aggregated_total", label);
        if (in.empty()) in = fmt::format("{:.0f} samples", aggregated);
        parts.push_back(fmt::format("{} sink: {:.0f} samples in, {:.0f} duplicates dropped", sink,
                                    aggregated,
                                    m.Series("fs_exporter_duplicate_samples_total", label)));
      }
      report.summary = fmt::format("{}", fmt::join(parts, "; "));
    }
    err << fmt::format("flamestream replay: {} {} in {:.1f}s: {}\n", spec.name, report.exit,
                       report.seconds, report.summary);
    if (const double skipped = m.Get("fs_records_skipped_total").value_or(0); skipped > 0) {
      err << fmt::format(
          "flamestream replay: LOST DATA: {} never read {:.0f} input records: the broker "
          "deleted them first (retention)\n",
          spec.name, skipped);
      code = 1;
    }
    ins.push_back(in);
    reports.push_back(std::move(report));
    if (!ok) {
      err << "flamestream replay: " << spec.name << " did not finish (" << run.exit << "); see "
          << spec.log_file << "\n";
      code = run.exit == "interrupted" ? 130 : 1;
      break;
    }
    if (spec.name != "exporter") {
      const std::string topic =
          kafka::topics::Replay(spec.name == "symbolizer" ? kafka::topics::kSamplesSymbolized
                                                          : kafka::topics::kSamplesCorrelated);
      audit = Audit{reports.size() - 1, topic,
                    std::async(std::launch::async, CountEpoch, o.brokers, kafka_extra, topic,
                               epoch, o.stage_timeout, std::cref(interrupts))};
    } else if (file_sink) {
      const FileCount fc = CountFiles(out_dir, epoch);
      reports.back().samples_out = fc.samples;
      err << fmt::format("flamestream replay: exporter wrote {} window files at epoch {} holding "
                         "{} samples ({} files of other epochs left as they were)\n",
                         fc.files, epoch, fc.samples, fc.other_epoch_files);
    }
  }
  settle();

  // Every sample a stage wrote reached the next one, and the file sink.
  for (size_t i = 1; code == 0 && i < reports.size(); ++i) {
    const int64_t before = reports[i - 1].samples_out;
    const int64_t after = reports[i].samples_out;
    if (before >= 0 && after >= 0 && before != after) {
      err << fmt::format("flamestream replay: {} wrote {} samples but {} wrote {}\n",
                         reports[i - 1].stage, before, reports[i].stage, after);
      code = 1;
    }
  }
  // The report on stdout: one line per stage.
  for (size_t i = 0; i < reports.size(); ++i) {
    const ReplayStageReport& r = reports[i];
    out << fmt::format("{:<10} {:<10} {:>6.1f}s  in: {}  out: {}\n", r.stage, r.exit, r.seconds,
                       ins[i],
                       r.samples_out >= 0 ? fmt::format("{} samples", r.samples_out)
                                          : std::string("?"));
  }
  out << std::flush;
  if (code == 0) {
    err << "flamestream replay: done; epoch " << epoch
        << (file_sink ? ", files in " + out_dir.string() : "") << "\n";
  }
  return code;
}

}  // namespace flamestream::cli
