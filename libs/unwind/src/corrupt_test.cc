// BuildTable on damaged copies of libc (truncated, bytes overwritten in .eh_frame_hdr and
// .eh_frame): it must never crash, and must say what it dropped (an error, or a table with
// BuildStats::errors > 0) while keeping what still parses.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include "flamestream/unwind/table.h"
#include "test_util.h"

namespace flamestream::unwind {
namespace {

std::string LibcPath() { return testing::FindLoadedLibc().path; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void ExpectWellFormed(const UnwindTable& t) {
  for (size_t i = 0; i < t.rows.size(); ++i) {
    ASSERT_LE(t.rows[i].cfa_kind, FS_CFA_UNSUPPORTED);
    ASSERT_LE(t.rows[i].rbp_kind, FS_RBP_AT_CFA);
    ASSERT_LT(t.rows[i].pc, t.end - t.base);
    if (i > 0) {
      ASSERT_LT(t.rows[i - 1].pc, t.rows[i].pc);
    }
  }
}

class UnwindCorruptLibc : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = LibcPath();
    ASSERT_FALSE(path_.empty());
    image_ = ReadFile(path_);
    ASSERT_GT(image_.size(), 1u << 20);
    auto hdr = testing::FindSection(path_, ".eh_frame_hdr");
    auto eh = testing::FindSection(path_, ".eh_frame");
    ASSERT_TRUE(hdr && eh);
    hdr_ = *hdr;
    eh_ = *eh;
    Result<UnwindTable> clean = BuildTable(path_, &clean_stats_);
    ASSERT_TRUE(clean.ok());
    clean_ = std::move(*clean);
    char tmpl[] = "/tmp/fs-unwind-corrupt-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) (void)testing::RunCommand("rm -rf '" + dir_ + "'");
  }

  // Writes `image` to the temp dir and builds its table from the file.
  Result<UnwindTable> Build(const std::string& image, BuildStats* stats) {
    const std::string file = dir_ + "/libc.so.6";
    std::ofstream(file, std::ios::binary | std::ios::trunc).write(image.data(), image.size());
    return BuildTable(file, stats);
  }

