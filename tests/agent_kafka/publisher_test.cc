// The Publisher against the dev broker, fed synthetic samples (no BPF, no root): batching,
// keys, process records, and ordered delivery through a full broker outage and a restart.
#include "publisher.h"

#include <gtest/gtest.h>

#include <set>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "consume_util.h"
#include "flamestream/batch/batch.h"
#include "flamestream/common/strings.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/proc/build_id.h"
#include "flamestream/proc/process.h"
#include "flamestream/testing/dev_broker.h"

namespace flamestream::testing_agent_kafka {
namespace {

namespace fs = std::filesystem;
using agent::Publisher;
using agent::PublisherOptions;
using agent::PublisherStats;
using agent::ResolvedSample;
using namespace std::chrono_literals;

constexpr int kBrokers = 3;

class PublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<testing::DevBroker>> b =
        testing::DevBroker::Start({.brokers = kBrokers});
    ASSERT_TRUE(b.ok()) << b.status();
    broker_ = std::move(*b);
    spool_dir_ = fs::temp_directory_path() /
                 fmt::format("fs-publisher-test-{}-{}", ::getpid(),
                             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(spool_dir_);
    Result<proc::ProcessInfo> self = proc::ReadProcessInfo(static_cast<uint32_t>(::getpid()));
    ASSERT_TRUE(self.ok()) << self.status();
    self_ = *self;
  }
  void TearDown() override { fs::remove_all(spool_dir_); }

  PublisherOptions Options() {
    return {.cluster = "Test",
            .node = "Node-A",
            .agent_id = "test/node-a/0",
            .frequency_hz = 99,
            .batch_interval = 100ms,
            .batch_max_samples = 10000,
            .spool = {.dir = spool_dir_.string(), .limit_bytes = 64 << 20},
            .retry_backoff = 200ms,
            .kafka = {{"bootstrap.servers", broker_->bootstrap()}}};
  }

