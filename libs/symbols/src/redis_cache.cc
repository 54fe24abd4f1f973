#include "flamestream/common/clock.h"
#include "flamestream/symbols/redis_cache.h"

#include <absl/container/flat_hash_map.h>
#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <ctime>
#include <iterator>
#include <random>
#include <utility>

#include "flamestream/common/strings.h"
#include "flamestream/log/log.h"

namespace flamestream::symbols {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// Builds argv for redisAppendCommandArgv from views that outlive the call.
struct Argv {
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  void Add(std::string_view s) {
    ptrs.push_back(s.data());
    lens.push_back(s.size());
  }
  void Clear() {
    ptrs.clear();
    lens.clear();
  }
  // Queues the command in the context's output buffer (pipelining).
  int Append(redisContext* c) {
    return redisAppendCommandArgv(c, static_cast<int>(ptrs.size()), ptrs.data(), lens.data());
  }
  // Sends the command and waits for its reply; null on an I/O error (c->errstr says which).
  ReplyPtr Run(redisContext* c) {
    return ReplyPtr(static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(ptrs.size()), ptrs.data(), lens.data())));
  }
};

// Longest negative-entry reason stored.
constexpr size_t kMaxReasonBytes = 256;
// SCAN COUNT for DropBuildId: keys examined per call, so one call stays short.
constexpr int kScanCount = 1000;

// hiredis writes with write(2): on a connection the server reset, that raises SIGPIPE, which
// kills a process that has not ignored it. A library must not change process-wide signal
// dispositions, so SIGPIPE is blocked on this thread while talking to Redis, and one raised by
// us is consumed before unblocking.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~ScopedSigpipeBlock() {
    if (!blocked_) {
      return;
    }
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        timespec zero{};
        while (sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
  bool blocked_ = false;
};

timeval ToTimeval(nanoseconds d) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  us = std::max<int64_t>(us, 1000);
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}


