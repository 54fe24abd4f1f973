#include "flamestream/stage/caught_up.h"

#include <algorithm>

namespace flamestream::stage {

bool AllAtEnd(const std::vector<kafka::PartitionLag>& lag) {
  return std::all_of(lag.begin(), lag.end(), [](const kafka::PartitionLag& p) {
    return p.lag == 0 || p.high_watermark == 0;
  });
}

bool CaughtUp::Reached(kafka::Consumer& consumer) const {
  if (!assigned_ || std::chrono::steady_clock::now() - last_record_ < idle_) {
    return false;
  }
  Result<std::vector<kafka::PartitionLag>> lag = consumer.Lag(std::chrono::seconds(5));
  return lag.ok() && AllAtEnd(*lag);
}

}  // namespace flamestream::stage