  std::string path_;
  std::string image_;
  testing::Range hdr_;
  testing::Range eh_;
  UnwindTable clean_;
  BuildStats clean_stats_;
  std::string dir_;
};

TEST_F(UnwindCorruptLibc, TruncatedCopiesFailOrCountErrors) {
  const std::vector<size_t> sizes = {0,
                                     16,
                                     64,
                                     4096,
                                     image_.size() / 2,
                                     hdr_.offset + 8,
                                     hdr_.offset + (hdr_.end - hdr_.start) / 2,
                                     eh_.offset + 4,
                                     eh_.offset + (eh_.end - eh_.start) / 2,
                                     eh_.offset + (eh_.end - eh_.start) - 3,
                                     image_.size() - 1000,
                                     image_.size() - 1};
  for (size_t size : sizes) {
    SCOPED_TRACE("truncated to " + std::to_string(size));
    BuildStats stats;
    Result<UnwindTable> t = Build(image_.substr(0, size), &stats);
    if (t.ok()) {
      ExpectWellFormed(*t);
      EXPECT_GT(stats.errors, 0u) << t->rows.size() << " rows";
    }
  }
}

TEST_F(UnwindCorruptLibc, BadHeaderVersionFallsBackToWalkingEhFrame) {
  std::string image = image_;
  image[hdr_.offset] = 2;  // version 1 is the only one
  BuildStats stats;
  Result<UnwindTable> t = BuildTableFromImage(image, &stats);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_GT(stats.errors, 0u);
  EXPECT_NE(stats.first_error.find("version"), std::string::npos) << stats.first_error;
  // The FDEs found by walking .eh_frame give the very same table.
  EXPECT_EQ(t->rows.size(), clean_.rows.size()) << stats.errors << ": " << stats.first_error;
  EXPECT_EQ(t->base, clean_.base);
  EXPECT_EQ(t->end, clean_.end);
  EXPECT_EQ(stats.fdes, clean_stats_.fdes);
  EXPECT_GT(stats.fdes, 1000u);  // libc has thousands
}

TEST_F(UnwindCorruptLibc, HugeFdeCountIsRejected) {
  std::string image = image_;
  // fde_count follows the version/encodings (4 bytes) and eh_frame_ptr (sdata4).
  for (int i = 0; i < 4; ++i) image[hdr_.offset + 8 + i] = '\xff';
  BuildStats stats;
  Result<UnwindTable> t = BuildTableFromImage(image, &stats);
  ASSERT_TRUE(t.ok()) << t.status();
  ExpectWellFormed(*t);
  EXPECT_GT(stats.errors, 0u);
  EXPECT_NE(stats.first_error.find("fde_count"), std::string::npos) << stats.first_error;
  EXPECT_EQ(t->rows.size(), clean_.rows.size());  // .eh_frame itself is intact
}

TEST_F(UnwindCorruptLibc, GarbageInEhFrameKeepsTheRest) {
  std::string image = image_;
  const size_t at = eh_.offset + (eh_.end - eh_.start) / 2;
  for (size_t i = 0; i < 256; ++i) image[at + i] = '\xff';
  BuildStats stats;
  Result<UnwindTable> t = BuildTableFromImage(image, &stats);
  ASSERT_TRUE(t.ok()) << t.status();
  ExpectWellFormed(*t);
  EXPECT_GT(stats.errors, 0u);
  EXPECT_GT(t->rows.size(), clean_.rows.size() * 9 / 10);
}

TEST_F(UnwindCorruptLibc, GarbageInTheSearchTableKeepsTheRest) {
  std::string image = image_;
  const size_t at = hdr_.offset + (hdr_.end - hdr_.start) / 2;
  for (size_t i = 0; i < 64; ++i) image[at + i] = static_cast<char>(0x5a ^ i);
  BuildStats stats;
  Result<UnwindTable> t = BuildTableFromImage(image, &stats);
  ASSERT_TRUE(t.ok()) << t.status();
  ExpectWellFormed(*t);
  EXPECT_GT(stats.errors, 0u);
  // Unsorted: the table is set aside and .eh_frame walked instead.
  EXPECT_EQ(stats.first_error, ".eh_frame_hdr: search table not sorted");
  EXPECT_EQ(t->rows.size(), clean_.rows.size());
}

TEST_F(UnwindCorruptLibc, RandomByteFlipsNeverCrash) {
  std::mt19937_64 rng(13);
  for (int round = 0; round < 60; ++round) {
    std::string image = image_;
    const bool in_hdr = round % 3 == 0;
    const testing::Range& r = in_hdr ? hdr_ : eh_;
    std::uniform_int_distribution<size_t> pos(r.offset, r.offset + (r.end - r.start) - 1);
    const int flips = 1 + round % 16;
    for (int i = 0; i < flips; ++i) image[pos(rng)] ^= static_cast<char>(1 + rng() % 255);
    SCOPED_TRACE("round " + std::to_string(round));
    BuildStats stats;
    Result<UnwindTable> t = BuildTableFromImage(image, &stats);
    if (t.ok()) {
      ExpectWellFormed(*t);
    }
  }
}

TEST(UnwindBuildTable, RejectsWhatIsNotAnX86ElfFile) {
  const std::string fixture = std::string(FS_UNWIND_FIXTURE_DIR) + "/fp";
  std::string image = ReadFile(fixture);
  ASSERT_GT(image.size(), 64u);
  std::string arm = image;
  arm[18] = static_cast<char>(183);  // e_machine = EM_AARCH64
  arm[19] = 0;
  EXPECT_EQ(BuildTableFromImage(arm, nullptr).status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(BuildTableFromImage("not an elf file", nullptr).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildTable("/nonexistent/libc.so.6", nullptr).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(BuildTable("/tmp", nullptr).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flamestream::unwind
