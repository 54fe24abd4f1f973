// --config files (libs/config ApplyYaml) on a schema with a key of every type: string, bool,
// int, int64, uint32, uint64, double, duration, size, list, choice and a passthrough prefix,
// nested keys and a Require()ment. Errors name their origin; a file that applies once
// applies again with the same result.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/config/config.h"
#include "fuzz_check.h"

namespace config = flamestream::config;

namespace {

struct Targets {
  std::string s = "x";
  bool b = false;
  int i = 1;
  int64_t i64 = -1;
  uint32_t u32 = 19;
  uint64_t u64 = 0;
  double d = 0.5;
  std::chrono::nanoseconds dur = std::chrono::seconds(30);
  config::Bytes size{64ull << 20};
  std::vector<std::string> list = {"a", "b"};
  std::string choice = "compact";
  std::map<std::string, std::string> kafka;
  std::string deep;

  std::string Text() const {
    std::string out = s + "|" + (b ? "1" : "0") + "|" + std::to_string(i) + "|" +
                      std::to_string(i64) + "|" + std::to_string(u32) + "|" +
                      std::to_string(u64) + "|" + std::to_string(d) + "|" +
                      std::to_string(dur.count()) + "|" + std::to_string(size.value) + "|" +
                      choice + "|" + deep + "|";
    for (const std::string& e : list) out += e + ",";
    for (const auto& [k, v] : kafka) out += k + "=" + v + ";";
    return out;
  }
};

struct Fixture {
  Targets t;
  config::Schema schema;
  Fixture() {
    schema.Add("service.name", &t.s, "a string", "--name");
    schema.Add("agent.print", &t.b, "a bool", "--print");
    schema.Add("agent.frequency", &t.i, "an int", "--frequency");
    schema.Add("clock.offset", &t.i64, "an int64");
    schema.Add("agent.user_stack_depth", &t.u32, "a uint32");
    schema.Add("limits.records", &t.u64, "a uint64");
    schema.Add("ratio", &t.d, "a double");
    schema.Add("shutdown.deadline", &t.dur, "a duration");
    schema.Add("agent.spool.limit", &t.size, "a size");
    schema.Add("symbolizer.debug_dirs", &t.list, "a list");
    schema.AddChoice("agent.batch.encoding", &t.choice, {"compact", "plain"}, "a choice");
    schema.AddPassthrough("kafka", &t.kafka, "librdkafka properties");
    schema.Add("a.b.c.d.e", &t.deep, "a deeply nested key");
    schema.Require("agent.user_stack_depth", [this] { return t.u32 <= 1024; }, "at most 1024");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* f = new Fixture();
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);
  f->t = Targets{};
  const flamestream::Status first = config::ApplyYaml(f->schema, yaml, "file fuzz.yaml");
  if (!first.ok()) {
    FS_FUZZ_CHECK(first.message().find("fuzz.yaml") != std::string::npos,
                  "error without its origin: %s", first.message().c_str());
    return 0;
  }
  const std::string once = f->t.Text();
  f->t = Targets{};
  const flamestream::Status second = config::ApplyYaml(f->schema, yaml, "file fuzz.yaml");
  FS_FUZZ_CHECK(second.ok(), "applies once, then fails: %s", second.message().c_str());
  FS_FUZZ_CHECK(f->t.Text() == once, "applying twice differs");
  for (const config::Schema::Requirement& r : f->schema.requirements()) (void)r.ok();
  return 0;
}