  std::unique_ptr<Publisher> Create(PublisherOptions o) {
    Result<std::unique_ptr<Publisher>> p =
        Publisher::Create(std::move(o), &clock_, nullptr, &metrics_);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  ResolvedSample Sample(uint64_t n) {
    ResolvedSample s;
    s.pid = self_.pid;
    s.tid = self_.pid;
    s.wall_ns = 1'800'000'000'000'000'000ull + n;
    s.comm = "publisher_test";
    s.user.push_back({.pid = self_.pid, .address = 0x1000 + n % 7, .return_address = false});
    s.user.push_back({.pid = self_.pid, .address = 0x2000, .return_address = true});
    return s;
  }

  Status AllBrokers(const char* verb) {
    for (int i = 1; i <= kBrokers; ++i) {
      FS_RETURN_IF_ERROR(broker_->Command(fmt::format("broker {} {}", i, verb)));
    }
    return OkStatus();
  }

  static uint64_t TotalSamples(const Published& p) {
    uint64_t n = 0;
    for (const RawRecord& r : p.batches) n += static_cast<uint64_t>(batch::SampleCount(r.batch));
    return n;
  }

  std::unique_ptr<testing::DevBroker> broker_;
  fs::path spool_dir_;
  proc::ProcessInfo self_;
  bpf::ClockOffset clock_;
  obs::Registry metrics_;
};

// Checks the delivery contract: one key, one partition, sequences first..next-1 each exactly
// once in increasing order.
void ExpectContiguous(const Published& got, uint64_t first, uint64_t next) {
  std::vector<uint64_t> want;
  for (uint64_t s = first; s < next; ++s) want.push_back(s);
  EXPECT_EQ(Sequences(got), want);
  for (const RawRecord& r : got.batches) {
    EXPECT_EQ(r.key, "test/node-a");
    EXPECT_EQ(r.partition, got.batches.front().partition);
  }
}

TEST_F(PublisherTest, PublishesKeyedRawBatchesAndOneProcessRecord) {
  std::unique_ptr<Publisher> pub = Create(Options());
  ASSERT_NE(pub, nullptr);
  EXPECT_EQ(pub->key(), "test/node-a");
  pub->OnProcess(self_);
  for (uint64_t i = 0; i < 300; ++i) {
    pub->OnSample(Sample(i), self_);
    if (i % 100 == 99) std::this_thread::sleep_for(150ms);  // spans several batch intervals
  }
  pub->Stop(10s);
  const PublisherStats& st = pub->stats();
  EXPECT_EQ(st.spooled.load(), 0u);
  EXPECT_EQ(st.dropped.load(), 0u);
  EXPECT_EQ(st.dropped_samples.load(), 0u);
  EXPECT_GE(st.published.load(), 2u);
  EXPECT_EQ(st.process_records.load(), 1u);

  const std::string pkey = fmt::format("test/node-a/{}/{}", self_.pid, self_.start_ticks);
  Published got = ConsumeUntil(
      broker_->bootstrap(),
      [&](const Published& p) {
        return p.batches.size() >= st.published.load() && p.processes.contains(pkey);
      },
      30s);
  EXPECT_EQ(got.undecodable, 0);
  ASSERT_EQ(got.batches.size(), st.published.load());
  ExpectContiguous(got, st.first_sequence.load(), st.next_sequence.load());
  EXPECT_EQ(TotalSamples(got), 300u);
  for (const RawRecord& r : got.batches) {
    EXPECT_EQ(r.batch.id().agent_id(), "test/node-a/0");
    EXPECT_EQ(r.batch.stage(), v1::STAGE_RAW);
    EXPECT_EQ(r.batch.frequency_hz(), 99u);
  }
  ASSERT_TRUE(got.processes.contains(pkey));
  const v1::ProcessRecord& rec = got.processes.at(pkey);
  EXPECT_EQ(rec.cluster(), "test");
  EXPECT_EQ(rec.node(), "node-a");
  EXPECT_EQ(rec.host_pid(), self_.pid);
  EXPECT_EQ(rec.start_time_ticks(), self_.start_ticks);
  EXPECT_EQ(rec.comm(), self_.comm);
  EXPECT_EQ(rec.exe(), self_.exe);
  EXPECT_TRUE(rec.cmdline().empty());  // agent.cmdline off: ProcessInfo has none
  Result<std::string> id = proc::ReadBuildId("/proc/self/exe");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(common::HexEncode(rec.exe_build_id()), *id);
  EXPECT_GT(rec.observed_unix_ns(), 0);
}

// A batch over message.max.bytes would fail forever (and, spooled, block every batch behind
// it): it goes out as pieces, each a batch with its own sequence; nothing is spooled or lost.
TEST_F(PublisherTest, BatchOverTheMessageLimitGoesOutInPiecesWithFreshSequences) {
  PublisherOptions o = Options();
  o.kafka["message.max.bytes"] = "20000";
  o.batch_interval = 2s;  // one big batch
  std::unique_ptr<Publisher> pub = Create(std::move(o));
  ASSERT_NE(pub, nullptr);
  pub->OnProcess(self_);
  // Distinct stacks, so the batch is large: each sample has its own leaf address.
  for (uint64_t i = 0; i < 6000; ++i) {
    ResolvedSample s = Sample(i);
    s.user.front().address = 0x100000 + i * 16;
    pub->OnSample(s, self_);
  }
  pub->Stop(20s);
  const PublisherStats& st = pub->stats();
  EXPECT_EQ(st.spooled.load(), 0u);
  EXPECT_EQ(st.dropped.load(), 0u);
  EXPECT_GT(st.published.load(), 2u);
  Published got = ConsumeUntil(
      broker_->bootstrap(),
      [&](const Published& p) { return p.batches.size() >= st.published.load(); }, 30s);
  EXPECT_EQ(got.undecodable, 0);
  ASSERT_EQ(got.batches.size(), st.published.load());
  EXPECT_EQ(TotalSamples(got), 6000u);
  std::set<uint64_t> sequences;
  for (const RawRecord& r : got.batches) {
    EXPECT_LE(r.batch.ByteSizeLong(), 20000u);
    EXPECT_EQ(r.batch.id().part_size(), 0);  // pieces are batches of their own
    sequences.insert(r.batch.id().sequence());
  }
  EXPECT_EQ(sequences.size(), got.batches.size());
  // A restart continues after every sequence the pieces took.
  std::unique_ptr<Publisher> again = Create(Options());
  ASSERT_NE(again, nullptr);
  EXPECT_GT(again->stats().first_sequence.load(), *sequences.rbegin());
  again->Stop(5s);
}

TEST_F(PublisherTest, SpoolsWhileEveryBrokerIsDownAndDeliversAllInOrder) {
  std::unique_ptr<Publisher> pub = Create(Options());
  ASSERT_NE(pub, nullptr);
  pub->OnProcess(self_);
  uint64_t fed = 0;
  auto feed = [&](std::chrono::milliseconds d) {
    const auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
      pub->OnSample(Sample(fed++), self_);
      std::this_thread::sleep_for(5ms);
    }
  };
  feed(700ms);
  ASSERT_TRUE(AllBrokers("down").ok());
  feed(2500ms);
  const uint64_t spooled_during_outage = pub->stats().spooled.load();
  ASSERT_TRUE(AllBrokers("up").ok());
  feed(2000ms);
  pub->Stop(20s);
  const PublisherStats& st = pub->stats();
  EXPECT_GE(spooled_during_outage, 5u) << "the outage should have spooled batches";
  EXPECT_EQ(st.dropped.load(), 0u);
  EXPECT_EQ(st.dropped_samples.load(), 0u);
  EXPECT_EQ(st.published.load(), st.next_sequence.load() - st.first_sequence.load());
  EXPECT_EQ(metrics_.Gauge("fs_agent_spool_batches", "").value(), 0.0);

