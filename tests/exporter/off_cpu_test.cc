// Off-CPU samples (Samples.profile_type = OFF_CPU, value_ns = time blocked) leave every sink as
// their own profile: a separate series with an off_cpu/nanoseconds sample type, never mixed into
// the CPU profile of the same service.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/builder.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/profile/aggregator.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/profile/test_batches.h"
#include "flamestream/sinks/file_sink.h"
#include "flamestream/sinks/otlp_sink.h"
#include "flamestream/sinks/pyroscope_sink.h"
#include "test_util.h"

namespace flamestream::exporter_test {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kBlockedNs = 7'000'000;  // each off-CPU event: 7 ms blocked

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Totals {
  std::map<std::string, int64_t> cpu_count;      // service -> CPU samples
  std::map<std::string, int64_t> off_cpu_nanos;  // service -> ns blocked
};

// Every third sample of each batch becomes an off-CPU event of kBlockedNs.
std::vector<v1::SampleBatch> MixedBatches() {
  std::vector<v1::SampleBatch> out;
  for (v1::SampleBatch b : StandardBatches()) {
    EXPECT_TRUE(batch::RewriteSamples(b, [](batch::SampleInput& in, size_t i) {
                  if (i % 3 == 0) {
                    in.profile_type = v1::PROFILE_TYPE_OFF_CPU;
                    in.value_ns = kBlockedNs;
                  }
                  return true;
                }).ok());
    out.push_back(std::move(b));
  }
  return out;
}

// What the sinks must show, from the batches (service names as the aggregator derives them).
Totals TotalsOf(const std::vector<v1::SampleBatch>& batches) {
  Totals t;
  profile::Aggregator agg({.granularity = profile::SeriesGranularity::kService});
  for (const v1::SampleBatch& b : batches) (void)agg.Add(b);
  for (auto& w : agg.TakeAll()) {
    for (const auto& [key, v] : w->samples) {
      const profile::SeriesKey& sk = w->series[key.series].key;
      if (sk.profile == v1::PROFILE_TYPE_OFF_CPU) {
        t.off_cpu_nanos[sk.service] += v.nanos;
      } else {
        t.cpu_count[sk.service] += v.count;
      }
    }
  }
  return t;
}

std::string TypeOf(const perftools::profiles::Profile& p, int i) {
  return p.string_table(static_cast<int>(p.sample_type(i).type())) + "/" +
         p.string_table(static_cast<int>(p.sample_type(i).unit()));
}

TEST(OffCpuExport, BatchesCarryTheProfileTypeColumnThroughTheBuilder) {
  const std::vector<v1::SampleBatch> batches = MixedBatches();
  size_t off = 0, all = 0;
  for (const v1::SampleBatch& b : batches) {
    ASSERT_TRUE(batch::Validate(b).ok());
    for (const batch::SampleRow& r : batch::DecodeSamples(b)) {
      ++all;
      if (r.profile_type == v1::PROFILE_TYPE_OFF_CPU) {
        ++off;
        EXPECT_EQ(r.value_ns, kBlockedNs);
      }
    }
  }
  EXPECT_GT(off, 0u);
  EXPECT_LT(off, all);
  // An unknown profile type is rejected, naming the column.
  v1::SampleBatch bad = batches[0];
  bad.mutable_samples()->set_profile_type(0, static_cast<v1::ProfileType>(7));
  const Status st = batch::Validate(bad);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("profile_type"), std::string::npos) << st;
}

