// Configuration: one schema of typed keys per process, filled from defaults, a YAML file,
// the environment and the command line.
//
//   struct SamplerConfig {
//     uint32_t frequency_hz = 19;                       // in-class default
//     std::chrono::nanoseconds batch_interval = std::chrono::seconds(1);
//     config::Bytes spool_limit{256ULL << 20};
//   };
//
//   config::Schema schema;
//   schema.Add("agent.frequency", &cfg.frequency_hz, "sampling frequency in Hz", "--frequency");
//   schema.Require("agent.frequency", [&] { return cfg.frequency_hz >= 1; }, "1 or more");
//   schema.AddPassthrough("kafka", &kafka_props, "librdkafka properties");
//   auto outcome = config::Load(schema, {"flamestream-agent", "samples CPU stacks"}, argc, argv);
//
// Precedence, lowest first: defaults < YAML file (--config) < environment < flags.
//  - YAML: nested maps flatten to dotted keys (`kafka: {bootstrap.servers: x}` is
//    `kafka.bootstrap.servers`); lists are written as YAML sequences.
//  - Environment: FLAMESTREAM_<KEY> with the key upper-cased and each `.` written `__`
//    (kafka.bootstrap.servers -> FLAMESTREAM_KAFKA__BOOTSTRAP__SERVERS).
//  - Flags: `--set key=value` for any key, named flags (`--frequency 99`, `--print`), and
//    `--config FILE`. Durations read "30s", "1m30s"; sizes "64MiB", "1GB".
// An unknown key or a bad value is an error that names the key, where it came from and what
// was expected; services print it and exit with status 2.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"

namespace flamestream::config {

// A size in bytes, written "64MiB", "512KB" or "4096".
struct Bytes {
  uint64_t value = 0;
};

class Schema {
 public:
  // Binds `key` to `*target`; the target's current value is the default shown in --help.
  // `flag` is an optional named command-line flag ("--frequency"); boolean flags take no
  // value ("--print") but accept "--print=false".
  void Add(std::string key, std::string* target, std::string help, std::string flag = "");
  void Add(std::string key, bool* target, std::string help, std::string flag = "");
  void Add(std::string key, int* target, std::string help, std::string flag = "");
  void Add(std::string key, int64_t* target, std::string help, std::string flag = "");
  void Add(std::string key, uint32_t* target, std::string help, std::string flag = "");
  void Add(std::string key, uint64_t* target, std::string help, std::string flag = "");
  void Add(std::string key, double* target, std::string help, std::string flag = "");
  void Add(std::string key, std::chrono::nanoseconds* target, std::string help,
           std::string flag = "");
  void Add(std::string key, Bytes* target, std::string help, std::string flag = "");
  // A list: a YAML sequence, or comma-separated text; a repeated flag appends.
  void Add(std::string key, std::vector<std::string>* target, std::string help,
           std::string flag = "");
  // A string that must be one of `choices`.
  void AddChoice(std::string key, std::string* target, std::vector<std::string> choices,
                 std::string help, std::string flag = "");
  // Every key below `prefix.` is accepted and stored verbatim with the prefix removed, e.g.
  // prefix "kafka": kafka.bootstrap.servers=x -> (*target)["bootstrap.servers"] = "x".
  void AddPassthrough(std::string prefix, std::map<std::string, std::string>* target,
                      std::string help);
  // After loading, `ok()` must hold or loading fails with "<key>: expected <expectation>".
  void Require(std::string key, std::function<bool()> ok, std::string expectation);
  // After loading, `check()` must return OK or loading fails with "<key>: <its message>" (for
  // checks that explain themselves, e.g. which list item is wrong).
  void Check(std::string key, std::function<Status()> check);

  // One declared key (for --help, the loader and tests).
  struct Entry {
    std::string key;
    std::string type;  // "string", "bool", "int", "duration", "size", "list", "one of a|b"
    std::string help;
    std::string flag;
    std::string default_text;
    bool is_bool = false;
    bool is_list = false;
    bool is_passthrough = false;
    // Parses and stores one value; `append` for repeated list flags.
    std::function<Status(const std::string& value, bool append)> set;
    std::function<void(const std::vector<std::string>&)> set_list;
  };
  [[nodiscard]] const std::vector<Entry>& entries() const { return entries_; }
  [[nodiscard]] const Entry* Find(std::string_view key) const;
  [[nodiscard]] const Entry* FindFlag(std::string_view flag) const;
  // The passthrough entry whose prefix covers `key`, if any.
  [[nodiscard]] const Entry* FindPassthrough(std::string_view key) const;

  struct Requirement {
    std::string key;
    std::function<bool()> ok;
    std::string expectation;
    std::function<Status()> check;  // instead of ok/expectation when set
  };
  [[nodiscard]] const std::vector<Requirement>& requirements() const { return requirements_; }

 private:
  Entry& AddEntry(std::string key, std::string type, std::string help, std::string flag,
                  std::string default_text);
  std::vector<Entry> entries_;
  std::vector<Requirement> requirements_;
  std::map<std::string, std::map<std::string, std::string>*> passthrough_targets_;
};

struct Program {
  std::string name;     // "flamestream-agent"
  std::string summary;  // one line
  std::string usage_extra;  // optional extra --help text (subcommands, examples)
};

struct Outcome {
  bool help_requested = false;          // --help was given; the help text is in `help`
  std::string help;
  std::vector<std::string> positional;  // arguments that are not flags
  std::string config_file;              // the --config path, if any
  // FLAMESTREAM_* variables that name no key and spell none (no "__"), such as the
  // FLAMESTREAM_REDIS_SERVICE_HOST Kubernetes injects for a Service named flamestream-redis.
  std::vector<std::string> ignored_environment;
};

// Environment source: name -> value. Load() without it reads the process environment.
using Environment = std::map<std::string, std::string>;
Environment ProcessEnvironment();

// Environment variable name for a key: kafka.bootstrap.servers -> FLAMESTREAM_KAFKA__BOOTSTRAP__SERVERS.
std::string EnvName(std::string_view key);

// Loads every source into the schema's targets. Errors are InvalidArgument with a message
// naming the key, its source and what was expected.
Result<Outcome> Load(const Schema& schema, const Program& program,
                     const std::vector<std::string>& args, const Environment& env);
Result<Outcome> Load(const Schema& schema, const Program& program, int argc, char** argv);

// Applies YAML text (as a --config file would be) to the schema. `origin` names it in errors.
Status ApplyYaml(const Schema& schema, std::string_view yaml_text, std::string_view origin);

std::string HelpText(const Schema& schema, const Program& program);

}  // namespace flamestream::config
