// flamestream-exporter: aggregates correlated samples into profiles and sends them to sinks.
//
//   flamestream-exporter --sink file --out ./out --set kafka.bootstrap.servers=127.0.0.1:9092
//   flamestream-exporter --sink file --sink pyroscope --set exporter.pyroscope.url=http://p:4040
//   flamestream-exporter --replay --sink file --out ./out ...   # a replay's last stage, exits
//
// Each sink runs its own pipeline (consumer group flamestream-exporter-<sink>, offsets, lag
// metric) on its own thread, so a slow backend never holds back another.
#include <thread>

#include "exporter_stage.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/log/log.h"
#include "flamestream/service/service.h"
#include "flamestream/sinks/file_sink.h"
#include "flamestream/sinks/otlp_sink.h"
#include "flamestream/sinks/pyroscope_sink.h"
#include "flamestream_service_keys.h"

namespace {

namespace fs_sinks = flamestream::sinks;
namespace keys = flamestream::keys;

// exporter.<sink>.tls.{ca_file,cert_file,key_file,insecure_skip_verify}.
void DeclareTls(flamestream::config::Schema& s, const std::string& prefix,
                fs_sinks::TlsConfig* tls) {
  s.Add(prefix + ".ca_file", &tls->ca_file,
        "CA bundle (PEM) to verify the server; empty = system roots");
  s.Add(prefix + ".cert_file", &tls->cert_file, "client certificate (PEM) for mTLS, with key_file");
  s.Add(prefix + ".key_file", &tls->key_file, "client private key (PEM) for mTLS, with cert_file");
  s.Add(prefix + ".insecure_skip_verify", &tls->insecure_skip_verify,
        "do not verify the server certificate (development only)");
}

struct ExporterConfig {
  std::map<std::string, std::string> kafka;
  std::vector<std::string> sinks = {"file"};
  std::string topic = std::string(flamestream::kafka::topics::kSamplesCorrelated);
  std::chrono::nanoseconds window = std::chrono::seconds(10);
  std::chrono::nanoseconds lateness = std::chrono::seconds(10);
  std::chrono::nanoseconds idle_flush = std::chrono::seconds(15);
  std::chrono::nanoseconds max_clock_skew = std::chrono::seconds(60);
  int max_windows_per_batch = 64;
  std::chrono::nanoseconds retry_initial = std::chrono::milliseconds(200);
  std::chrono::nanoseconds retry_max = std::chrono::seconds(30);
  int max_pending_windows = 8;
  fs_sinks::FileSinkConfig file;
  std::string page_template;
  std::chrono::nanoseconds file_retention_max_age = std::chrono::hours(24 * 7);
  flamestream::config::Bytes file_retention_max_bytes{0};
  int labels_max_value_length = 1024;
  int labels_max_labels = 30;
  std::vector<std::string> labels_allow;
  std::vector<std::string> labels_deny;
  std::vector<std::string> path_rewrites;  // from=to
  fs_sinks::PyroscopeConfig pyroscope;
  std::vector<std::string> pyroscope_labels;  // k=v
  std::chrono::nanoseconds pyroscope_timeout = std::chrono::seconds(10);
  fs_sinks::OtlpConfig otlp;
  std::vector<std::string> otlp_headers;   // k=v
  std::vector<std::string> otlp_resource;  // k=v
  std::chrono::nanoseconds otlp_timeout = std::chrono::seconds(10);
  bool replay = false;

  [[nodiscard]] flamestream::profile::LabelLimits LabelLimits() const {
    return {.max_value_length = static_cast<size_t>(std::max(0, labels_max_value_length)),
            .max_labels = static_cast<size_t>(std::max(0, labels_max_labels))};
  }

