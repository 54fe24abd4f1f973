// flamestream-symbolizer: resolves raw frames to functions, files, lines and inlined calls.
//
//   flamestream-symbolizer --set kafka.bootstrap.servers=127.0.0.1:9092     # the stage
//   flamestream-symbolizer --replay --from -1h --to now --build-id 4f1e...  # re-symbolize
//   echo "/bin/ls 0x4a10" | flamestream-symbolizer resolve                   # llvm-symbolizer
//   layout
#include <chrono>
#include <cstring>

#include "collector_scope.h"
#include "flamestream/common/clock.h"
#include "flamestream/batch/batch.h"
#include "flamestream/batch/filter.h"
#include "flamestream/batch/split.h"
#include "flamestream/common/units.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/log/log.h"
#include "flamestream/service/service.h"
#include "flamestream/stage/map_stage.h"
#include "flamestream/symbols/batch_symbolizer.h"
#include "flamestream/symbols/redis_cache.h"
#include "flamestream/symbols/symbolizer.h"
#include "flamestream_service_keys.h"
#include "resolve_mode.h"

namespace flamestream::symbolizer {
namespace {

namespace topics = kafka::topics;

struct Config {
  std::map<std::string, std::string> kafka;
  std::string group = "flamestream-symbolizer";
  std::string input_topic = std::string(topics::kSamplesRaw);
  std::string output_topic = std::string(topics::kSamplesSymbolized);
  std::vector<std::string> path_mappings;
  std::vector<std::string> sysroots;
  bool host_paths = true;
  std::vector<std::string> debug_dirs = {"/usr/lib/debug"};
  bool debuginfod = true;
  int debuginfod_concurrency = 4;
  config::Bytes debuginfod_max_size{1ULL << 30};
  std::chrono::nanoseconds debuginfod_timeout = std::chrono::minutes(3);
  std::chrono::nanoseconds debuginfod_batch_deadline = std::chrono::seconds(2);
  int debuginfod_max_pending = 1024;
  config::Bytes lru{symbols::SymbolizerConfig{}.lru_bytes};
  std::chrono::nanoseconds negative_ttl = symbols::kDefaultNegativeTtl;
  std::chrono::nanoseconds dwarf_timeout = std::chrono::seconds(60);
  int max_in_flight = stage::kDefaultMaxInFlight;
  // Shared cache: empty address = no Redis (in-process LRU only).
  std::string redis_address;
  std::string redis_prefix = symbols::RedisCacheConfig{}.key_prefix;
  std::chrono::nanoseconds redis_ttl = symbols::RedisCacheConfig{}.ttl;
  std::chrono::nanoseconds redis_timeout = symbols::RedisCacheConfig{}.connect_timeout;
  // Replay (re-symbolization of a time range, ARCHITECTURE.md "Replay").
  bool replay = false;
  std::string from;
  std::string to = "now";
  std::vector<std::string> build_ids;
  std::chrono::nanoseconds max_spool_age = std::chrono::hours(1);
  uint64_t epoch = 0;

