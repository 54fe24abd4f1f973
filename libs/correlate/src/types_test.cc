#include "flamestream/correlate/types.h"

#include <gtest/gtest.h>

namespace flamestream::correlate {
namespace {

TEST(TraceId, RoundTripsBytesAndOrdersLikeBytes) {
  const std::string bytes("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\xff", 16);
  const TraceId id = TraceId::FromBytes(bytes);
  EXPECT_EQ(id.ToBytes(), bytes);
  EXPECT_EQ(id.ToHex(), "0102030405060708090a0b0c0d0e0fff");
  EXPECT_LT(TraceId::FromBytes(std::string(15, '\0') + "\x01"),
            TraceId::FromBytes(std::string("\x01") + std::string(15, '\0')));
  EXPECT_TRUE(TraceId::FromBytes("short").empty());
}

TEST(SpanId, RoundTripsBytes) {
  const std::string bytes("\xde\xad\xbe\xef\x00\x00\x00\x01", 8);
  const SpanId id = SpanId::FromBytes(bytes);
  EXPECT_EQ(id.value, 0xdeadbeef00000001ULL);
  EXPECT_EQ(id.ToBytes(), bytes);
  EXPECT_EQ(id.ToHex(), "deadbeef00000001");
  EXPECT_TRUE(SpanId::FromBytes("123456789").empty());
}

}  // namespace
}  // namespace flamestream::correlate
