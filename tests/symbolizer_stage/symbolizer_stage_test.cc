// flamestream-symbolizer as users run it: a raw batch whose frames point into a binary built
// here comes out symbolized with the right functions, files and lines; a second instance
// sharing the Redis cache resolves nothing itself; Redis dying mid-stream loses no batch; a
// replay writes the range again to the .replay topic with a symbol-epoch header.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/common/strings.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/symbols/elf_file.h"
#include "flamestream/testing/dev_broker.h"
#include "flamestream/testing/redis_server.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream {
namespace {

using namespace std::chrono_literals;
namespace topics = kafka::topics;
namespace fs = std::filesystem;

constexpr const char* kSource = R"(#include <stdio.h>
__attribute__((noinline)) int leaf(int x) { return x * 3 + 1; }
__attribute__((noinline)) int middle(int x) { return leaf(x) + 2; }
__attribute__((noinline)) int outer(int x) { return middle(x) * 5; }
int main(int argc, char** argv) { printf("%d\n", outer(argc)); return 0; }
)";

struct Binary {
  std::string path;
  std::string build_id;  // hex
  std::map<std::string, uint64_t> offsets;  // function -> file offset of its first instruction
};

Binary BuildBinary(const fs::path& dir) {
  Binary b;
  const fs::path src = dir / "chain.c";
  std::ofstream(src) << kSource;
  b.path = (dir / "chain").string();
  const std::string cc = "gcc -O1 -g -fno-omit-frame-pointer -Wl,--build-id " + src.string() +
                         " -o " + b.path;
  EXPECT_EQ(std::system(cc.c_str()), 0);
  auto info = symbols::ReadElfInfo(b.path);
  EXPECT_TRUE(info.ok());
  b.build_id = info->build_id;
  FILE* nm = popen(("nm " + b.path).c_str(), "r");
  char line[512];
  const std::regex re("^([0-9a-f]+) T (leaf|middle|outer|main)$");
  while (fgets(line, sizeof(line), nm) != nullptr) {
    std::string l(line);
    l.erase(l.find_last_not_of('\n') + 1);
    std::smatch m;
    if (std::regex_match(l, m, re)) {
      const uint64_t vaddr = std::stoull(m[1], nullptr, 16);
      for (const symbols::LoadSegment& seg : info->segments) {
        if (vaddr >= seg.vaddr && vaddr < seg.vaddr + seg.filesz) {
          b.offsets[m[2]] = vaddr - seg.vaddr + seg.offset;
        }
      }
    }
  }
  pclose(nm);
  EXPECT_EQ(b.offsets.size(), 4u);
  return b;
}

// A raw batch with one stack main>outer>middle>leaf (leaf first; callers as return addresses
// a few bytes into the function, as real return addresses are) plus a kernel frame.
// `unknown_caller`: one more (outermost) frame in a library whose build id no source has.
constexpr const char* kUnknownBuildId = "00deadbeef00deadbeef00deadbeef00deadbeef";
v1::SampleBatch RawBatch(const Binary& b, uint64_t seq, int64_t t0_ns, int samples,
                         uint64_t ret_delta = 4, bool unknown_caller = false) {
  batch::BatchBuilder builder;
  builder.SetHeader("test-agent", seq, "c1", "node-a");
  builder.mutable_batch().set_period_ns(10101010);
  v1::Mapping m;
  m.set_memory_start(0x555500000000);
  m.set_memory_limit(0x555500100000);
  m.set_path_strx(builder.InternString(b.path));
  m.set_build_id(*common::HexDecode(b.build_id));
  m.set_kind(v1::MAPPING_KIND_FILE);
  const uint32_t mi = builder.InternMapping(m);
  std::vector<uint32_t> stack;
  v1::Location kernel;
  kernel.set_address(0xffffffff81000010);
  kernel.set_symbol_strx(builder.InternString("do_syscall_64"));
  kernel.set_symbol_offset(0x10);
  stack.push_back(builder.InternLocation(kernel));
  for (const char* fn : {"leaf", "middle", "outer", "main"}) {
    v1::Location loc;
    loc.set_mapping_index(mi);
    const bool ret = std::string(fn) != "leaf";
    loc.set_address(b.offsets.at(fn) + (ret ? ret_delta : 1));
    loc.set_is_return_address(ret);
    stack.push_back(builder.InternLocation(loc));
  }
  if (unknown_caller) {
    v1::Mapping gone;
    gone.set_memory_start(0x7f0000000000);
    gone.set_memory_limit(0x7f0000100000);
    gone.set_path_strx(builder.InternString("/nonexistent/libgone.so"));
    gone.set_build_id(*common::HexDecode(kUnknownBuildId));
    gone.set_kind(v1::MAPPING_KIND_FILE);
    v1::Location loc;
    loc.set_mapping_index(builder.InternMapping(gone));
    loc.set_address(0x1234);
    loc.set_is_return_address(true);
    stack.push_back(builder.InternLocation(loc));
  }
  const uint32_t si = builder.InternStack(stack);
  for (int i = 0; i < samples; ++i) {
    builder.AddSample({.stack_index = si, .pid = 42, .tid = 43, .timestamp_ns = t0_ns + i * 1000});
  }
  return builder.Finish();
}

