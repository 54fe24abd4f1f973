// flamestream-correlator: joins symbolized samples with trace spans (see ARCHITECTURE.md).
#include "flamestream/log/log.h"
#include "flamestream/service/service.h"

namespace {

struct CorrelatorConfig {
  std::map<std::string, std::string> kafka;
  std::string group = "flamestream-correlator";
  std::chrono::nanoseconds lateness = std::chrono::seconds(30);

  void Declare(flamestream::config::Schema& s) {
    s.AddPassthrough("kafka", &kafka, "librdkafka properties, e.g. kafka.bootstrap.servers");
    s.Add("correlator.group", &group, "consumer group id", "--group");
    s.Add("correlator.lateness", &lateness,
          "how long a sample waits for its span (allowed lateness of the event-time join)",
          "--lateness");
  }
};

}  // namespace

int main(int argc, char** argv) {
  namespace service = flamestream::service;
  CorrelatorConfig cfg;
  return service::Main(
      argc, argv,
      {.name = "correlator",
       .summary = "joins symbolized samples with OpenTelemetry spans by node, process, thread, "
                  "time and trace ids",
       .declare = [&](flamestream::config::Schema& s) { cfg.Declare(s); },
       .run = [&](service::Context& ctx) -> flamestream::Status {
         ctx.set_ready(true);
         ctx.WaitForStop(std::chrono::hours(24 * 365));
         return flamestream::OkStatus();
       },
       .default_admin_listen = "127.0.0.1:9402"});
}