// Shared keys need a build id: a path names different files on different hosts.
bool IsShareable(std::string_view module) {
  if (module.size() < 2 || module.size() > 256) {
    return false;
  }
  return std::all_of(module.begin(), module.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// SCAN MATCH treats * ? [ ] \ as glob syntax.
std::string GlobEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

void AppendLocationKey(std::string& out, std::string_view prefix, std::string_view build_id,
                       uint64_t offset) {
  out.append(prefix);
  out.append(build_id);
  out.push_back(':');
  fmt::format_to(std::back_inserter(out), "{:x}", offset);
}

std::string NegativeKey(std::string_view prefix, std::string_view build_id) {
  return fmt::format("{}{}:neg", prefix, build_id);
}

std::string DescribeAddress(const RedisAddress& a) {
  if (!a.unix_path.empty()) {
    return "unix://" + a.unix_path;
  }
  return fmt::format("{}:{}/{}", a.host, a.port, a.db);
}

}  // namespace

void RedisSymbolCache::ContextDeleter::operator()(redisContext* c) const { redisFree(c); }

Result<std::unique_ptr<RedisSymbolCache>> RedisSymbolCache::Create(RedisCacheConfig config) {
  FS_ASSIGN_OR_RETURN(RedisAddress address, ParseRedisAddress(config.address));
  if (config.key_prefix.empty()) {
    return InvalidArgument("redis cache: key_prefix must not be empty");
  }
  if (config.ttl < milliseconds(1) || config.negative_ttl < milliseconds(1)) {
    return InvalidArgument("redis cache: ttl and negative_ttl must be at least 1ms");
  }
  if (config.connect_timeout <= nanoseconds(0) || config.command_timeout <= nanoseconds(0)) {
    return InvalidArgument("redis cache: timeouts must be positive");
  }
  if (config.backoff_min <= nanoseconds(0) || config.backoff_max < config.backoff_min) {
    return InvalidArgument("redis cache: need 0 < backoff_min <= backoff_max");
  }
  if (config.max_keys_per_command == 0) {
    return InvalidArgument("redis cache: max_keys_per_command must be at least 1");
  }
  std::unique_ptr<RedisSymbolCache> cache(
      new RedisSymbolCache(std::move(config), std::move(address)));
  {
    std::lock_guard<std::mutex> lock(cache->mu_);
    ScopedSigpipeBlock no_sigpipe;
    (void)cache->ConnectLocked();  // a failure is logged; later calls retry
  }
  return cache;
}

RedisSymbolCache::RedisSymbolCache(RedisCacheConfig config, RedisAddress address)
    : config_(std::move(config)),
      address_(std::move(address)),
      backoff_({.initial = std::chrono::duration_cast<std::chrono::milliseconds>(config_.backoff_min),
                .max = std::chrono::duration_cast<std::chrono::milliseconds>(config_.backoff_max)},
               static_cast<uint32_t>(SteadyNowNs() ^ reinterpret_cast<uintptr_t>(this))) {}

RedisSymbolCache::~RedisSymbolCache() = default;

std::string RedisSymbolCache::KeyFor(const CacheKey& key) const {
  std::string out;
  AppendLocationKey(out, config_.key_prefix, key.module, key.offset);
  return out;
}

bool RedisSymbolCache::ConnectLocked() {
  const timeval connect_tv = ToTimeval(config_.connect_timeout);
  ContextPtr c(address_.unix_path.empty()
                   ? redisConnectWithTimeout(address_.host.c_str(), address_.port, connect_tv)
                   : redisConnectUnixWithTimeout(address_.unix_path.c_str(), connect_tv));
  if (c == nullptr) {
    FailLocked("connect", "cannot allocate a redis context");
    return false;
  }
  if (c->err != 0) {
    FailLocked("connect", c->errstr);
    return false;
  }
  if (redisSetTimeout(c.get(), ToTimeval(config_.command_timeout)) != REDIS_OK) {
    FailLocked("connect", "cannot set socket timeouts");
    return false;
  }
  (void)redisEnableKeepAlive(c.get());
  // AUTH and SELECT, when configured.
  std::vector<std::vector<std::string>> setup;
  if (!address_.password.empty()) {
    if (address_.username.empty()) {
      setup.push_back({"AUTH", address_.password});
    } else {
      setup.push_back({"AUTH", address_.username, address_.password});
    }
  }
  if (address_.db != 0) {
    setup.push_back({"SELECT", std::to_string(address_.db)});
  }
  for (const auto& cmd : setup) {
    Argv argv;
    for (const std::string& s : cmd) {
      argv.Add(s);
    }
    ReplyPtr reply = argv.Run(c.get());
    if (reply == nullptr) {
      FailLocked(cmd[0], c->errstr);
      return false;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      FailLocked(cmd[0], std::string_view(reply->str, reply->len));
      return false;
    }
  }
  ctx_ = std::move(c);
  backoff_.Reset();
  logged_down_ = false;
  up_.store(true, std::memory_order_relaxed);
  if (ever_connected_) {
    reconnects_.fetch_add(1, std::memory_order_relaxed);
    log::Info("redis symbol cache reconnected", {{"address", DescribeAddress(address_)}});
  } else {
    log::Info("redis symbol cache connected", {{"address", DescribeAddress(address_)}});
  }
  ever_connected_ = true;
  return true;
}

void RedisSymbolCache::FailLocked(std::string_view what, std::string_view error) {
  errors_.fetch_add(1, std::memory_order_relaxed);
  up_.store(false, std::memory_order_relaxed);
  // Jittered, so replicas that lost Redis together do not reconnect in lockstep.
  const int64_t wait = std::chrono::nanoseconds(backoff_.Next()).count();
  next_attempt_ns_.store(SteadyNowNs() + wait, std::memory_order_relaxed);
  const int64_t retry_ms = wait / 1000000;
  // hiredis reports SO_RCVTIMEO/SO_SNDTIMEO expiring as strerror(EAGAIN).
  std::string message(error);
  if (message == "Resource temporarily unavailable") {
    message = "timed out after " +
              std::to_string(duration_cast<milliseconds>(config_.command_timeout).count()) + "ms";
  }
  // One warning per outage; the failed reconnect attempts that follow are debug noise.
  if (!logged_down_) {
    log::Warn("redis symbol cache unavailable; continuing without it",
              {{"address", DescribeAddress(address_)},
               {"op", what},
               {"error", message},
               {"retry_ms", retry_ms}});
    logged_down_ = true;
  } else {
    log::Debug("redis symbol cache still unavailable",
               {{"op", what}, {"error", message}, {"retry_ms", retry_ms}});
  }
  ctx_.reset();  // last: `error` may point into the context
}

std::unique_lock<std::mutex> RedisSymbolCache::Acquire() {
  if (up_.load(std::memory_order_relaxed)) {
    std::unique_lock<std::mutex> lock(mu_);
    if (ctx_ != nullptr) {
      return lock;
    }
    // It went down while this thread waited; fall through to the down path.
  }
  if (SteadyNowNs() < next_attempt_ns_.load(std::memory_order_relaxed)) {
    return {};
  }
  // One thread reconnects; the others carry on without Redis rather than queue behind it.
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) {
    return {};
  }
  if (ctx_ != nullptr) {
    return lock;
  }
  if (SteadyNowNs() < next_attempt_ns_.load(std::memory_order_relaxed) || !ConnectLocked()) {
    return {};
  }
  return lock;
}

