// flamestream-exporter: aggregates correlated samples into profiles and sends them to sinks.
#include "flamestream/log/log.h"
#include "flamestream/service/service.h"

namespace {

struct ExporterConfig {
  std::map<std::string, std::string> kafka;
  std::vector<std::string> sinks = {"file"};
  std::string out_dir = "./flamestream-out";
  std::chrono::nanoseconds window = std::chrono::seconds(10);

  void Declare(flamestream::config::Schema& s) {
    s.AddPassthrough("kafka", &kafka, "librdkafka properties, e.g. kafka.bootstrap.servers");
    s.Add("exporter.sinks", &sinks, "sinks to run: file, pyroscope, otlp", "--sink");
    s.Add("exporter.file.out", &out_dir, "output directory of the file sink", "--out");
    s.Add("exporter.window", &window, "aggregation window (aligned)", "--window");
  }
};

}  // namespace

int main(int argc, char** argv) {
  namespace service = flamestream::service;
  ExporterConfig cfg;
  return service::Main(
      argc, argv,
      {.name = "exporter",
       .summary = "aggregates correlated samples into profiles for Pyroscope, OTLP and pprof files",
       .declare = [&](flamestream::config::Schema& s) { cfg.Declare(s); },
       .run = [&](service::Context& ctx) -> flamestream::Status {
         ctx.set_ready(true);
         ctx.WaitForStop(std::chrono::hours(24 * 365));
         return flamestream::OkStatus();
       },
       .default_admin_listen = "127.0.0.1:9403"});
}
