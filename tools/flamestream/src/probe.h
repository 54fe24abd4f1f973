// Small network probes used by `flamestream up`: port availability, TCP and HTTP checks,
// and Prometheus /metrics scraping.
//
//   FS_RETURN_IF_ERROR(CheckPortFree("127.0.0.1", 9092, "--broker-port"));
//   FS_ASSIGN_OR_RETURN(MetricSums m, ScrapeMetrics(9404, 500ms));
//   double lag = m.Sum("fs_consumer_lag");
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "flamestream/common/status.h"

namespace flamestream::cli {

// FailedPrecondition naming `flag` when host:port cannot be bound (in use or not allowed).
Status CheckPortFree(const std::string& host, int port, std::string_view flag);
// A loopback port that was free a moment ago.
Result<int> PickFreePort();

bool TcpConnects(int port, std::chrono::milliseconds timeout);
// Status code of GET http://127.0.0.1:port/path, or an error when nothing answers.
Result<int> HttpGetStatus(int port, const std::string& path, std::chrono::milliseconds timeout);

// Sums of each metric family over all label sets (histograms: their _sum/_count/_bucket lines
// appear under those names).
struct MetricSums {
  std::map<std::string, double> sums;
  // Every line's value by its series text: `name{label="v",...}` (or just `name`).
  std::map<std::string, double> series;
  [[nodiscard]] std::optional<double> Get(const std::string& name) const;
  // Sum of the series of `name` whose label text contains `label` (e.g. `outcome="resolved"`).
  [[nodiscard]] double Series(const std::string& name, std::string_view label) const;
};
MetricSums ParseMetricsText(std::string_view text);
Result<MetricSums> ScrapeMetrics(int port, std::chrono::milliseconds timeout);

}  // namespace flamestream::cli