void RedisSymbolCache::GetBatch(std::span<const CacheKey> keys, std::span<LocationPtr> out) {
  const size_t n = std::min(keys.size(), out.size());
  // Distinct shareable keys: a batch repeats hot frames.
  constexpr size_t kNone = ~size_t{0};
  std::vector<std::string> names;
  names.reserve(n);  // no reallocation: the index holds views into these strings
  absl::flat_hash_map<std::string_view, size_t> index;
  index.reserve(n);
  std::vector<size_t> slot(n, kNone);
  uint64_t asked = 0;
  std::string name;
  for (size_t i = 0; i < n; ++i) {
    if (!IsShareable(keys[i].module)) {
      continue;
    }
    ++asked;
    name.clear();
    AppendLocationKey(name, config_.key_prefix, keys[i].module, keys[i].offset);
    if (auto it = index.find(name); it != index.end()) {
      slot[i] = it->second;
      continue;
    }
    slot[i] = names.size();
    names.push_back(name);
    index.emplace(names.back(), slot[i]);
  }
  if (names.empty()) {
    return;
  }

  std::vector<ReplyPtr> replies;
  const size_t chunk = config_.max_keys_per_command;
  const size_t commands = (names.size() + chunk - 1) / chunk;
  {
    std::unique_lock<std::mutex> lock = Acquire();
    if (!lock.owns_lock()) {
      misses_.fetch_add(asked, std::memory_order_relaxed);
      return;
    }
    ScopedSigpipeBlock no_sigpipe;
    Argv argv;
    for (size_t c = 0; c < commands; ++c) {
      argv.Clear();
      argv.Add("MGET");
      for (size_t j = c * chunk; j < std::min(names.size(), (c + 1) * chunk); ++j) {
        argv.Add(names[j]);
      }
      if (argv.Append(ctx_.get()) != REDIS_OK) {
        FailLocked("MGET", ctx_->errstr);
        break;
      }
    }
    for (size_t c = 0; ctx_ != nullptr && c < commands; ++c) {
      void* raw = nullptr;
      if (redisGetReply(ctx_.get(), &raw) != REDIS_OK) {
        FailLocked("MGET", ctx_->errstr);
        break;
      }
      replies.emplace_back(static_cast<redisReply*>(raw));
    }
  }  // decode without holding the connection

  std::vector<LocationPtr> found(names.size());
  for (size_t c = 0; c < replies.size(); ++c) {
    const redisReply* r = replies[c].get();
    const size_t first = c * chunk;
    const size_t count = std::min(names.size(), first + chunk) - first;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != count) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    for (size_t j = 0; j < count; ++j) {
      const redisReply* e = r->element[j];
      if (e->type != REDIS_REPLY_STRING) {
        continue;  // nil: not cached
      }
      auto loc = std::make_shared<Location>();
      if (!DecodeLocation(std::string_view(e->str, e->len), loc.get())) {
        // Another version's layout or a foreign value under our prefix: a miss, and rewritten
        // by the resolver's PutBatch.
        errors_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      found[first + j] = std::move(loc);
    }
  }
  uint64_t hits = 0;
  for (size_t i = 0; i < n; ++i) {
    if (slot[i] != kNone && found[slot[i]] != nullptr) {
      out[i] = found[slot[i]];
      ++hits;
    }
  }
  hits_.fetch_add(hits, std::memory_order_relaxed);
  misses_.fetch_add(asked - hits, std::memory_order_relaxed);
}