  void Declare(config::Schema& s) {
    s.AddPassthrough(
        "kafka", &kafka,
        "librdkafka properties (kafka.bootstrap.servers, kafka.security.protocol, ...)");
    s.Add("symbolizer.group", &group, "consumer group id (replay default: <group>-replay)",
          "--group");
    s.Add("symbolizer.input_topic", &input_topic, "raw samples topic");
    s.Add("symbolizer.output_topic", &output_topic,
          "symbolized samples topic (replay writes <topic>.replay)");
    s.Add("symbolizer.path_mappings", &path_mappings,
          "FROM=TO prefix rewrites for the paths processes mapped (e.g. /app=/images/app-v7)",
          "--path-map");
    s.Add("symbolizer.sysroots", &sysroots,
          "directories prepended to mapped paths (unpacked images, a node's root mount)",
          "--sysroot");
    s.Add("symbolizer.host_paths", &host_paths,
          "read mapped paths on this host (local mode: agent and symbolizer share a file system)");
    s.Add(keys::symbolizer::kDebugDirs, &debug_dirs,
          "debug directories (build-id layout and .gnu_debuglink)", "--debug-dir");
    s.Add("symbolizer.debuginfod", &debuginfod,
          "ask the debuginfod servers in DEBUGINFOD_URLS for unknown build ids");
    s.Add("symbolizer.debuginfod.concurrency", &debuginfod_concurrency,
          "debuginfod downloads running at once (off the consume path; one per build id)");
    s.Add("symbolizer.debuginfod.max_size", &debuginfod_max_size,
          "largest debug file or executable downloaded from debuginfod (larger ones are "
          "aborted and negatively cached)");
    s.Add("symbolizer.debuginfod.timeout", &debuginfod_timeout,
          "one debuginfod download is aborted after this long (then negatively cached)");
    s.Add("symbolizer.debuginfod.batch_deadline", &debuginfod_batch_deadline,
          "the longest one batch waits for debuginfod downloads; frames still pending stay "
          "unresolved and are named by a later batch or replay (0 = never wait)");
    s.Add("symbolizer.debuginfod.max_pending", &debuginfod_max_pending,
          "debuginfod downloads queued or running; more unknown build ids wait for a slot");
    s.Add("symbolizer.lru_size", &lru, "in-process cache of resolved locations, in bytes");
    s.Add("symbolizer.negative_ttl", &negative_ttl,
          "how long a build id found nowhere stays unresolvable before it is looked up again");
    s.Add("symbolizer.dwarf_timeout", &dwarf_timeout,
          "how long the DWARF worker may take on one request before it counts as hung (killed; "
          "that debug file becomes an error for its build id)");
    s.Add(keys::symbolizer::kRedisAddress, &redis_address,
          "Redis shared by the replicas (host:port or redis://[:password@]host:port/db); "
          "empty = in-process cache only",
          "--redis");
    s.Add("symbolizer.redis.key_prefix", &redis_prefix, "prefix of every Redis key");
    s.Add("symbolizer.redis.ttl", &redis_ttl, "lifetime of a cached location in Redis");
    s.Add("symbolizer.redis.timeout", &redis_timeout,
          "connect and command timeout: a slow Redis turns into misses, never a stall");
    s.Add("symbolizer.max_in_flight", &max_in_flight,
          "unacknowledged output batches above which input is paused");
    s.Add(keys::symbolizer::kReplay, &replay, "replay mode: re-symbolize [from, to] and stop",
          "--replay");
    s.Add(keys::symbolizer::kReplayFrom, &from, "replay start: now, -1h, RFC 3339 UTC or Unix time",
          "--from");
    s.Add(keys::symbolizer::kReplayTo, &to, "replay end (same forms as --from)", "--to");
    s.Add(keys::symbolizer::kReplayBuildIds, &build_ids,
          "build ids (hex) whose cached symbols are dropped before the replay", "--build-id");
    s.Add("symbolizer.replay.max_spool_age", &max_spool_age,
          "the agents' maximum spool age: replay reads from `from` minus this, since records "
          "can arrive that much later than their samples");
    s.Add(keys::symbolizer::kReplayEpoch, &epoch,
          "symbol-epoch written on replay output (0 = the replay's start time in ms)");
    s.Require(
        "symbolizer.dwarf_timeout", [this] { return dwarf_timeout.count() > 0; },
        "a positive duration");
    s.Require(
        "symbolizer.debuginfod.concurrency",
        [this] { return debuginfod_concurrency >= 1 && debuginfod_concurrency <= 64; }, "1 to 64");
    s.Require(
        "symbolizer.debuginfod.max_size", [this] { return debuginfod_max_size.value > 0; },
        "a positive size");
    s.Require(
        "symbolizer.debuginfod.timeout", [this] { return debuginfod_timeout.count() > 0; },
        "a positive duration");
    s.Require(
        "symbolizer.debuginfod.batch_deadline",
        [this] { return debuginfod_batch_deadline.count() >= 0; }, "0 or a duration");
    s.Require(
        "symbolizer.debuginfod.max_pending", [this] { return debuginfod_max_pending >= 1; },
        "1 or more");
    s.Require(
        keys::symbolizer::kReplayFrom, [this] { return !replay || !from.empty(); },
        "a start time when symbolizer.replay is on (--from)");
  }
};


Status Run(const Config& cfg, service::Context& ctx) {
  symbols::SymbolizerConfig scfg;
  scfg.locator.path_mappings = cfg.path_mappings;
  scfg.locator.sysroots = cfg.sysroots;
  scfg.locator.use_host_paths = cfg.host_paths;
  scfg.locator.debug_dirs = cfg.debug_dirs;
  scfg.locator.debuginfod = cfg.debuginfod;
  scfg.locator.debuginfod_concurrency = cfg.debuginfod_concurrency;
  scfg.locator.debuginfod_max_size = cfg.debuginfod_max_size.value;
  scfg.locator.debuginfod_timeout = cfg.debuginfod_timeout;
  scfg.locator.debuginfod_max_pending = static_cast<size_t>(cfg.debuginfod_max_pending);
  scfg.debuginfod_batch_deadline = cfg.debuginfod_batch_deadline;
  scfg.lru_bytes = cfg.lru.value;
  scfg.negative_ttl = cfg.negative_ttl;
  scfg.dwarf_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(cfg.dwarf_timeout);
  std::unique_ptr<symbols::RedisSymbolCache> redis;
  if (!cfg.redis_address.empty()) {
    symbols::RedisCacheConfig rc;
    rc.address = cfg.redis_address;
    rc.key_prefix = cfg.redis_prefix;
    rc.ttl = cfg.redis_ttl;
    rc.connect_timeout = cfg.redis_timeout;
    rc.command_timeout = cfg.redis_timeout;
    auto created = symbols::RedisSymbolCache::Create(rc);
    if (!created.ok()) {
      return created.error().WithContext(
          fmt::format("config key \"{}\"", keys::symbolizer::kRedisAddress));
    }
    redis = std::move(*created);
  }
  FS_ASSIGN_OR_RETURN(std::unique_ptr<symbols::Symbolizer> symbolizer,
                      symbols::Symbolizer::Create(scfg, redis.get()));

  obs::Counter& frames_resolved = ctx.metrics.Counter(
      "fs_symbolizer_frames_total", "Frames symbolized, by outcome", {{"outcome", "resolved"}});
  obs::Counter& frames_unresolved = ctx.metrics.Counter(
      "fs_symbolizer_frames_total", "Frames symbolized, by outcome", {{"outcome", "unresolved"}});
  obs::Counter& frames_kernel = ctx.metrics.Counter(
      "fs_symbolizer_frames_total", "Frames symbolized, by outcome", {{"outcome", "kernel"}});
  obs::Counter& frames_other = ctx.metrics.Counter(
      "fs_symbolizer_frames_total", "Frames symbolized, by outcome", {{"outcome", "no_file"}});
  // Declared after what its collectors read, so it closes first: a /metrics scrape after
  // Run() returned (the admin listener outlives it) must not read a freed Symbolizer.
  CollectorScope collectors(ctx.metrics);
  if (redis != nullptr) {
    collectors.Add([&registry = ctx.metrics, r = redis.get()] {
      const symbols::RedisSymbolCache::Stats st = r->stats();
      registry.Gauge("fs_symbolizer_redis_up", "1 while the Redis cache is reachable")
          .Set(st.up ? 1 : 0);
      registry.Counter("fs_symbolizer_redis_hits_total", "Redis cache hits").Follow(st.hits);
      registry.Counter("fs_symbolizer_redis_misses_total", "Redis cache misses").Follow(st.misses);
      registry.Counter("fs_symbolizer_redis_errors_total", "Redis errors").Follow(st.errors);
      registry.Counter("fs_symbolizer_redis_reconnects_total", "Redis reconnects")
          .Follow(st.reconnects);
    });
  }
  collectors.Add([&registry = ctx.metrics, sym = symbolizer.get()] {
    const symbols::Symbolizer::Stats st = sym->stats();
    registry.Counter("fs_symbolizer_cache_hits_total", "Cache hits", {{"cache", "lru"}})
        .Follow(st.lru_hits);
    registry.Counter("fs_symbolizer_cache_hits_total", "Cache hits", {{"cache", "shared"}})
        .Follow(st.shared_hits);
    registry.Gauge("fs_symbolizer_open_files", "Debug files kept open")
        .Set(static_cast<double>(st.open_files));
    registry.Counter("fs_symbolizer_debug_searches_total", "Debug info searches")
        .Follow(st.searches);
    registry
        .Counter("fs_symbolizer_negative_hits_total",
                 "Build ids skipped as found nowhere, by who searched", {{"cache", "shared"}})
        .Follow(st.shared_negative_hits);
    registry.Gauge("fs_symbolizer_negative_entries", "Build ids negatively cached here")
        .Set(static_cast<double>(st.negative_entries));
    registry
        .Counter("fs_symbolizer_dwarf_worker_crashes_total",
                 "DWARF worker deaths or hangs (each marks one debug file bad)")
        .Follow(st.worker_crashes);
    registry
        .Counter("fs_symbolizer_frames_pending_debuginfo_total",
                 "Frames left unresolved because their debuginfod download had not "
                 "finished by symbolizer.debuginfod.batch_deadline (not cached)")
        .Follow(st.pending_debuginfo);
    const symbols::DebuginfodStats& d = st.debuginfod;
    const char* help = "debuginfod downloads finished, by result";
    registry.Counter("fs_symbolizer_debuginfod_downloads_total", help, {{"result", "found"}})
        .Follow(d.found);
    registry.Counter("fs_symbolizer_debuginfod_downloads_total", help, {{"result", "not_found"}})
        .Follow(d.not_found);
    registry.Counter("fs_symbolizer_debuginfod_downloads_total", help, {{"result", "too_large"}})
        .Follow(d.too_large);
    registry.Counter("fs_symbolizer_debuginfod_downloads_total", help, {{"result", "timeout"}})
        .Follow(d.timeouts);
    registry.Counter("fs_symbolizer_debuginfod_downloads_total", help, {{"result", "error"}})
        .Follow(d.errors);
    registry
        .Counter("fs_symbolizer_debuginfod_queue_full_total",
                 "debuginfod lookups deferred: symbolizer.debuginfod.max_pending pending")
        .Follow(d.queue_full);
    registry.Gauge("fs_symbolizer_debuginfod_in_flight", "debuginfod downloads running")
        .Set(static_cast<double>(d.in_flight));
    registry.Gauge("fs_symbolizer_debuginfod_queued", "debuginfod downloads waiting for a worker")
        .Set(static_cast<double>(d.queued));
  });

  stage::MapStageConfig mcfg;
  mcfg.stage = "symbolizer";
  mcfg.group_id = cfg.group;
  mcfg.input_topics = {cfg.input_topic};
  mcfg.kafka = cfg.kafka;
  mcfg.max_in_flight = cfg.max_in_flight;
  // Symbolized batches are several times their raw size (lines, inlined frames): one over
  // the message limit is split by samples; one sample that cannot fit goes to the DLQ.
  mcfg.split = [](std::string_view value, size_t max_bytes) {
    return batch::SplitSerializedBatch(value, max_bytes);
  };
  std::string output_topic = cfg.output_topic;

  int64_t from_ns = 0;
  int64_t to_ns = 0;
  std::string epoch;
  uint64_t epoch_value = 0;
  if (cfg.replay) {
    const int64_t now = UnixNowNs();
    FS_ASSIGN_OR_RETURN(from_ns, common::ParseTimestampNs(cfg.from, now));
    FS_ASSIGN_OR_RETURN(to_ns, common::ParseTimestampNs(cfg.to, now));
    if (to_ns < from_ns) {
      return InvalidArgument("symbolizer.replay.to is before symbolizer.replay.from");
    }
    if (cfg.group == "flamestream-symbolizer") {
      mcfg.group_id = cfg.group + "-replay";
    }
    output_topic = kafka::topics::Replay(cfg.output_topic);
    mcfg.seek_to_timestamp_ms = (from_ns - cfg.max_spool_age.count()) / 1000000;
    mcfg.stop_when_caught_up = true;
    epoch_value = cfg.epoch != 0 ? cfg.epoch : static_cast<uint64_t>(now / 1000000);
    epoch = std::to_string(epoch_value);
    for (const std::string& id : cfg.build_ids) {
      // Cached symbols and negative entries must go, or the replay repeats the old answer.
      if (!symbolizer->DropBuildId(id)) {
        return Unavailable("replay: could not drop build id {} from the Redis cache", id);
      }
    }
    log::Info("replay", {{"from_ns", static_cast<long long>(from_ns)},
                         {"to_ns", static_cast<long long>(to_ns)},
                         {"epoch", epoch},
                         {"output", output_topic},
                         {"group", mcfg.group_id}});
  }

  auto transform = [&](const kafka::Message& msg) -> Result<std::vector<stage::Output>> {
    v1::SampleBatch batch;
    if (!batch.ParseFromArray(msg.value().data(), static_cast<int>(msg.value().size()))) {
      return DataLoss("not a flamestream.v1.SampleBatch ({} bytes)", msg.value().size());
    }
    // Before anything reads the columns (replay's time filter decodes every sample).
    FS_RETURN_IF_ERROR(batch::Validate(batch).WithContext(batch::BatchIdString(batch.id())));
    kafka::Headers headers = msg.headers();
    if (cfg.replay) {
      size_t kept = 0;
      FS_RETURN_IF_ERROR(batch::KeepSamplesInRange(batch, from_ns, to_ns, &kept));
      if (kept == 0) {
        return std::vector<stage::Output>{};
      }
      batch.set_symbol_epoch(epoch_value);
      kafka::SetHeader(headers, kafka::topics::kHeaderSymbolEpoch, epoch);
    }
    symbols::BatchSymbolizeStats st;
    FS_RETURN_IF_ERROR(symbols::SymbolizeBatch(batch, *symbolizer, &st));
    frames_resolved.Inc(st.resolved);
    frames_unresolved.Inc(st.unresolved);
    frames_kernel.Inc(st.kernel_frames);
    frames_other.Inc(st.other_frames);
    std::string out;
    batch.SerializeToString(&out);
    return std::vector<stage::Output>{{.topic = output_topic,
                                       .key = std::string(msg.key()),
                                       .value = std::move(out),
                                       .headers = std::move(headers)}};
  };
  return stage::RunMapStage(mcfg, ctx, transform);
}

}  // namespace
}  // namespace flamestream::symbolizer

int main(int argc, char** argv) {
  using namespace flamestream;
  if (argc >= 2 && std::strcmp(argv[1], "resolve") == 0) {
    return symbolizer::RunResolve(argc - 1, argv + 1);
  }
  symbolizer::Config cfg;
  return service::Main(
      argc, argv,
      {.name = "symbolizer",
       .summary = "resolves raw frames to functions, files, lines and inlined calls",
       .usage_extra =
           "Subcommands:\n  resolve [--offsets] ...  read `<PATH|buildid:HEX> 0x<ADDRESS>` lines "
           "on stdin and print llvm-symbolizer --inlining --demangle output (resolve --help)\n"
           "Replay: --replay --from T1 [--to T2] [--build-id HEX]... re-symbolizes that range "
           "into <output_topic>.replay and exits",
       .declare = [&](config::Schema& s) { cfg.Declare(s); },
       .run = [&](service::Context& ctx) { return symbolizer::Run(cfg, ctx); },
       .default_admin_listen = "127.0.0.1:9401"});
}
