// The pipeline's delivery contract under faults (issue "Production hardening"): a known
// number of samples goes through the symbolizer, correlator and exporter (file sink) on the
// dev broker with a real redis-server, while the test injects the mock cluster's faults (a
// broker down and up, request errors, latency), kills Redis and restarts it, and SIGKILLs each
// stage at a random point and starts it again, and takes the file sink's storage down (a tmpfs
// remounted read-only, as a disk after an I/O error; root only) for FS_CONSERVATION_SINK_DOWN_S
// seconds per round while the rest goes on. Afterwards every sample is in the file sink
// exactly once: the window files' totals equal what went in, per batch.
//
// FS_CONSERVATION_BATCHES / _ROUNDS / _SINK_DOWN_S make it longer (scripts/conservation.sh).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/testing/dev_broker.h"
#include "flamestream/testing/redis_server.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string Bin(const std::string& name) {
  return std::string(std::getenv("FS_BIN_DIR")) + "/" + name;
}

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A raw batch of `samples` samples over 8 stacks in one process, all within `at_ns`..+1 s.
// Frames have no build id, so the symbolizer leaves them as addresses (and still runs its
// cache and Redis path for the mapping).
v1::SampleBatch RawBatch(uint64_t sequence, int samples, int64_t at_ns) {
  batch::BatchBuilder b;
  b.SetHeader("conservation/node-1/boot", sequence, "conservation", "node-1");
  b.mutable_batch().set_period_ns(10'000'000);
  b.mutable_batch().set_frequency_hz(100);
  v1::Mapping m;
  m.set_kind(v1::MAPPING_KIND_FILE);
  m.set_path_strx(b.InternString("/opt/app/bin/app"));
  m.set_memory_start(0x400000);
  m.set_memory_limit(0x800000);
  const uint32_t mi = b.InternMapping(m);
  std::vector<uint32_t> stacks;
  for (uint32_t s = 0; s < 8; ++s) {
    std::vector<uint32_t> frames;
    for (uint32_t d = 0; d < 6 + s; ++d) {
      v1::Location loc;
      loc.set_mapping_index(mi);
      loc.set_address(0x401000 + 0x40 * d + 0x1000 * s);
      frames.push_back(b.InternLocation(loc));
    }
    stacks.push_back(b.InternStack(frames));
  }
  v1::Process p;
  p.set_host_pid(4242);
  p.set_comm("app");
  *b.mutable_batch().add_processes() = p;
  for (int i = 0; i < samples; ++i) {
    b.AddSample({.stack_index = stacks[static_cast<size_t>(i) % stacks.size()],
                 .pid = 4242,
                 .tid = 4242 + static_cast<uint32_t>(i % 3),
                 .cpu = static_cast<uint32_t>(i % 2),
                 .timestamp_ns = at_ns + (1'000'000'000LL * i) / samples});
  }
  return b.Finish();
}

// One stage as a child process, its output appended to a log file; restartable.
class Stage {
 public:
  Stage(std::string name, std::vector<std::string> args, fs::path log)
      : name_(std::move(name)), args_(std::move(args)), log_(std::move(log)) {}
  Status Start() {
    std::string cmd = "exec";
    for (const std::string& a : args_) cmd += " '" + a + "'";
    cmd += " >> '" + log_.string() + "' 2>&1";
    FS_ASSIGN_OR_RETURN(proc_, testing::Subprocess::Start(
                                   {.argv = {"/bin/sh", "-c", cmd}, .capture_stdout = false}));
    return OkStatus();
  }
  void Kill() {
    if (proc_) {
      (void)proc_->Signal(SIGKILL);
      (void)proc_->Wait(10s);
      proc_.reset();
    }
  }
  Result<testing::ExitStatus> Stop() {
    FS_RETURN_IF_ERROR(proc_->Signal(SIGTERM));
    return proc_->Wait(60s);
  }
  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] std::string LogTail() const {
    std::ifstream in(log_);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
  }

 private:
  std::string name_;
  std::vector<std::string> args_;
  fs::path log_;
  std::unique_ptr<testing::Subprocess> proc_;
};

struct FileTotals {
  int64_t samples = 0;
  size_t files = 0;
};

FileTotals ReadTotals(const fs::path& dir) {
  FileTotals t;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->path().string().ends_with(".pb.gz")) continue;
    std::ifstream in(it->path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Result<perftools::profiles::Profile> p = profile::DecodePprof(bytes);
    if (!p.ok()) continue;  // being replaced (atomic rename): read again next round
    ++t.files;
    for (const auto& s : p->sample()) t.samples += s.value_size() > 0 ? s.value(0) : 0;
  }
  return t;
}

TEST(Conservation, EverySampleReachesTheFileSinkOnceThroughBrokerRedisAndStageFaults) {
  const int kBatches = EnvInt("FS_CONSERVATION_BATCHES", 120);
  const int kRounds = EnvInt("FS_CONSERVATION_ROUNDS", 1);
  constexpr int kSamples = 250;
  const uint32_t seed = static_cast<uint32_t>(EnvInt("FS_CONSERVATION_SEED", 20261202));
  std::mt19937 rng(seed);
  std::printf("conservation: %d batches x %d samples, %d fault rounds, seed %u\n", kBatches,
              kSamples, kRounds, seed);

  auto broker = testing::DevBroker::Start({.brokers = 3, .partitions = 4});
  ASSERT_TRUE(broker.ok()) << broker.error();
  auto redis = testing::RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();
  const fs::path dir = fs::temp_directory_path() / fmt::format("fs-conservation-{}", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir / "out");
  const int sink_down_s = EnvInt("FS_CONSERVATION_SINK_DOWN_S", 20);
  // The sink's storage: a tmpfs we can make read-only, i.e. take down, while the test runs.
  const std::string out = (dir / "out").string();
  bool sink_fault = false;
  if (::geteuid() == 0) {
    ASSERT_EQ(::mount("tmpfs", out.c_str(), "tmpfs", 0, "size=1g"), 0) << std::strerror(errno);
    sink_fault = true;
  } else {
    ASSERT_EQ(std::getenv("CI"), nullptr) << "CI runs as root: the sink-down fault must run";
    std::printf("conservation: sink-down fault skipped (needs root to mount a tmpfs)\n");
  }
  struct Unmount {
    std::string path;
    bool mounted;
    ~Unmount() {
      if (mounted) ::umount2(path.c_str(), MNT_DETACH);
    }
  } unmount{out, sink_fault};
  auto set_sink = [&](bool up) {
    if (!sink_fault) return;
    std::printf("sink storage %s\n", up ? "back (read-write)" : "down (read-only)");
    const unsigned long flags = MS_REMOUNT | (up ? 0 : MS_RDONLY);
    ASSERT_EQ(::mount(nullptr, out.c_str(), nullptr, flags, nullptr), 0) << std::strerror(errno);
  };
  const std::string bootstrap = (*broker)->bootstrap();
  const std::vector<std::string> kafka = {"--set", "kafka.bootstrap.servers=" + bootstrap,
                                          "--set", "kafka.session.timeout.ms=6000",
                                          "--set", "kafka.heartbeat.interval.ms=500",
                                          "--set", "admin.listen=127.0.0.1:0",
                                          "--set", "log.level=info"};
  auto args = [&](const std::string& bin, std::vector<std::string> own) {
    std::vector<std::string> a = {Bin(bin)};
    a.insert(a.end(), kafka.begin(), kafka.end());
    a.insert(a.end(), own.begin(), own.end());
    return a;
  };
  std::vector<Stage> stages;
  stages.emplace_back(
      "symbolizer",
      args("flamestream-symbolizer", {"--set", "symbolizer.redis.address=" + (*redis)->address(),
                                      "--set", "symbolizer.debuginfod=false"}),
      dir / "symbolizer.log");
  stages.emplace_back(
      "correlator",
      args("flamestream-correlator",
           {"--set", "correlator.otlp.enabled=false", "--set",
            "correlator.otlp_spans.enabled=false", "--set", "correlator.lateness=2s"}),
      dir / "correlator.log");
  stages.emplace_back(
      "exporter",
      args("flamestream-exporter",
           {"--set", "exporter.sinks=file", "--set", "exporter.file.out=" + (dir / "out").string(),
            "--set", "exporter.window=10s", "--set", "exporter.lateness=2s", "--set",
            "exporter.idle_flush=4s", "--set", "exporter.file.views=false"}),
      dir / "exporter.log");
  for (Stage& s : stages) ASSERT_TRUE(s.Start().ok()) << s.name();

  // The input: batches a few seconds apart in event time (several windows), produced while
  // the faults happen.
  auto producer = kafka::Producer::Create({.properties = {{"bootstrap.servers", bootstrap}}});
  ASSERT_TRUE(producer.ok());
  const int64_t t0 = NowNs() - 120'000'000'000LL;
  std::atomic<int> acked{0};
  std::atomic<int> failed{0};
  auto produce = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      const v1::SampleBatch b = RawBatch(static_cast<uint64_t>(i) + 1, kSamples,
                                         t0 + static_cast<int64_t>(i) * 500'000'000LL);
      ASSERT_TRUE(
          (*producer)
              ->Produce(kafka::topics::kSamplesRaw, "conservation/node-1", b.SerializeAsString(),
                        {},
                        [&](const kafka::DeliveryReport& r) { (r.status.ok() ? acked : failed)++; })
              .ok());
    }
  };

  const int per_round = kBatches / kRounds;
  for (int round = 0; round < kRounds; ++round) {
    const int from = round * per_round;
    const int to = round == kRounds - 1 ? kBatches : from + per_round;
    const int a = from + (to - from) / 4;
    const int b = from + (to - from) / 2;
    const int c = from + 3 * (to - from) / 4;
    ASSERT_NO_FATAL_FAILURE(produce(from, a));
    // The sink goes down for sink_down_s while every other fault below happens.
    ASSERT_NO_FATAL_FAILURE(set_sink(false));
    const auto sink_back_at = Clock::now() + std::chrono::seconds(sink_down_s);
    // Latency on one broker and request errors on produce, fetch and commit.
    ASSERT_TRUE((*broker)->Command("broker 1 rtt 300ms").ok());
    ASSERT_TRUE((*broker)->Command("error Produce 3 NOT_LEADER_FOR_PARTITION").ok());
    ASSERT_TRUE((*broker)->Command("error OffsetCommit 2 REQUEST_TIMED_OUT").ok());
    ASSERT_TRUE((*broker)->Command("error Fetch 2 NOT_LEADER_FOR_PARTITION").ok());
    ASSERT_NO_FATAL_FAILURE(produce(a, b));
    std::this_thread::sleep_for(std::chrono::milliseconds(500 + rng() % 1500));
    // A stage dies mid-flight (SIGKILL: no drain, no commit) and comes back.
    Stage& victim = stages[rng() % stages.size()];
    std::printf("round %d: SIGKILL %s\n", round, victim.name().c_str());
    victim.Kill();
    ASSERT_TRUE((*broker)->Command("broker 1 rtt 0").ok());
    ASSERT_TRUE((*broker)->Command("broker 2 down").ok());
    (*redis)->Kill();
    ASSERT_NO_FATAL_FAILURE(produce(b, c));
    std::this_thread::sleep_for(std::chrono::milliseconds(1000 + rng() % 2000));
    ASSERT_TRUE(victim.Start().ok());
    ASSERT_TRUE((*broker)->Command("broker 2 up").ok());
    ASSERT_TRUE((*redis)->Restart().ok());
    if (sink_fault) std::this_thread::sleep_until(sink_back_at);
    ASSERT_NO_FATAL_FAILURE(set_sink(true));
    ASSERT_NO_FATAL_FAILURE(produce(c, to));
    std::this_thread::sleep_for(std::chrono::milliseconds(500 + rng() % 1500));
    // Every stage once more, at a random point.
    Stage& second =
        stages[(rng() % (stages.size() - 1) + 1 + static_cast<size_t>(&victim - &stages[0])) %
               stages.size()];
    std::printf("round %d: SIGKILL %s\n", round, second.name().c_str());
    second.Kill();
    std::this_thread::sleep_for(std::chrono::milliseconds(500 + rng() % 1000));
    ASSERT_TRUE(second.Start().ok());
  }
  ASSERT_TRUE((*producer)->Flush(60s).ok());
  ASSERT_EQ(failed.load(), 0);
  ASSERT_EQ(acked.load(), kBatches);

  const int64_t want = static_cast<int64_t>(kBatches) * kSamples;
  FileTotals got;
  const auto deadline = Clock::now() + std::chrono::seconds(150 + 30 * kRounds);
  while (Clock::now() < deadline) {
    got = ReadTotals(dir / "out");
    if (got.samples >= want) break;
    std::this_thread::sleep_for(1s);
  }
  // Let duplicates (if any) land before the final count, then drain every stage.
  std::this_thread::sleep_for(6s);
  for (Stage& s : stages) {
    Result<testing::ExitStatus> st = s.Stop();
    EXPECT_TRUE(st.ok() && st->exited && st->code == 0) << s.name() << " did not drain cleanly:\n"
                                                        << s.LogTail();
  }
  got = ReadTotals(dir / "out");
  EXPECT_EQ(got.samples, want) << "files " << got.files << "\nexporter log:\n"
                               << stages[2].LogTail() << "\ncorrelator log:\n"
                               << stages[1].LogTail() << "\nsymbolizer log:\n"
                               << stages[0].LogTail();
  std::printf("conservation: %lld of %lld samples in %zu window files\n",
              static_cast<long long>(got.samples), static_cast<long long>(want), got.files);
  if (unmount.mounted) ::umount2(out.c_str(), MNT_DETACH);
  unmount.mounted = false;
  if (!HasFailure() && std::getenv("FS_CONSERVATION_KEEP") == nullptr) fs::remove_all(dir);
}

}  // namespace
}  // namespace flamestream
