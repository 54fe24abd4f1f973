#include <algorithm>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "flamestream/bpf/capabilities.h"
#include "flamestream/bpf/sampler.h"
#include "profile.h"

namespace flamestream::bpf {
namespace {

std::vector<uint8_t> Record(uint32_t kind, uint16_t kdepth, uint16_t udepth, size_t frames_present,
                            const char* comm = "worker") {
  std::vector<uint8_t> buf(sizeof(fs_event_header) + frames_present * 8);
  fs_event_header h{};
  h.ts_ns = 123456789;
  h.kind = kind;
  h.pid = 42;
  h.tid = 43;
  h.cpu = 1;
  h.flags = FS_FLAG_IN_KERNEL;
  h.kernel_depth = kdepth;
  h.user_depth = udepth;
  std::memcpy(h.comm, comm, std::min(sizeof(h.comm), std::strlen(comm)));
  std::memcpy(buf.data(), &h, sizeof(h));
  for (size_t i = 0; i < frames_present; ++i) {
    const uint64_t v = 0x1000 + i;
    std::memcpy(buf.data() + sizeof(h) + i * 8, &v, 8);
  }
  return buf;
}

TEST(DecodeRecord, SplitsKernelThenUserFrames) {
  auto buf = Record(FS_EVENT_SAMPLE, 2, 3, 5);
  Result<RawSample> s = DecodeRecord(buf.data(), buf.size());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->kind, EventKind::kSample);
  EXPECT_EQ(s->monotonic_ns, 123456789u);
  EXPECT_EQ(s->pid, 42u);
  EXPECT_EQ(s->tid, 43u);
  EXPECT_EQ(s->cpu, 1u);
  EXPECT_EQ(s->flags, SampleFlags::kInKernel);
  EXPECT_EQ(s->comm, "worker");
  EXPECT_EQ(s->kernel_frames, (std::vector<uint64_t>{0x1000, 0x1001}));
  EXPECT_EQ(s->user_frames, (std::vector<uint64_t>{0x1002, 0x1003, 0x1004}));
}

TEST(DecodeRecord, FullLengthCommIsNotOverrun) {
  auto buf = Record(FS_EVENT_EXEC, 0, 0, 0, "0123456789abcdefXYZ");
  Result<RawSample> s = DecodeRecord(buf.data(), buf.size());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->kind, EventKind::kExec);
  EXPECT_EQ(s->comm, "0123456789abcdef");
}

TEST(DecodeRecord, RejectsMalformedRecords) {
  struct Case {
    const char* name;
    std::vector<uint8_t> buf;
  };
  std::vector<Case> cases = {
      {"empty", {}},
      {"short header", std::vector<uint8_t>(sizeof(fs_event_header) - 1)},
      {"unknown kind 0", Record(0, 0, 0, 0)},
      {"unknown kind 9", Record(9, 0, 0, 0)},
      {"frames missing", Record(FS_EVENT_SAMPLE, 2, 3, 4)},
      {"kernel too deep", Record(FS_EVENT_SAMPLE, FS_MAX_KERNEL_STACK + 1, 0,
                                 FS_MAX_KERNEL_STACK + 1)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Result<RawSample> s = DecodeRecord(c.buf.data(), c.buf.size());
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.error().code(), StatusCode::kDataLoss);
  }
}

TEST(Sampler, RejectsOutOfRangeOptionsBeforeLoading) {
  struct Case {
    const char* name;
    SamplerConfig config;
  };
  SamplerConfig zero_hz;
  zero_hz.frequency_hz = 0;
  SamplerConfig too_fast;
  too_fast.frequency_hz = kMaxFrequencyHz + 1;
  SamplerConfig deep;
  deep.user_stack_depth = kMaxUserStackDepth + 1;
  SamplerConfig ring;
  ring.ring_bytes = 3 * 4096;
  for (const Case& c : {Case{"zero hz", zero_hz}, Case{"too fast", too_fast},
                        Case{"too deep", deep}, Case{"ring not pow2", ring}}) {
    SCOPED_TRACE(c.name);
    auto s = Sampler::Create(c.config, [](RawSample&&) {});
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code(), StatusCode::kInvalidArgument);
  }
}

TEST(Capabilities, NamesMatchKernelNames) {
  EXPECT_EQ(CapabilityName(Capability::kBpf), "CAP_BPF");
  EXPECT_EQ(CapabilityName(Capability::kPerfmon), "CAP_PERFMON");
  EXPECT_EQ(CapabilityName(Capability::kSysPtrace), "CAP_SYS_PTRACE");
  EXPECT_EQ(CapabilityName(Capability::kSysResource), "CAP_SYS_RESOURCE");
}

TEST(Capabilities, CheckNamesEveryMissingCapability) {
  Status s = CheckSamplerCapabilities();
  bool all = true;
  for (Capability cap : RequiredCapabilities()) {
    const bool has = HasCapability(cap);
    all = all && has;
    if (!has) {
      EXPECT_NE(s.message().find(CapabilityName(cap)), std::string::npos) << s;
    } else {
      EXPECT_EQ(s.message().find(CapabilityName(cap)), std::string::npos) << s;
    }
  }
  EXPECT_EQ(s.ok(), all);
}

}  // namespace
}  // namespace flamestream::bpf
