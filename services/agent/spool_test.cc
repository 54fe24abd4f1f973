#include "spool.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace flamestream::agent {
namespace {

namespace fs = std::filesystem;

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("fs-spool-test-{}-{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<Spool> Open(uint64_t limit) {
    Result<std::unique_ptr<Spool>> s = Spool::Open({.dir = dir_.string(), .limit_bytes = limit});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Sequences in the spool, oldest first, consuming it.
  static std::vector<uint64_t> DrainAll(Spool& spool, std::vector<std::string>* bodies = nullptr) {
    std::vector<uint64_t> out;
    while (std::optional<Spool::Entry> e = spool.Front()) {
      out.push_back(e->sequence);
      if (bodies != nullptr) bodies->push_back(e->bytes);
      EXPECT_TRUE(spool.Remove(e->sequence).ok());
    }
    return out;
  }

  fs::path dir_;
};

TEST_F(SpoolTest, ServesBatchesInSequenceOrderWithTheirBytes) {
  std::unique_ptr<Spool> spool = Open(1 << 20);
  ASSERT_NE(spool, nullptr);
  // Appended out of order (a failed in-flight batch returns below newer ones).
  for (uint64_t seq : {11u, 12u, 10u, 13u}) {
    ASSERT_TRUE(spool->Append(seq, fmt::format("batch-{}", seq)).ok());
  }
  EXPECT_EQ(spool->count(), 4u);
  EXPECT_EQ(spool->bytes(), 4u * 8u);
  EXPECT_EQ(spool->max_sequence(), std::optional<uint64_t>(13));
  std::vector<std::string> bodies;
  EXPECT_EQ(DrainAll(*spool, &bodies), (std::vector<uint64_t>{10, 11, 12, 13}));
  EXPECT_EQ(bodies, (std::vector<std::string>{"batch-10", "batch-11", "batch-12", "batch-13"}));
  EXPECT_TRUE(spool->empty());
  EXPECT_EQ(spool->bytes(), 0u);
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(SpoolTest, DropsOldestWhenFullAndCountsThem) {
  std::unique_ptr<Spool> spool = Open(100);
  ASSERT_NE(spool, nullptr);
  const std::string body(30, 'x');
  for (uint64_t seq = 1; seq <= 5; ++seq) ASSERT_TRUE(spool->Append(seq, body).ok());
  // 3 x 30 bytes fit in 100: 1 and 2 were dropped to make room for 4 and 5.
  EXPECT_EQ(spool->count(), 3u);
  EXPECT_EQ(spool->bytes(), 90u);
  EXPECT_EQ(spool->stats().dropped, 2u);
  EXPECT_EQ(spool->stats().dropped_bytes, 60u);
  EXPECT_EQ(spool->stats().appended, 5u);
  EXPECT_EQ(DrainAll(*spool), (std::vector<uint64_t>{3, 4, 5}));
}

TEST_F(SpoolTest, RejectsABatchLargerThanTheLimitWithoutDroppingOthers) {
  std::unique_ptr<Spool> spool = Open(100);
  ASSERT_NE(spool, nullptr);
  ASSERT_TRUE(spool->Append(1, std::string(50, 'a')).ok());
  Status s = spool->Append(2, std::string(101, 'b'));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(spool->stats().dropped, 1u);
  EXPECT_EQ(DrainAll(*spool), (std::vector<uint64_t>{1}));
}

TEST_F(SpoolTest, ReopenFindsBatchesInOrderAndRemovesHalfWrittenFiles) {
  {
    std::unique_ptr<Spool> spool = Open(1 << 20);
    ASSERT_NE(spool, nullptr);
    for (uint64_t seq : {7u, 8u, 9u})
      ASSERT_TRUE(spool->Append(seq, "b" + std::to_string(seq)).ok());
    ASSERT_TRUE(spool->Remove(7).ok());
  }
  std::ofstream(dir_ / ".tmp-10") << "partial";     // crash mid-write
  std::ofstream(dir_ / "next-sequence") << "10\n";  // not a batch: ignored
  std::unique_ptr<Spool> spool = Open(1 << 20);
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->count(), 2u);
  EXPECT_EQ(spool->bytes(), 4u);
  EXPECT_FALSE(fs::exists(dir_ / ".tmp-10"));
  std::vector<std::string> bodies;
  EXPECT_EQ(DrainAll(*spool, &bodies), (std::vector<uint64_t>{8, 9}));
  EXPECT_EQ(bodies, (std::vector<std::string>{"b8", "b9"}));
}

TEST_F(SpoolTest, FileNamesSortLikeSequences) {
  std::unique_ptr<Spool> spool = Open(1 << 20);
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->PathOf(42), dir_.string() + "/00000000000000000042.batch");
  ASSERT_TRUE(spool->Append(9, "a").ok());
  ASSERT_TRUE(spool->Append(10, "b").ok());
  EXPECT_TRUE(fs::exists(spool->PathOf(9)));
  EXPECT_TRUE(fs::exists(spool->PathOf(10)));
  EXPECT_TRUE(spool->Remove(9).ok());
  EXPECT_TRUE(spool->Remove(9).ok());  // already gone: fine
  EXPECT_FALSE(fs::exists(spool->PathOf(9)));
  EXPECT_EQ(spool->count(), 1u);
}

}  // namespace
}  // namespace flamestream::agent
