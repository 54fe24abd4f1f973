#include "flamestream/common/backoff.h"

#include <algorithm>
#include <cmath>

namespace flamestream {

std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int attempt) {
  const double base = static_cast<double>(policy.initial.count()) *
                      std::pow(policy.multiplier, std::clamp(attempt, 0, 30));
  return std::chrono::milliseconds(
      static_cast<int64_t>(std::min(base, static_cast<double>(policy.max.count()))));
}

std::chrono::milliseconds Backoff::Next() {
  const auto capped = static_cast<double>(BackoffDelay(policy_, attempt_).count());
  ++attempt_;
  std::uniform_real_distribution<double> dist(1.0 - policy_.jitter, 1.0 + policy_.jitter);
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(1.0, capped * dist(rng_))));
}

}  // namespace flamestream