TEST(OffCpuExport, FileSinkWritesAnOffCpuProfilePerServiceBesideTheCpuOne) {
  const std::vector<v1::SampleBatch> batches = MixedBatches();
  const Totals want = TotalsOf(batches);
  ASSERT_FALSE(want.off_cpu_nanos.empty());
  TempDir dir;
  sinks::FileSink sink({.out_dir = dir.path()});
  profile::Aggregator agg({.labels = sink.labels(), .granularity = sink.granularity()});
  for (const auto& b : batches) (void)agg.Add(b);
  std::map<std::string, int64_t> got_nanos, got_count;
  for (auto& w : agg.TakeAll()) {
    ASSERT_TRUE(sink.Export(*w).ok());
    for (const auto& [service, nanos] : want.off_cpu_nanos) {
      for (const char* suffix : {"", ".off_cpu"}) {
        const std::string path = sink.WindowPath(service + suffix, w->start_ns);
        if (!fs::exists(path)) continue;
        Result<perftools::profiles::Profile> p = profile::DecodePprof(Slurp(path));
        ASSERT_TRUE(p.ok()) << p.status();
        const bool off = std::string(suffix) == ".off_cpu";
        EXPECT_EQ(TypeOf(*p, 1), off ? "off_cpu/nanoseconds" : "cpu/nanoseconds") << path;
        for (const auto& s : p->sample()) {
          if (off) {
            got_nanos[service] += s.value(1);
          } else {
            got_count[service] += s.value(0);
          }
        }
      }
    }
  }
  for (const auto& [service, nanos] : want.off_cpu_nanos) {
    EXPECT_EQ(got_nanos[service], nanos) << service;
    EXPECT_EQ(got_count[service], want.cpu_count.at(service)) << service;
    // The flame-graph views of the off-CPU profile weigh stacks in microseconds blocked.
    const std::string folded =
        dir.path() + "/" + sinks::SafeFileName(service + ".off_cpu") + ".folded";
    ASSERT_TRUE(fs::exists(folded)) << folded;
    std::istringstream text(Slurp(folded));
    int64_t us = 0;
    for (std::string line; std::getline(text, line);) {
      us += std::stoll(line.substr(line.rfind(' ') + 1));
    }
    EXPECT_NEAR(static_cast<double>(us), static_cast<double>(nanos) / 1000, 1.0 * 100) << service;
  }
}

TEST(OffCpuExport, PyroscopeGetsAnOffCpuSeriesAndOtlpAnOffCpuSampleType) {
  const std::vector<v1::SampleBatch> batches = MixedBatches();
  const Totals want = TotalsOf(batches);
  profile::Aggregator agg({.granularity = profile::SeriesGranularity::kServiceHost});
  for (const auto& b : batches) (void)agg.Add(b);
  std::map<std::string, int64_t> pyro_nanos, otlp_nanos;
  for (auto& w : agg.TakeAll()) {
    Result<std::vector<push::v1::PushRequest>> reqs = sinks::BuildPushRequests(*w, {});
    ASSERT_TRUE(reqs.ok()) << reqs.status();
    for (const auto& req : *reqs) {
      for (const auto& series : req.series()) {
        std::string name, service;
        for (const auto& l : series.labels()) {
          if (l.name() == "__name__") name = l.value();
          if (l.name() == "service_name") service = l.value();
        }
        ASSERT_TRUE(name == "process_cpu" || name == "off_cpu") << name;
        for (const auto& raw : series.samples()) {
          Result<perftools::profiles::Profile> p = profile::DecodePprof(raw.raw_profile());
          ASSERT_TRUE(p.ok());
          EXPECT_EQ(TypeOf(*p, 1), name == "off_cpu" ? "off_cpu/nanoseconds" : "cpu/nanoseconds");
          if (name != "off_cpu") continue;
          for (const auto& s : p->sample()) pyro_nanos[service] += s.value(1);
        }
      }
    }
    const auto otlp = sinks::BuildExportRequest(*w, {});
    const auto& d = otlp.dictionary();
    for (const auto& rp : otlp.resource_profiles()) {
      std::string service;
      for (const auto& a : rp.resource().attributes()) {
        if (a.key() == "service.name") service = a.value().string_value();
      }
      for (const auto& sp : rp.scope_profiles()) {
        for (const auto& p : sp.profiles()) {
          const std::string type = d.string_table(p.sample_type().type_strindex()) + "/" +
                                   d.string_table(p.sample_type().unit_strindex());
          ASSERT_TRUE(type == "samples/count" || type == "off_cpu/nanoseconds") << type;
          if (type != "off_cpu/nanoseconds") continue;
          for (const auto& s : p.samples()) {
            for (int64_t v : s.values()) otlp_nanos[service] += v;
          }
        }
      }
    }
  }
  for (const auto& [service, nanos] : want.off_cpu_nanos) {
    EXPECT_EQ(pyro_nanos[service], nanos) << service;
    EXPECT_EQ(otlp_nanos[service], nanos) << service;
  }
}

}  // namespace
}  // namespace flamestream::exporter_test
