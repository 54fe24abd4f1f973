#include "flamestream/common/status.h"

#include <gtest/gtest.h>

#include "flamestream/common/strings.h"

namespace flamestream {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) {
    return InvalidArgument("{} is odd", x);
  }
  return x / 2;
}

Result<int> Quarter(int x) {
  FS_ASSIGN_OR_RETURN(int h, Half(x));
  FS_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(Result, PropagatesTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.error().ToString(), "INVALID_ARGUMENT: 3 is odd");
  EXPECT_EQ(r.value_or(-1), -1);
}

TEST(Result, OkStatusIsNotAValue) {
  Result<int> r = OkStatus();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kInternal);
}

TEST(Status, ContextAndErrno) {
  Status s = ErrnoError(ENOENT, "open /nope").WithContext("loading config");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "loading config: open /nope: No such file or directory");
  EXPECT_TRUE(OkStatus().WithContext("x").ok());
}

TEST(Strings, SplitJoinHexParseInt) {
  EXPECT_EQ(common::Split("a,b,,c", ','), (std::vector<std::string>{"a", "b", "", "c"}));
  EXPECT_EQ(common::SplitNonEmpty(" a, ,b ", ','), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(common::Join({"x", "y"}, ";"), "x;y");
  EXPECT_EQ(common::HexEncode(std::string("\x01\xab", 2)), "01ab");
  EXPECT_EQ(*common::HexDecode("01AB"), std::string("\x01\xab", 2));
  EXPECT_FALSE(common::HexDecode("0g").ok());
  EXPECT_EQ(*common::ParseInt<int64_t>("-42"), -42);
  EXPECT_EQ(*common::ParseInt<uint64_t>("0x1a2b", 16), 0x1a2bu);
  EXPECT_FALSE(common::ParseInt<int>("12abc").ok());
  EXPECT_FALSE(common::ParseInt<uint8_t>("300").ok());
  EXPECT_EQ(common::ReplaceAll("a;b;c", ";", ":"), "a:b:c");
}

}  // namespace
}  // namespace flamestream