void RedisSymbolCache::PutBatch(std::span<const CacheKey> keys,
                                std::span<const LocationPtr> values) {
  const size_t n = std::min(keys.size(), values.size());
  std::vector<std::pair<std::string, std::string>> entries;
  entries.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (values[i] == nullptr || !IsShareable(keys[i].module)) {
      continue;
    }
    entries.emplace_back(KeyFor(keys[i]), EncodeLocation(*values[i]));
  }
  if (entries.empty()) {
    return;
  }
  const std::string ttl_ms = std::to_string(duration_cast<milliseconds>(config_.ttl).count());

  std::unique_lock<std::mutex> lock = Acquire();
  if (!lock.owns_lock()) {
    return;  // dropped: another replica, or this one after reconnecting, writes it again
  }
  ScopedSigpipeBlock no_sigpipe;
  Argv argv;
  for (const auto& [key, value] : entries) {
    argv.Clear();
    argv.Add("SET");
    argv.Add(key);
    argv.Add(value);
    argv.Add("PX");
    argv.Add(ttl_ms);
    if (argv.Append(ctx_.get()) != REDIS_OK) {
      FailLocked("SET", ctx_->errstr);
      return;
    }
  }
  uint64_t written = 0;
  uint64_t failed = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_.get(), &raw) != REDIS_OK) {
      FailLocked("SET", ctx_->errstr);
      break;
    }
    ReplyPtr reply(static_cast<redisReply*>(raw));
    if (reply->type == REDIS_REPLY_ERROR) {
      ++failed;  // e.g. OOM with maxmemory-policy noeviction
    } else {
      ++written;
    }
  }
  writes_.fetch_add(written, std::memory_order_relaxed);
  if (failed > 0) {
    errors_.fetch_add(failed, std::memory_order_relaxed);
  }
}

bool RedisSymbolCache::DropBuildId(std::string_view build_id) {
  if (!IsShareable(build_id)) {
    return true;  // never stored in Redis
  }
  const std::string pattern = GlobEscape(config_.key_prefix) + std::string(build_id) + ":*";
  const std::string count = std::to_string(kScanCount);
  std::string cursor = "0";
  uint64_t unlinked = 0;
  // The lock is taken per SCAN step, so lookups interleave with a long scan of a big keyspace.
  do {
    std::unique_lock<std::mutex> lock = Acquire();
    if (!lock.owns_lock()) {
      return false;
    }
    ScopedSigpipeBlock no_sigpipe;
    Argv argv;
    for (std::string_view s :
         {std::string_view("SCAN"), std::string_view(cursor), std::string_view("MATCH"),
          std::string_view(pattern), std::string_view("COUNT"), std::string_view(count)}) {
      argv.Add(s);
    }
    ReplyPtr scan = argv.Run(ctx_.get());
    if (scan == nullptr) {
      FailLocked("SCAN", ctx_->errstr);
      return false;
    }
    if (scan->type != REDIS_REPLY_ARRAY || scan->elements != 2 ||
        scan->element[0]->type != REDIS_REPLY_STRING ||
        scan->element[1]->type != REDIS_REPLY_ARRAY) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    cursor.assign(scan->element[0]->str, scan->element[0]->len);
    const redisReply* found = scan->element[1];
    if (found->elements == 0) {
      continue;
    }
    argv.Clear();
    argv.Add("UNLINK");
    for (size_t i = 0; i < found->elements; ++i) {
      argv.Add(std::string_view(found->element[i]->str, found->element[i]->len));
    }
    ReplyPtr del = argv.Run(ctx_.get());
    if (del == nullptr) {
      FailLocked("UNLINK", ctx_->errstr);
      return false;
    }
    if (del->type != REDIS_REPLY_INTEGER) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    unlinked += static_cast<uint64_t>(del->integer);
  } while (cursor != "0");
  log::Info("redis symbol cache dropped build id",
            {{"build_id", build_id}, {"keys", static_cast<unsigned long long>(unlinked)}});
  return true;
}

