#include "flamestream/sinks/sink.h"

#include <algorithm>
#include <cmath>

namespace flamestream::sinks {

bool IsRetryable(const Status& status) {
  switch (status.code()) {
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
    case StatusCode::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

Status HttpStatusToStatus(int http_status, std::string_view body) {
  if (http_status >= 200 && http_status < 300) return OkStatus();
  std::string snippet(body.substr(0, 512));
  if (http_status == 408 || http_status == 429 || http_status >= 500) {
    return Unavailable("HTTP {}: {}", http_status, snippet);
  }
  return FailedPrecondition("HTTP {}: {}", http_status, snippet);
}

std::chrono::milliseconds Backoff::Next() {
  const double base = static_cast<double>(policy_.initial.count()) *
                      std::pow(policy_.multiplier, std::min(attempt_, 30));
  ++attempt_;
  const double capped = std::min(base, static_cast<double>(policy_.max.count()));
  std::uniform_real_distribution<double> dist(1.0 - policy_.jitter, 1.0 + policy_.jitter);
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(1.0, capped * dist(rng_))));
}

std::vector<DeliveryQueue::Done> DeliveryQueue::Pump(std::chrono::steady_clock::time_point now) {
  std::vector<Done> done;
  while (!queue_.empty() && now >= next_) {
    Status st = sink_.Export(*queue_.front());
    ++head_attempts_;
    if (IsRetryable(st)) {
      ++retries_;
      last_error_ = st;
      next_ = now + backoff_.Next();
      break;
    }
    done.push_back({std::move(queue_.front()), std::move(st), head_attempts_});
    queue_.pop_front();
    head_attempts_ = 0;
    backoff_.Reset();
    next_ = {};
  }
  return done;
}

}  // namespace flamestream::sinks
