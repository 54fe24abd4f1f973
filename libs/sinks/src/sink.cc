#include "flamestream/sinks/sink.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ctime>

#include "flamestream/common/strings.h"

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

Status ValidateTls(const TlsConfig& tls, std::string_view what) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return InvalidArgument("{}.tls: cert_file and key_file go together (mTLS)", what);
  }
  for (const auto& [key, path] :
       {std::pair<const char*, const std::string&>{"ca_file", tls.ca_file},
        {"cert_file", tls.cert_file},
        {"key_file", tls.key_file}}) {
    if (!path.empty() && ::access(path.c_str(), R_OK) != 0) {
      return ErrnoError(errno, fmt::format("{}.tls.{} {}", what, key, path));
    }
  }
  return OkStatus();
}

std::optional<std::chrono::milliseconds> ParseRetryAfter(
    std::string_view value, std::chrono::system_clock::time_point now) {
  const std::string v(common::Trim(value));
  if (v.empty()) return std::nullopt;
  if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    Result<int64_t> secs = common::ParseInt<int64_t>(v);
    if (!secs.ok() || *secs > 365LL * 24 * 3600) return std::chrono::hours(24 * 365);
    return std::chrono::seconds(*secs);
  }
  // IMF-fixdate, the only HTTP-date form senders may generate (RFC 9110 5.6.7).
  struct tm tm = {};
  const char* end = ::strptime(v.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const auto at = std::chrono::system_clock::from_time_t(::timegm(&tm));
  if (at <= now) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(at - now);
}

std::chrono::milliseconds RetryAfterDelay(std::chrono::milliseconds retry_after,
                                          const RetryPolicy& policy) {
  return std::clamp(retry_after, std::min(policy.initial, policy.max), policy.max);
}


std::vector<DeliveryQueue::Done> DeliveryQueue::Pump(std::chrono::steady_clock::time_point now) {
  std::vector<Done> done;
  while (!queue_.empty() && now >= next_) {
    Status st = sink_.Export(*queue_.front());
    ++head_attempts_;
    if (IsRetryable(st)) {
      ++retries_;
      last_error_ = st;
      std::chrono::milliseconds delay = backoff_.Next();
      if (std::optional<std::chrono::milliseconds> ra = sink_.last_response().retry_after) {
        delay = RetryAfterDelay(*ra, policy_);
      }
      // Counted from the answer, not from the start of the attempt (Retry-After means "after
      // this response"; a slow refusal must not eat into the wait).
      next_ = std::max(now, std::chrono::steady_clock::now()) + delay;
      break;
    }
    Response response = st.ok() ? Response{} : sink_.last_response();
    std::vector<SeriesFailure> failed = st.ok() ? sink_.failed_series() : std::vector<SeriesFailure>{};
    done.push_back({std::move(queue_.front()), std::move(st), head_attempts_, std::move(response),
                    std::move(failed)});
    queue_.pop_front();
    head_attempts_ = 0;
    backoff_.Reset();
    next_ = {};
  }
  return done;
}

}  // namespace flamestream::sinks