  void Declare(flamestream::config::Schema& s) {
    s.AddPassthrough("kafka", &kafka, "librdkafka properties, e.g. kafka.bootstrap.servers");
    s.Add(keys::exporter::kSinks, &sinks, "sinks to run: file, pyroscope, otlp (repeatable)",
          "--sink");
    s.Add("exporter.topic", &topic, "input topic (the correlated topic or its .replay variant)",
          "--topic");
    s.Add(keys::exporter::kWindow, &window, "aggregation window (aligned)", "--window");
    s.Add("exporter.lateness", &lateness, "a window closes when event time passes its end by this");
    s.Add("exporter.idle_flush", &idle_flush, "close every window after this long without input");
    s.Add("exporter.max_clock_skew", &max_clock_skew,
          "samples further ahead of this clock go to the DLQ (they would close every window)");
    s.Add("exporter.max_windows_per_batch", &max_windows_per_batch,
          "a batch whose samples span more windows goes to the DLQ");
    s.Require(
        "exporter.max_windows_per_batch", [this] { return max_windows_per_batch >= 1; },
        "1 or more");
    s.Add("exporter.retry.initial", &retry_initial, "first retry delay (doubles, with jitter)");
    s.Add("exporter.retry.max", &retry_max, "longest retry delay");
    s.Add("exporter.max_pending_windows", &max_pending_windows,
          "pause input beyond this many undelivered windows");
    s.Add(keys::exporter::kFileOut, &file.out_dir, "output directory of the file sink", "--out");
    s.Add("exporter.file.views", &file.views, "write <service>.folded and <service>.html");
    s.Add("exporter.file.view_windows", &file.view_windows, "windows the folded/html views cover");
    s.Add("exporter.file.page_template", &page_template,
          "flame-graph page template (HTML with __FLAMESTREAM_DATA__); empty: "
          "share/flamestream/flamegraph.html under $FLAMESTREAM_SHARE_DIR or next to the binary, "
          "else the built-in page");
    s.Add("exporter.file.retention.max_age", &file_retention_max_age,
          "delete window files older than this (modification time); 0 = keep forever");
    s.Add("exporter.file.retention.max_bytes", &file_retention_max_bytes,
          "delete the oldest window files while all of them take more than this; 0 = unlimited");
    s.Add("exporter.labels.max_value_length", &labels_max_value_length,
          "longest series label value in bytes (longer: cut + '~' + 8-hex hash); 0 = no cap");
    s.Add("exporter.labels.max_labels", &labels_max_labels,
          "most labels per series, built-in ones included (extra configured labels beyond it "
          "are dropped); 0 = no cap");
    s.Add("exporter.labels.allow", &labels_allow,
          "send only these labels (service_name always); names: cluster, node, container_id, "
          "k8s_pod_uid, thread_name, span_id, trace_id, span_name; a trailing '*' matches a "
          "prefix; empty = all (repeatable)");
    s.Add("exporter.labels.deny", &labels_deny,
          "never send these labels (same names and patterns; wins over allow); removed series "
          "labels merge the series (repeatable)");
    s.Add("exporter.paths.rewrite", &path_rewrites,
          "from=to: rewrite source-file and binary paths starting with `from` ('*' = one path "
          "segment), e.g. /home/*/=/home/user/; the first matching rule applies (repeatable)");
    s.Check("exporter.labels.allow",
            [this] { return flamestream::profile::ValidateLabelPatterns(labels_allow, false); });
    s.Check("exporter.labels.deny",
            [this] { return flamestream::profile::ValidateLabelPatterns(labels_deny, true); });
    s.Check("exporter.paths.rewrite", [this] {
      for (const std::string& rule : path_rewrites) {
        FS_RETURN_IF_ERROR(flamestream::profile::ParsePathRule(rule).status());
      }
      return flamestream::OkStatus();
    });
    s.Add(keys::exporter::kPyroscopeUrl, &pyroscope.url, "Pyroscope/Phlare base URL");
    s.Add("exporter.pyroscope.tenant", &pyroscope.tenant, "X-Scope-OrgID");
    s.Add("exporter.pyroscope.basic_user", &pyroscope.basic_user, "basic auth user");
    s.Add("exporter.pyroscope.basic_password", &pyroscope.basic_password, "basic auth password");
    s.Add("exporter.pyroscope.bearer_token", &pyroscope.bearer_token, "bearer token");
    s.Add("exporter.pyroscope.labels", &pyroscope_labels, "extra series labels k=v");
    s.Add("exporter.pyroscope.span_name", &pyroscope.span_name, "send span_name sample labels");
    DeclareTls(s, "exporter.pyroscope.tls", &pyroscope.tls);
    s.Add("exporter.pyroscope.timeout", &pyroscope_timeout, "request timeout");
    s.Add("exporter.pyroscope.max_series_per_request", &pyroscope.max_series_per_request,
          "series per Push");
    s.AddChoice("exporter.otlp.protocol", &otlp.protocol, {"grpc", "http"}, "OTLP transport", "");
    s.Add(keys::exporter::kOtlpEndpoint, &otlp.endpoint, "gRPC host:port or HTTP base URL");
    s.Add("exporter.otlp.headers", &otlp_headers, "request headers k=v");
    s.Add("exporter.otlp.tls.enabled", &otlp.tls.enabled,
          "gRPC over TLS (HTTP: use an https:// endpoint)");
    DeclareTls(s, "exporter.otlp.tls", &otlp.tls);
    s.Add("exporter.otlp.gzip", &otlp.gzip, "gzip HTTP bodies");
    s.Add("exporter.otlp.resource_attributes", &otlp_resource, "extra resource attributes k=v");
    s.Add("exporter.otlp.timeout", &otlp_timeout, "request timeout");
    s.Add(keys::exporter::kReplay, &replay,
          "replay mode: read <topic>.replay in groups flamestream-exporter-replay-<sink>, "
          "deliver every window and exit once caught up (ARCHITECTURE.md, Replay)",
          "--replay");
  }
};

flamestream::Result<std::map<std::string, std::string>> ParsePairs(
    const std::vector<std::string>& items, const std::string& key) {
  std::map<std::string, std::string> out;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return flamestream::InvalidArgument("{}: expected k=v, got {}", key, item);
    }
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

flamestream::Result<std::unique_ptr<fs_sinks::Sink>> MakeSink(const std::string& name,
                                                              ExporterConfig& cfg) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  if (name == "file") {
    std::string source;
    FS_ASSIGN_OR_RETURN(cfg.file.page_template,
                        fs_sinks::LoadPageTemplate(cfg.page_template, &source));
    flamestream::log::Info("file sink: flame-graph page template", {{"source", source}});
    cfg.file.retention.max_age =
        std::chrono::duration_cast<std::chrono::seconds>(cfg.file_retention_max_age);
    cfg.file.retention.max_bytes = cfg.file_retention_max_bytes.value;
    return std::unique_ptr<fs_sinks::Sink>(new fs_sinks::FileSink(cfg.file));
  }
  if (name == "pyroscope") {
    FS_ASSIGN_OR_RETURN(cfg.pyroscope.labels,
                        ParsePairs(cfg.pyroscope_labels, "exporter.pyroscope.labels"));
    cfg.pyroscope.timeout = duration_cast<milliseconds>(cfg.pyroscope_timeout);
    cfg.pyroscope.label_limits = cfg.LabelLimits();
    return std::unique_ptr<fs_sinks::Sink>(new fs_sinks::PyroscopeSink(cfg.pyroscope));
  }
  if (name == "otlp") {
    FS_ASSIGN_OR_RETURN(cfg.otlp.headers, ParsePairs(cfg.otlp_headers, "exporter.otlp.headers"));
    FS_ASSIGN_OR_RETURN(cfg.otlp.resource_attributes,
                        ParsePairs(cfg.otlp_resource, "exporter.otlp.resource_attributes"));
    cfg.otlp.timeout = duration_cast<milliseconds>(cfg.otlp_timeout);
    return std::unique_ptr<fs_sinks::Sink>(new fs_sinks::OtlpSink(cfg.otlp));
  }
  return flamestream::InvalidArgument("exporter.sinks: unknown sink {} (file, pyroscope, otlp)",
                                      name);
}

