#include "flamestream/kafka/ack_tracker.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace flamestream::kafka {
namespace {

const std::string kTopic = "flamestream.samples.raw.v1";

// One step of a scenario: track an input, or ack one output of an input; after each step the
// committable offset of partition 0 must be `want` (kOffsetInvalid: nothing committable yet).
struct Step {
  enum Kind { kTrack, kAck } kind;
  int64_t offset;
  uint32_t outputs;  // kTrack only
  int64_t want;
};

struct Scenario {
  const char* name;
  std::vector<Step> steps;
};

int64_t Committable(const AckTracker& t) {
  for (const TopicPartition& tp : t.CommittableOffsets()) {
    if (tp.topic == kTopic && tp.partition == 0) {
      return tp.offset;
    }
  }
  return kOffsetInvalid;
}

TEST(AckTracker, NeverCommitsPastAnUnackedRecord) {
  const std::vector<Scenario> scenarios = {
      {"in-order acks",
       {{Step::kTrack, 0, 1, kOffsetInvalid},
        {Step::kTrack, 1, 1, kOffsetInvalid},
        {Step::kAck, 0, 0, 1},
        {Step::kAck, 1, 0, 2}}},
      {"later input acked first waits for the earlier",
       {{Step::kTrack, 0, 1, kOffsetInvalid},
        {Step::kTrack, 1, 1, kOffsetInvalid},
        {Step::kTrack, 2, 1, kOffsetInvalid},
        {Step::kAck, 2, 0, kOffsetInvalid},
        {Step::kAck, 1, 0, kOffsetInvalid},
        {Step::kAck, 0, 0, 3}}},
      {"an input with several outputs needs all of them",
       {{Step::kTrack, 10, 3, kOffsetInvalid},
        {Step::kTrack, 11, 1, kOffsetInvalid},
        {Step::kAck, 10, 0, kOffsetInvalid},
        {Step::kAck, 11, 0, kOffsetInvalid},
        {Step::kAck, 10, 0, kOffsetInvalid},
        {Step::kAck, 10, 0, 12}}},
      {"zero outputs are ackable at once",
       {{Step::kTrack, 5, 0, 6},
        {Step::kTrack, 6, 0, 7},
        {Step::kTrack, 7, 2, 7},
        {Step::kTrack, 8, 0, 7},  // behind an unacked input: must wait
        {Step::kAck, 7, 0, 7},
        {Step::kAck, 7, 0, 9}}},
      {"gaps in offsets (compaction, markers)",
       {{Step::kTrack, 3, 1, kOffsetInvalid},
        {Step::kTrack, 9, 1, kOffsetInvalid},
        {Step::kAck, 9, 0, kOffsetInvalid},
        {Step::kAck, 3, 0, 10}}},
      {"middle ack moves nothing, front ack moves to the next unacked",
       {{Step::kTrack, 0, 1, kOffsetInvalid},
        {Step::kTrack, 1, 1, kOffsetInvalid},
        {Step::kTrack, 2, 1, kOffsetInvalid},
        {Step::kTrack, 3, 1, kOffsetInvalid},
        {Step::kAck, 1, 0, kOffsetInvalid},
        {Step::kAck, 3, 0, kOffsetInvalid},
        {Step::kAck, 0, 0, 2},
        {Step::kAck, 2, 0, 4}}},
  };
  for (const Scenario& sc : scenarios) {
    SCOPED_TRACE(sc.name);
    AckTracker t;
    for (size_t i = 0; i < sc.steps.size(); ++i) {
      const Step& st = sc.steps[i];
      SCOPED_TRACE(::testing::Message() << "step " << i);
      if (st.kind == Step::kTrack) {
        ASSERT_TRUE(t.Track(kTopic, 0, st.offset, st.outputs));
      } else {
        ASSERT_TRUE(t.Ack(kTopic, 0, st.offset));
      }
      EXPECT_EQ(Committable(t), st.want);
    }
    EXPECT_EQ(t.Pending(), 0u);
  }
}

TEST(AckTracker, RejectsUnknownAndExcessAcks) {
  AckTracker t;
  ASSERT_TRUE(t.Track(kTopic, 0, 4, 1));
  EXPECT_FALSE(t.Ack(kTopic, 0, 3));     // never tracked
  EXPECT_FALSE(t.Ack(kTopic, 1, 4));     // other partition
  EXPECT_FALSE(t.Ack(kTopic, 0, 4, 2));  // more than its outputs
  EXPECT_TRUE(t.Ack(kTopic, 0, 4));
  EXPECT_FALSE(t.Ack(kTopic, 0, 4));       // already fully acked and released
  EXPECT_FALSE(t.Track(kTopic, 0, 4, 1));  // not increasing
  EXPECT_FALSE(t.Track(kTopic, 0, 2, 1));
}

// An output the broker refused as too large is split into pieces after the fact: its input
// then waits for every piece, not for the refused record.
TEST(AckTracker, ExtendedInputWaitsForEveryPiece) {
  AckTracker t;
  ASSERT_TRUE(t.Track(kTopic, 0, 7, 2));  // two outputs; the second is refused
  ASSERT_TRUE(t.Ack(kTopic, 0, 7));
  ASSERT_TRUE(t.Extend(kTopic, 0, 7, 2));  // the refused one became 3 pieces
  EXPECT_EQ(Committable(t), kOffsetInvalid);
  ASSERT_TRUE(t.Ack(kTopic, 0, 7, 2));
  EXPECT_EQ(Committable(t), kOffsetInvalid);
  ASSERT_TRUE(t.Ack(kTopic, 0, 7));
  EXPECT_EQ(Committable(t), 8);
  EXPECT_FALSE(t.Extend(kTopic, 0, 7, 1));  // released
  EXPECT_FALSE(t.Extend(kTopic, 1, 7, 1));
}

TEST(AckTracker, KeepsPartitionsApartAndOffersOnlyAdvancedOnes) {
  AckTracker t;
  ASSERT_TRUE(t.Track(kTopic, 0, 0, 1));
  ASSERT_TRUE(t.Track(kTopic, 1, 0, 1));
  ASSERT_TRUE(t.Track("other", 0, 7, 0));
  ASSERT_TRUE(t.Ack(kTopic, 1, 0));
  EXPECT_EQ(t.CommittableOffsets(), (TopicPartitions{{kTopic, 1, 1}, {"other", 0, 8}}));
  t.MarkCommitted({{kTopic, 1, 1}});
  EXPECT_EQ(t.CommittableOffsets(), (TopicPartitions{{"other", 0, 8}}));
  t.Forget({{"other", 0}});
  EXPECT_EQ(t.CommittableOffsets(), TopicPartitions{});
  EXPECT_EQ(t.Pending(), 1u);
  ASSERT_TRUE(t.Ack(kTopic, 0, 0));
  EXPECT_EQ(t.CommittableOffsets(), (TopicPartitions{{kTopic, 0, 1}}));
}

TEST(AckTracker, ConcurrentAcksFromAnotherThread) {
  AckTracker t;
  constexpr int kInputs = 20000;
  for (int i = 0; i < kInputs; ++i) {
    ASSERT_TRUE(t.Track(kTopic, 0, i, 2));
  }
  // Two threads ack one output each of every input, in opposite orders.
  std::thread forward([&] {
    for (int i = 0; i < kInputs; ++i) (void)t.Ack(kTopic, 0, i);
  });
  std::thread backward([&] {
    for (int i = kInputs - 1; i >= 0; --i) (void)t.Ack(kTopic, 0, i);
  });
  forward.join();
  backward.join();
  EXPECT_EQ(t.Pending(), 0u);
  EXPECT_EQ(t.CommittableOffsets(), (TopicPartitions{{kTopic, 0, kInputs}}));
}

TEST(AckTracker, RewindLetsTheRereadRecordsInButNeverCommitsBackwards) {
  AckTracker t;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(t.Track(kTopic, 0, i, 0));
  t.MarkCommitted(t.CommittableOffsets());  // committed 10
  ASSERT_TRUE(t.Track(kTopic, 0, 10, 1));   // in flight
  EXPECT_FALSE(t.Track(kTopic, 0, 7, 0));   // a repeat: ignored
  t.Rewind(kTopic, 0);                      // a seek back to 7
  EXPECT_FALSE(t.Ack(kTopic, 0, 10));       // forgotten with the rewind
  EXPECT_EQ(t.Pending(), 0u);
  for (int i = 7; i < 10; ++i) ASSERT_TRUE(t.Track(kTopic, 0, i, 0));
  EXPECT_TRUE(t.CommittableOffsets().empty());  // 10 again: not past the commit
  ASSERT_TRUE(t.Track(kTopic, 0, 10, 0));
  ASSERT_TRUE(t.Track(kTopic, 0, 11, 0));
  EXPECT_EQ(t.CommittableOffsets(), (TopicPartitions{{kTopic, 0, 12}}));
  t.Rewind(kTopic, 1);  // an unknown partition: nothing happens
  EXPECT_EQ(t.CommittableOffsets(), (TopicPartitions{{kTopic, 0, 12}}));
}

}  // namespace
}  // namespace flamestream::kafka