struct Consumed {
  v1::SampleBatch batch;
  kafka::Headers headers;
  std::string key;
};

std::vector<Consumed> Consume(const std::string& bootstrap, const std::string& topic, size_t want,
                              std::chrono::seconds wait = 60s) {
  kafka::ConsumerConfig cfg;
  cfg.properties = {{"bootstrap.servers", bootstrap}};
  cfg.group_id = "reader-" + topic + std::to_string(std::rand());
  cfg.topics = {topic};
  auto consumer = kafka::Consumer::Create(cfg);
  EXPECT_TRUE(consumer.ok());
  std::vector<Consumed> out;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
    auto m = (*consumer)->Poll(100ms);
    if (m.ok() && m->has_value()) {
      Consumed c;
      EXPECT_TRUE(c.batch.ParseFromArray((*m)->value().data(),
                                         static_cast<int>((*m)->value().size())));
      c.headers = (*m)->headers();
      c.key = std::string((*m)->key());
      out.push_back(std::move(c));
    }
  }
  return out;
}

// "leaf chain.c:2" for each frame of the batch's first stack, leaf first.
std::vector<std::string> StackNames(const v1::SampleBatch& b) {
  std::vector<std::string> out;
  for (uint32_t li : b.stacks(0).location_indices()) {
    const v1::Location& loc = b.locations(static_cast<int>(li));
    if (loc.lines_size() == 0) {
      out.push_back("?");
      continue;
    }
    const v1::Line& line = loc.lines(loc.lines_size() - 1);  // the physical function
    std::string file = b.strings(static_cast<int>(line.file_strx()));
    file = file.empty() ? "" : " " + fs::path(file).filename().string() + ":" +
                                   std::to_string(line.line());
    out.push_back(b.strings(static_cast<int>(line.function_strx())) + file);
  }
  return out;
}