  Published got = ConsumeUntil(
      broker_->bootstrap(),
      [&](const Published& p) { return p.batches.size() >= st.published.load(); }, 30s);
  ExpectContiguous(got, st.first_sequence.load(), st.next_sequence.load());
  EXPECT_EQ(TotalSamples(got), fed);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(spool_dir_)) {
    if (e.path().extension() == ".batch") left.push_back(e.path().filename());
  }
  EXPECT_TRUE(left.empty()) << common::Join(left, ",");
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::string text;
  std::getline(in, text);
  return text;
}

TEST_F(PublisherTest, ReservesSequencesAheadSoACrashNeverReusesThem) {
  std::unique_ptr<Publisher> pub = Create(Options());
  ASSERT_NE(pub, nullptr);
  EXPECT_EQ(pub->stats().first_sequence.load(), 0u);
  // While running, the file promises the whole lease: a crash restarts at 1024.
  EXPECT_EQ(ReadFile(spool_dir_ / "next-sequence"), "1024");
  pub->OnSample(Sample(1), self_);
  pub->Stop(10s);
  EXPECT_EQ(pub->stats().next_sequence.load(), 1u);
  // A clean stop records the exact next sequence.
  EXPECT_EQ(ReadFile(spool_dir_ / "next-sequence"), "1");
}

TEST_F(PublisherTest, LeavesUnsentBatchesSpooledAndSendsThemFirstOnRestart) {
  ASSERT_TRUE(AllBrokers("down").ok());
  uint64_t first_run_next = 0;
  uint64_t first_run_first = 0;
  {
    std::unique_ptr<Publisher> pub = Create(Options());
    ASSERT_NE(pub, nullptr);
    for (uint64_t i = 0; i < 40; ++i) {
      pub->OnSample(Sample(i), self_);
      std::this_thread::sleep_for(10ms);
    }
    pub->Stop(500ms);
    EXPECT_EQ(pub->stats().published.load(), 0u);
    first_run_first = pub->stats().first_sequence.load();
    first_run_next = pub->stats().next_sequence.load();
    EXPECT_GE(first_run_next - first_run_first, 3u);
  }
  size_t spooled_files = 0;
  for (const auto& e : fs::directory_iterator(spool_dir_)) {
    spooled_files += e.path().extension() == ".batch" ? 1 : 0;
  }
  EXPECT_EQ(spooled_files, first_run_next - first_run_first);

  ASSERT_TRUE(AllBrokers("up").ok());
  std::unique_ptr<Publisher> pub = Create(Options());
  ASSERT_NE(pub, nullptr);
  EXPECT_EQ(pub->stats().first_sequence.load(), first_run_next);  // sequences continue
  for (uint64_t i = 0; i < 20; ++i) {
    pub->OnSample(Sample(100 + i), self_);
    std::this_thread::sleep_for(10ms);
  }
  pub->Stop(20s);
  const uint64_t total = pub->stats().next_sequence.load() - first_run_first;
  EXPECT_EQ(pub->stats().published.load(), total);
  Published got = ConsumeUntil(
      broker_->bootstrap(), [&](const Published& p) { return p.batches.size() >= total; }, 30s);
  ExpectContiguous(got, first_run_first, pub->stats().next_sequence.load());
  EXPECT_EQ(TotalSamples(got), 60u);
}

}  // namespace
}  // namespace flamestream::testing_agent_kafka
