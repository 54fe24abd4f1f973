#include "flamestream/proc/kallsyms.h"

#include <gtest/gtest.h>

namespace flamestream::proc {
namespace {

constexpr const char* kSample =
    "ffffffff81000000 T _stext\n"
    "ffffffff81000100 t helper\n"
    "ffffffff81000200 D some_data\n"
    "ffffffff81000300 T do_sys_openat2\n"
    "ffffffffc0a01000 t mod_fn\t[nf_tables]\n"
    "ffffffff81000000 A absolute_sym\n";

TEST(KernelSymbols, ResolvesToNearestTextSymbolBelow) {
  Result<KernelSymbols> ks = KernelSymbols::Parse(kSample);
  ASSERT_TRUE(ks.ok()) << ks.status();
  EXPECT_EQ(ks->size(), 4u);
  struct Case {
    uint64_t addr;
    std::string name;
  };
  const Case cases[] = {
      {0xffffffff81000000, "_stext+0x0"},
      {0xffffffff81000157, "helper+0x57"},
      {0xffffffff81000250, "helper+0x150"},  // data symbols are not functions
      {0xffffffff81000357, "do_sys_openat2+0x57"},
      {0xffffffffc0a01010, "mod_fn+0x10 [nf_tables]"},
      {0xffffffff80ffffff, "0xffffffff80ffffff"},
      {0xffffffffc0a01000 + KernelSymbols::kMaxOffset + 1, "0xffffffffc0b01001"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ks->Name(c.addr), c.name);
  }
}

TEST(KernelSymbols, HiddenAddressesAreAPreconditionFailure) {
  Result<KernelSymbols> ks =
      KernelSymbols::Parse("0000000000000000 T _stext\n0000000000000000 t helper\n");
  ASSERT_FALSE(ks.ok());
  EXPECT_EQ(ks.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(KernelSymbols::Parse("").ok());
}

TEST(KernelSymbols, LoadsRunningKernel) {
  Result<KernelSymbols> ks = KernelSymbols::Load();
  if (!ks.ok() && ks.error().code() == StatusCode::kFailedPrecondition) {
    GTEST_SKIP() << ks.status();
  }
  ASSERT_TRUE(ks.ok()) << ks.status();
  EXPECT_GT(ks->size(), 1000u);
}

}  // namespace
}  // namespace flamestream::proc