class SymbolizerStage : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fs-symstage-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    bin_ = BuildBinary(dir_);
    auto broker = testing::DevBroker::Start();
    ASSERT_TRUE(broker.ok()) << broker.error();
    broker_ = std::move(*broker);
    auto redis = testing::RedisServer::Start();
    ASSERT_TRUE(redis.ok()) << redis.error();
    redis_ = std::move(*redis);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Produce(const std::vector<v1::SampleBatch>& batches) {
    auto producer = kafka::Producer::Create({.properties = {{"bootstrap.servers",
                                                             broker_->bootstrap()}}});
    ASSERT_TRUE(producer.ok());
    for (const v1::SampleBatch& b : batches) {
      std::string bytes;
      b.SerializeToString(&bytes);
      ASSERT_TRUE((*producer)->Produce(topics::kSamplesRaw, "c1/node-a", bytes).ok());
    }
    ASSERT_TRUE((*producer)->Flush(10s).ok());
  }

  // Starts flamestream-symbolizer; returns it with its admin port.
  std::pair<std::unique_ptr<testing::Subprocess>, int> StartSymbolizer(
      const std::string& group, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {
        std::string(std::getenv("FS_BIN_DIR")) + "/flamestream-symbolizer",
        "--admin-listen", "127.0.0.1:0", "--group", group, "--redis", redis_->address(),
        "--set", "kafka.bootstrap.servers=" + broker_->bootstrap(),
        "--set", "kafka.session.timeout.ms=6000", "--set", "symbolizer.debuginfod=false"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto proc = testing::Subprocess::Start({.argv = argv, .capture_stderr = true});
    EXPECT_TRUE(proc.ok());
    auto started = (*proc)->WaitForLine(
        [](std::string_view l) { return l.find("msg=\"started\"") != std::string_view::npos; },
        20s);
    EXPECT_TRUE(started.ok());
    const int port = std::stoi(started->substr(started->find("admin_port=") + 11));
    return {std::move(*proc), port};
  }

  static double Metric(int port, const std::string& series) {
    httplib::Client cli("127.0.0.1", port);
    auto r = cli.Get("/metrics");
    if (!r) return -1;
    std::istringstream in(r->body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return 0;
  }

  static void StopCleanly(testing::Subprocess& proc) {
    ASSERT_TRUE(proc.Signal(SIGTERM).ok());
    auto st = proc.Wait(30s);
    ASSERT_TRUE(st.ok());
    EXPECT_TRUE(st->exited && st->code == 0) << "exit " << st->code << " signal " << st->signal;
  }

  fs::path dir_;
  Binary bin_;
  std::unique_ptr<testing::DevBroker> broker_;
  std::unique_ptr<testing::RedisServer> redis_;
};

TEST_F(SymbolizerStage, ResolvesChainsSharesRedisAndSurvivesRedisDeath) {
  const int64_t t0 = 1795438862000000000;
  Produce({RawBatch(bin_, 1, t0, 5, 4, /*unknown_caller=*/true),
           RawBatch(bin_, 2, t0 + 1000000000, 7, 4, /*unknown_caller=*/true)});

  auto [first, port1] = StartSymbolizer("sym-a");
  std::vector<Consumed> out = Consume(broker_->bootstrap(), std::string(topics::kSamplesSymbolized), 2);
  ASSERT_EQ(out.size(), 2u);
  for (const Consumed& c : out) {
    EXPECT_EQ(c.key, "c1/node-a");
    EXPECT_EQ(c.batch.stage(), v1::STAGE_SYMBOLIZED);
    ASSERT_TRUE(batch::Validate(c.batch).ok());
    EXPECT_EQ(StackNames(c.batch),
              (std::vector<std::string>{"do_syscall_64", "leaf chain.c:2", "middle chain.c:3",
                                        "outer chain.c:4", "main chain.c:5", "?"}));
    // Mapping, build id and address travel beside the lines.
    EXPECT_EQ(common::HexEncode(c.batch.mappings(0).build_id()), bin_.build_id);
  }
  size_t samples = 0;
  for (const Consumed& c : out) samples += batch::DecodeSamples(c.batch).size();
  EXPECT_EQ(samples, 12u);
  EXPECT_GT(Metric(port1, "fs_symbolizer_redis_up"), 0);
  // The chain binary and the unknown library were searched for; the latter found nowhere.
  EXPECT_EQ(Metric(port1, "fs_symbolizer_debug_searches_total"), 2);
  EXPECT_EQ(Metric(port1, "fs_symbolizer_negative_hits_total{cache=\"shared\"}"), 0);
  StopCleanly(*first);

  // A second instance (new group, empty LRU) re-reads the topic: every frame comes from Redis.
  auto [second, port2] = StartSymbolizer("sym-b");
  out = Consume(broker_->bootstrap(), std::string(topics::kSamplesSymbolized), 4);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(StackNames(out[3].batch), StackNames(out[0].batch));
  EXPECT_GE(Metric(port2, "fs_symbolizer_cache_hits_total{cache=\"shared\"}"), 4);
  // The unknown build id is not searched again: the first instance's negative entry in Redis
  // says no source has it.
  EXPECT_EQ(Metric(port2, "fs_symbolizer_debug_searches_total"), 0);
  EXPECT_EQ(Metric(port2, "fs_symbolizer_negative_hits_total{cache=\"shared\"}"), 1);

  // Redis dies mid-stream: batches keep flowing (resolved from DWARF), none lost. New return
  // addresses, so the frames miss the in-process LRU and Redis is really asked.
  redis_->Kill();
  Produce({RawBatch(bin_, 3, t0 + 2000000000, 3, /*ret_delta=*/5)});
  out = Consume(broker_->bootstrap(), std::string(topics::kSamplesSymbolized), 5);
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(StackNames(out[4].batch)[1], "leaf chain.c:2");
  EXPECT_EQ(Metric(port2, "fs_symbolizer_redis_up"), 0);
  StopCleanly(*second);
}

TEST_F(SymbolizerStage, ReplayWritesTheRangeToTheReplayTopicWithAnEpoch) {
  const int64_t t0 = 1795438862000000000;
  // Batch 2 holds samples on both sides of the range end: only those inside are kept.
  Produce({RawBatch(bin_, 1, t0, 4), RawBatch(bin_, 2, t0 + 10000000000, 4),
           RawBatch(bin_, 3, t0 + 60000000000, 4)});
  auto [replay, port] = StartSymbolizer(
      "sym-replay", {"--replay", "--from", std::to_string(t0 + 10000000000),
                     "--to", std::to_string(t0 + 10000002000), "--build-id", bin_.build_id,
                     "--set", "symbolizer.replay.epoch=7"});
  // It stops by itself once caught up.
  auto st = replay->Wait(90s);
  ASSERT_TRUE(st.ok()) << st.error();
  EXPECT_TRUE(st->exited && st->code == 0);
  std::vector<Consumed> out =
      Consume(broker_->bootstrap(), topics::Replay(topics::kSamplesSymbolized), 1, 20s);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(batch::DecodeSamples(out[0].batch).size(), 3u);  // t0+10s, +1us, +2us
  EXPECT_EQ(out[0].batch.symbol_epoch(), 7u);
  bool epoch_header = false;
  for (const kafka::Header& h : out[0].headers) epoch_header |= h.key == "symbol-epoch" && h.value == "7";
  EXPECT_TRUE(epoch_header);
  EXPECT_EQ(StackNames(out[0].batch)[1], "leaf chain.c:2");
}

}  // namespace
}  // namespace flamestream