void RedisSymbolCache::PutUnknownBuildId(std::string_view build_id, std::string_view reason) {
  if (!IsShareable(build_id)) {
    return;
  }
  const std::string key = NegativeKey(config_.key_prefix, build_id);
  const std::string ttl_ms =
      std::to_string(duration_cast<milliseconds>(config_.negative_ttl).count());
  reason = reason.substr(0, kMaxReasonBytes);
  if (reason.empty()) {
    reason = "unknown";
  }
  std::unique_lock<std::mutex> lock = Acquire();
  if (!lock.owns_lock()) {
    return;
  }
  ScopedSigpipeBlock no_sigpipe;
  Argv argv;
  for (std::string_view s : {std::string_view("SET"), std::string_view(key), reason,
                             std::string_view("PX"), std::string_view(ttl_ms)}) {
    argv.Add(s);
  }
  ReplyPtr reply = argv.Run(ctx_.get());
  if (reply == nullptr) {
    FailLocked("SET", ctx_->errstr);
  } else if (reply->type == REDIS_REPLY_ERROR) {
    errors_.fetch_add(1, std::memory_order_relaxed);
  }
}

std::vector<bool> RedisSymbolCache::GetUnknownBuildIds(
    std::span<const std::string_view> build_ids) {
  std::vector<bool> unknown(build_ids.size(), false);
  std::vector<std::string> names;
  std::vector<size_t> positions;
  for (size_t i = 0; i < build_ids.size(); ++i) {
    if (IsShareable(build_ids[i])) {
      names.push_back(NegativeKey(config_.key_prefix, build_ids[i]));
      positions.push_back(i);
    }
  }
  if (names.empty()) {
    return unknown;
  }
  ReplyPtr reply;
  {
    std::unique_lock<std::mutex> lock = Acquire();
    if (!lock.owns_lock()) {
      return unknown;
    }
    ScopedSigpipeBlock no_sigpipe;
    Argv argv;
    argv.Add("MGET");
    for (const std::string& s : names) {
      argv.Add(s);
    }
    reply = argv.Run(ctx_.get());
    if (reply == nullptr) {
      FailLocked("MGET", ctx_->errstr);
      return unknown;
    }
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != names.size()) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    return unknown;
  }
  for (size_t j = 0; j < names.size(); ++j) {
    if (reply->element[j]->type == REDIS_REPLY_STRING) {
      unknown[positions[j]] = true;
      negative_hits_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return unknown;
}

bool RedisSymbolCache::Ping() {
  std::unique_lock<std::mutex> lock = Acquire();
  if (!lock.owns_lock()) {
    return false;
  }
  ScopedSigpipeBlock no_sigpipe;
  ReplyPtr reply(static_cast<redisReply*>(redisCommand(ctx_.get(), "PING")));
  if (reply == nullptr) {
    FailLocked("PING", ctx_->errstr);
    return false;
  }
  return reply->type == REDIS_REPLY_STATUS && std::string_view(reply->str, reply->len) == "PONG";
}

RedisSymbolCache::Stats RedisSymbolCache::stats() const {
  Stats s;
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  s.reconnects = reconnects_.load(std::memory_order_relaxed);
  s.writes = writes_.load(std::memory_order_relaxed);
  s.negative_hits = negative_hits_.load(std::memory_order_relaxed);
  s.up = up_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace flamestream::symbols