flamestream::Status Run(ExporterConfig& cfg, flamestream::service::Context& ctx) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  std::vector<std::unique_ptr<flamestream::exporter::ExporterStage>> stages;
  flamestream::profile::PrivacyPolicy privacy{.allow = cfg.labels_allow, .deny = cfg.labels_deny};
  for (const std::string& rule : cfg.path_rewrites) {
    FS_ASSIGN_OR_RETURN(flamestream::profile::PathRule r,
                        flamestream::profile::ParsePathRule(rule));
    privacy.paths.push_back(std::move(r));
  }
  std::vector<std::string> seen;
  for (const std::string& name : cfg.sinks) {
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) continue;
    seen.push_back(name);
    FS_ASSIGN_OR_RETURN(std::unique_ptr<fs_sinks::Sink> sink, MakeSink(name, cfg));
    flamestream::exporter::StageConfig sc{
        .kafka = cfg.kafka,
        .topic = cfg.topic,
        .window = cfg.window,
        .lateness = cfg.lateness,
        .idle_flush = cfg.idle_flush,
        .max_clock_skew = cfg.max_clock_skew,
        .max_windows_per_batch = cfg.max_windows_per_batch,
        .max_pending_windows = static_cast<size_t>(std::max(1, cfg.max_pending_windows)),
        .retry = {.initial = duration_cast<milliseconds>(cfg.retry_initial),
                  .max = duration_cast<milliseconds>(cfg.retry_max)},
        .label_limits = cfg.LabelLimits(),
        .privacy = privacy};
    if (cfg.replay) {
      if (!sc.topic.ends_with(flamestream::kafka::topics::kReplaySuffix)) {
        sc.topic = flamestream::kafka::topics::Replay(sc.topic);
      }
      sc.group_prefix = "flamestream-exporter-replay-";
      sc.stop_when_caught_up = true;
    }
    stages.push_back(
        std::make_unique<flamestream::exporter::ExporterStage>(sc, std::move(sink), ctx.metrics));
  }
  std::vector<flamestream::Status> results(stages.size());
  std::vector<std::jthread> threads;
  std::stop_source local;  // one failing stage stops the others
  for (size_t i = 0; i < stages.size(); ++i) {
    threads.emplace_back([&, i] {
      std::stop_callback forward(ctx.stop, [&] { local.request_stop(); });
      results[i] = stages[i]->Run(local.get_token());
      if (!results[i].ok()) local.request_stop();
    });
  }
  ctx.set_ready(true);
  threads.clear();  // joins
  for (const flamestream::Status& st : results) FS_RETURN_IF_ERROR(st);
  return flamestream::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  namespace service = flamestream::service;
  ExporterConfig cfg;
  return service::Main(
      argc, argv,
      {.name = "exporter",
       .summary = "aggregates correlated samples into profiles for Pyroscope, OTLP and pprof files",
       .declare = [&](flamestream::config::Schema& s) { cfg.Declare(s); },
       .run = [&](service::Context& ctx) { return Run(cfg, ctx); },
       .default_admin_listen = "127.0.0.1:9403"});
}
