#include "flamestream/correlate/interval_set.h"

#include <algorithm>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace flamestream::correlate {
namespace {

using Entry = IntervalSet::Entry;

Entry E(int64_t start, int64_t end, uint64_t id) {
  return Entry{.start = start, .end = end, .span_id = SpanId{id}, .ref = static_cast<uint32_t>(id)};
}

// Brute force: the innermost entry holding t among those with end >= min_end, in sort order.
int64_t BruteInnermost(const std::vector<Entry>& all, int64_t t, int64_t min_end) {
  const Entry* best = nullptr;
  for (const Entry& e : all) {
    if (e.start <= t && t <= e.end && e.end >= min_end) {
      if (best == nullptr || IntervalSet::Less(*best, e)) best = &e;
    }
  }
  return best == nullptr ? -1 : static_cast<int64_t>(best->ref);
}

TEST(IntervalSet, AssignsTimeToInnermostEntry) {
  IntervalSet set;
  ASSERT_TRUE(set.Insert(E(100, 500, 1)));
  ASSERT_TRUE(set.Insert(E(200, 300, 2)));
  ASSERT_TRUE(set.Insert(E(400, 450, 3)));
  ASSERT_TRUE(set.Insert(E(200, 250, 4)));  // same start as 2, ends first: more inner
  struct Case {
    int64_t t;
    int64_t want;  // ref, -1 for none
  };
  const Case cases[] = {{99, -1}, {100, 1}, {199, 1}, {200, 4}, {250, 4}, {251, 2}, {300, 2},
                        {301, 1}, {400, 3}, {450, 3}, {451, 1}, {500, 1}, {501, -1}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.t);
    const ptrdiff_t i = set.FindInnermost(c.t);
    EXPECT_EQ(i < 0 ? -1 : static_cast<int64_t>(set.at(static_cast<size_t>(i)).ref), c.want);
  }
}

TEST(IntervalSet, RejectsExactDuplicate) {
  IntervalSet set;
  EXPECT_TRUE(set.Insert(E(1, 2, 7)));
  EXPECT_FALSE(set.Insert(E(1, 2, 7)));
  EXPECT_EQ(set.size(), 1u);
}

TEST(IntervalSet, RemoveIfKeepsQueriesRight) {
  IntervalSet set;
  for (uint64_t i = 1; i <= 100; ++i) ASSERT_TRUE(set.Insert(E(static_cast<int64_t>(i) * 10, 2000, i)));
  EXPECT_EQ(set.FindInnermost(1500), 99);  // ref 100 at index 99
  EXPECT_EQ(set.RemoveIf([](const Entry& e) { return e.ref > 50; }), 50u);
  const ptrdiff_t i = set.FindInnermost(1500);
  ASSERT_GE(i, 0);
  EXPECT_EQ(set.at(static_cast<size_t>(i)).ref, 50u);
}

// Random sets of several sizes (below and above the linear-scan limit), random insertion
// order, interleaved removals and queries: always equal to brute force.
TEST(IntervalSet, MatchesBruteForceOnRandomSets) {
  std::mt19937_64 rng(42);
  for (size_t n : {1u, 5u, 33u, 100u, 1000u, 5000u}) {
    SCOPED_TRACE(n);
    IntervalSet set;
    std::vector<Entry> all;
    for (uint64_t i = 1; i <= n; ++i) {
      const int64_t start = static_cast<int64_t>(rng() % 100000);
      const int64_t len = (rng() % 4 == 0) ? 0 : static_cast<int64_t>(rng() % 20000);
      all.push_back(E(start, start + len, i));
    }
    std::shuffle(all.begin(), all.end(), rng);
    std::vector<Entry> inserted;
    for (size_t k = 0; k < all.size(); ++k) {
      ASSERT_TRUE(set.Insert(all[k]));
      inserted.push_back(all[k]);
      if (k % 97 == 0) {
        const int64_t t = static_cast<int64_t>(rng() % 120000);
        const ptrdiff_t i = set.FindInnermost(t);
        ASSERT_EQ(i < 0 ? -1 : static_cast<int64_t>(set.at(static_cast<size_t>(i)).ref),
                  BruteInnermost(inserted, t, t));
      }
      if (k % 211 == 210) {  // remove a random third
        const uint64_t salt = rng();
        auto gone = [salt](const Entry& e) { return (e.ref ^ salt) % 3 == 0; };
        set.RemoveIf(gone);
        std::erase_if(inserted, gone);
      }
    }
    for (int q = 0; q < 2000; ++q) {
      const int64_t t = static_cast<int64_t>(rng() % 120000);
      const int64_t min_end = (q % 2 == 0) ? t : t + static_cast<int64_t>(rng() % 10000);
      const ptrdiff_t i = set.FindInnermost(t, min_end);
      ASSERT_EQ(i < 0 ? -1 : static_cast<int64_t>(set.at(static_cast<size_t>(i)).ref),
                BruteInnermost(inserted, t, min_end))
          << "t=" << t << " min_end=" << min_end;
    }
  }
}

}  // namespace
}  // namespace flamestream::correlate
