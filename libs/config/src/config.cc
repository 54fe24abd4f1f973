#include "flamestream/config/config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "flamestream/common/strings.h"
#include "flamestream/common/units.h"

extern char** environ;  // NOLINT: POSIX

namespace flamestream::config {
namespace {

using common::FormatDuration;
using common::FormatSize;

template <typename T>
Status ParseIntegral(const std::string& value, T* target) {
  auto parsed = common::ParseInt<T>(value);
  if (!parsed.ok()) {
    if constexpr (std::is_signed_v<T>) {
      return InvalidArgument("expected an integer, got \"{}\"", value);
    } else {
      return InvalidArgument("expected a non-negative integer up to {}, got \"{}\"",
                             std::numeric_limits<T>::max(), value);
    }
  }
  *target = *parsed;
  return OkStatus();
}

Status ParseBool(const std::string& value, bool* target) {
  const std::string v = common::ToLower(common::Trim(value));
  if (v == "true" || v == "1" || v == "yes" || v == "on") {
    *target = true;
  } else if (v == "false" || v == "0" || v == "no" || v == "off") {
    *target = false;
  } else {
    return InvalidArgument("expected true or false, got \"{}\"", value);
  }
  return OkStatus();
}

std::string Quote(const std::string& s) { return fmt::format("\"{}\"", s); }

// Flattens a YAML node into (dotted key, node) pairs; stops at scalars and sequences.
void Flatten(const YAML::Node& node, const std::string& prefix,
             std::vector<std::pair<std::string, YAML::Node>>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      const std::string k = kv.first.as<std::string>();
      Flatten(kv.second, prefix.empty() ? k : prefix + "." + k, out);
    }
  } else {
    out.emplace_back(prefix, node);
  }
}

}  // namespace

Schema::Entry& Schema::AddEntry(std::string key, std::string type, std::string help,
                                std::string flag, std::string default_text) {
  Entry e;
  e.key = std::move(key);
  e.type = std::move(type);
  e.help = std::move(help);
  e.flag = std::move(flag);
  e.default_text = std::move(default_text);
  entries_.push_back(std::move(e));
  return entries_.back();
}

void Schema::Add(std::string key, std::string* target, std::string help, std::string flag) {
  Entry& e = AddEntry(std::move(key), "string", std::move(help), std::move(flag), Quote(*target));
  e.set = [target](const std::string& v, bool) {
    *target = v;
    return OkStatus();
  };
}

void Schema::Add(std::string key, bool* target, std::string help, std::string flag) {
  Entry& e = AddEntry(std::move(key), "bool", std::move(help), std::move(flag),
                      *target ? "true" : "false");
  e.is_bool = true;
  e.set = [target](const std::string& v, bool) { return ParseBool(v, target); };
}

#define FS_CONFIG_ADD_INTEGRAL_(T, TYPE_NAME)                                             \
  void Schema::Add(std::string key, T* target, std::string help, std::string flag) {      \
    Entry& e = AddEntry(std::move(key), TYPE_NAME, std::move(help), std::move(flag),      \
                        std::to_string(*target));                                         \
    e.set = [target](const std::string& v, bool) { return ParseIntegral<T>(v, target); }; \
  }
FS_CONFIG_ADD_INTEGRAL_(int, "int")
FS_CONFIG_ADD_INTEGRAL_(int64_t, "int")
FS_CONFIG_ADD_INTEGRAL_(uint32_t, "uint")
FS_CONFIG_ADD_INTEGRAL_(uint64_t, "uint")
#undef FS_CONFIG_ADD_INTEGRAL_

void Schema::Add(std::string key, double* target, std::string help, std::string flag) {
  Entry& e = AddEntry(std::move(key), "number", std::move(help), std::move(flag),
                      fmt::format("{}", *target));
  e.set = [target](const std::string& v, bool) -> Status {
    try {
      size_t used = 0;
      const double d = std::stod(v, &used);
      if (used != v.size() || !std::isfinite(d)) {
        return InvalidArgument("expected a number, got \"{}\"", v);
      }
      *target = d;
      return OkStatus();
    } catch (const std::exception&) {
      return InvalidArgument("expected a number, got \"{}\"", v);
    }
  };
}

void Schema::Add(std::string key, std::chrono::nanoseconds* target, std::string help,
                 std::string flag) {
  Entry& e = AddEntry(std::move(key), "duration", std::move(help), std::move(flag),
                      FormatDuration(*target));
  e.set = [target](const std::string& v, bool) -> Status {
    auto d = common::ParseDuration(v);
    if (!d.ok()) {
      return d.error();
    }
    *target = *d;
    return OkStatus();
  };
}

void Schema::Add(std::string key, Bytes* target, std::string help, std::string flag) {
  Entry& e =
      AddEntry(std::move(key), "size", std::move(help), std::move(flag), FormatSize(target->value));
  e.set = [target](const std::string& v, bool) -> Status {
    auto s = common::ParseSize(v);
    if (!s.ok()) {
      return s.error();
    }
    target->value = *s;
    return OkStatus();
  };
}

void Schema::Add(std::string key, std::vector<std::string>* target, std::string help,
                 std::string flag) {
  Entry& e = AddEntry(std::move(key), "list", std::move(help), std::move(flag),
                      "[" + common::Join(*target, ",") + "]");
  e.is_list = true;
  // A flag given several times appends; any other source replaces the whole list.
  e.set = [target](const std::string& v, bool append) {
    std::vector<std::string> items = common::SplitNonEmpty(v, ',');
    if (append) {
      target->insert(target->end(), items.begin(), items.end());
    } else {
      *target = std::move(items);
    }
    return OkStatus();
  };
  e.set_list = [target](const std::vector<std::string>& items) { *target = items; };
}

void Schema::AddChoice(std::string key, std::string* target, std::vector<std::string> choices,
                       std::string help, std::string flag) {
  Entry& e = AddEntry(std::move(key), "one of " + common::Join(choices, "|"), std::move(help),
                      std::move(flag), Quote(*target));
  e.set = [target, choices](const std::string& v, bool) -> Status {
    for (const std::string& c : choices) {
      if (v == c) {
        *target = v;
        return OkStatus();
      }
    }
    return InvalidArgument("expected one of {}, got \"{}\"", common::Join(choices, ", "), v);
  };
}

void Schema::AddPassthrough(std::string prefix, std::map<std::string, std::string>* target,
                            std::string help) {
  Entry& e = AddEntry(prefix + ".*", "map", std::move(help), "", "{}");
  e.is_passthrough = true;
  passthrough_targets_[prefix] = target;
  // The setter receives "<subkey>=<value>".
  e.set = [target](const std::string& kv, bool) {
    const size_t eq = kv.find('=');
    (*target)[kv.substr(0, eq)] = kv.substr(eq + 1);
    return OkStatus();
  };
}

void Schema::Require(std::string key, std::function<bool()> ok, std::string expectation) {
  requirements_.push_back({std::move(key), std::move(ok), std::move(expectation), {}});
}

void Schema::Check(std::string key, std::function<Status()> check) {
  requirements_.push_back({std::move(key), {}, "", std::move(check)});
}

const Schema::Entry* Schema::Find(std::string_view key) const {
  for (const Entry& e : entries_) {
    if (!e.is_passthrough && e.key == key) {
      return &e;
    }
  }
  return nullptr;
}

const Schema::Entry* Schema::FindFlag(std::string_view flag) const {
  for (const Entry& e : entries_) {
    if (!e.flag.empty() && e.flag == flag) {
      return &e;
    }
  }
  return nullptr;
}

const Schema::Entry* Schema::FindPassthrough(std::string_view key) const {
  for (const Entry& e : entries_) {
    if (e.is_passthrough) {
      const std::string_view prefix = std::string_view(e.key).substr(0, e.key.size() - 1);
      if (key.size() > prefix.size() && key.substr(0, prefix.size()) == prefix) {
        return &e;
      }
    }
  }
  return nullptr;
}

Environment ProcessEnvironment() {
  Environment env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const size_t eq = kv.find('=');
    if (eq != std::string_view::npos) {
      env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
  }
  return env;
}

std::string EnvName(std::string_view key) {
  std::string out = "FLAMESTREAM_";
  for (char c : key) {
    if (c == '.') {
      out += "__";
    } else if (c == '-') {
      out += '_';
    } else {
      out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
  }
  return out;
}

namespace {

// Environment variables with the FLAMESTREAM_ prefix that are not configuration keys.
constexpr std::string_view kReservedEnv[] = {"FLAMESTREAM_BIN_DIR", "FLAMESTREAM_SHARE_DIR",
                                             "FLAMESTREAM_DWARF_WORKER"};

// Sets one key from one source; errors name both.
Status SetKey(const Schema& schema, const std::string& key, const std::string& value,
              std::string_view origin, bool append) {
  if (const Schema::Entry* e = schema.Find(key)) {
    Status s = e->set(value, append);
    if (!s.ok()) {
      return InvalidArgument("config key \"{}\" (from {}): {}", key, origin, s.message());
    }
    return OkStatus();
  }
  if (const Schema::Entry* e = schema.FindPassthrough(key)) {
    const std::string prefix = e->key.substr(0, e->key.size() - 1);  // "kafka."
    return e->set(key.substr(prefix.size()) + "=" + value, false);
  }
  return InvalidArgument("unknown config key \"{}\" (from {}); run with --help to list the keys",
                         key, origin);
}

// Environment keys are matched against declared keys by their variable names, since
// FLAMESTREAM_A__B_C could be a.b_c or a.b-c.
//
// The FLAMESTREAM_ prefix is not ours alone: Kubernetes injects <SERVICE>_SERVICE_HOST,
// <SERVICE>_PORT, <SERVICE>_PORT_4317_TCP_ADDR, ... for every Service in the namespace, so a
// Service named flamestream-redis yields FLAMESTREAM_REDIS_SERVICE_HOST in every pod. The
// rule: a name with "__" spells a dotted key and must be one (a typo there exits 2, naming
// it); a name without "__" is a key only when it equals a top-level key's name (`duration`),
// and is otherwise not ours: it is ignored and listed in Outcome::ignored_environment.
Status ApplyEnvironment(const Schema& schema, const Environment& env,
                        std::vector<std::string>* ignored) {
  for (const auto& [name, value] : env) {
    if (name.rfind("FLAMESTREAM_", 0) != 0) {
      continue;
    }
    bool reserved = false;
    for (std::string_view r : kReservedEnv) {
      reserved = reserved || name == r;
    }
    if (reserved) {
      continue;
    }
    const Schema::Entry* match = nullptr;
    for (const Schema::Entry& e : schema.entries()) {
      if (!e.is_passthrough && EnvName(e.key) == name) {
        match = &e;
        break;
      }
    }
    const std::string origin = "environment " + name;
    if (match != nullptr) {
      FS_RETURN_IF_ERROR(SetKey(schema, match->key, value, origin, false));
      continue;
    }
    if (name.find("__") == std::string::npos) {
      if (ignored != nullptr) {
        ignored->push_back(name);
      }
      continue;
    }
    // Passthrough: FLAMESTREAM_KAFKA__SASL__MECHANISM -> kafka.sasl.mechanism.
    std::string key = common::ToLower(name.substr(std::string_view("FLAMESTREAM_").size()));
    key = common::ReplaceAll(key, "__", ".");
    if (schema.FindPassthrough(key) != nullptr) {
      FS_RETURN_IF_ERROR(SetKey(schema, key, value, origin, false));
      continue;
    }
    return InvalidArgument("unknown config key \"{}\" (from {}); run with --help to list the keys",
                           key, origin);
  }
  return OkStatus();
}

}  // namespace

Status ApplyYaml(const Schema& schema, std::string_view yaml_text, std::string_view origin) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return InvalidArgument("{}: invalid YAML: {}", origin, e.what());
  }
  if (root.IsNull()) {
    return OkStatus();
  }
  if (!root.IsMap()) {
    return InvalidArgument("{}: expected a map of keys at the top level", origin);
  }
  std::vector<std::pair<std::string, YAML::Node>> flat;
  try {
    Flatten(root, "", flat);
  } catch (const YAML::Exception& e) {
    return InvalidArgument("{}: {}", origin, e.what());
  }
  for (const auto& [key, node] : flat) {
    const Schema::Entry* e = schema.Find(key);
    if (node.IsSequence()) {
      if (e == nullptr || !e->is_list) {
        return InvalidArgument(
            "config key \"{}\" (from {}): {}", key, origin,
            e == nullptr ? "unknown key" : "expected a single value, got a list");
      }
      std::vector<std::string> items;
      for (const auto& item : node) {
        if (!item.IsScalar()) {
          return InvalidArgument("config key \"{}\" (from {}): list items must be scalars", key,
                                 origin);
        }
        items.push_back(item.as<std::string>());
      }
      e->set_list(items);
      continue;
    }
    const std::string value = node.IsNull() ? "" : node.as<std::string>();
    FS_RETURN_IF_ERROR(SetKey(schema, key, value, origin, false));
  }
  return OkStatus();
}

Result<Outcome> Load(const Schema& schema, const Program& program,
                     const std::vector<std::string>& args, const Environment& env) {
  Outcome outcome;
  // Pass 1: find --help and --config (the file applies before env and flags).
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      outcome.help_requested = true;
      outcome.help = HelpText(schema, program);
      return outcome;
    }
    if (a == "--config") {
      if (i + 1 >= args.size()) {
        return InvalidArgument("--config needs a file path");
      }
      outcome.config_file = args[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      outcome.config_file = a.substr(9);
    }
  }
  if (!outcome.config_file.empty()) {
    std::ifstream in(outcome.config_file);
    if (!in) {
      return InvalidArgument("--config: cannot read \"{}\"", outcome.config_file);
    }
    std::stringstream text;
    text << in.rdbuf();
    FS_RETURN_IF_ERROR(ApplyYaml(schema, text.str(), "file " + outcome.config_file));
  }
  FS_RETURN_IF_ERROR(ApplyEnvironment(schema, env, &outcome.ignored_environment));

  // Pass 2: flags in order, so a later flag wins over an earlier one.
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--config") {
      ++i;
      continue;
    }
    if (a.rfind("--config=", 0) == 0) {
      continue;
    }
    if (a == "--") {
      outcome.positional.insert(outcome.positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (a.rfind("--", 0) != 0 || a == "-") {
      outcome.positional.push_back(a);
      continue;
    }
    std::string name = a;
    std::string value;
    bool has_value = false;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_value = true;
    }
    if (name == "--set") {
      if (!has_value) {
        if (i + 1 >= args.size()) {
          return InvalidArgument("--set needs key=value");
        }
        value = args[++i];
      }
      const size_t eq = value.find('=');
      if (eq == std::string::npos || eq == 0) {
        return InvalidArgument("--set \"{}\": expected key=value", value);
      }
      FS_RETURN_IF_ERROR(SetKey(schema, value.substr(0, eq), value.substr(eq + 1), "--set", false));
      continue;
    }
    const Schema::Entry* e = schema.FindFlag(name);
    if (e == nullptr) {
      return InvalidArgument("unknown flag \"{}\"; run with --help to list the flags", name);
    }
    if (!has_value) {
      if (e->is_bool) {
        value = "true";
      } else {
        if (i + 1 >= args.size()) {
          return InvalidArgument("flag {} (config key \"{}\") needs a value: {}", name, e->key,
                                 e->type);
        }
        value = args[++i];
      }
    }
    Status s = e->set(value, e->is_list);
    if (!s.ok()) {
      return InvalidArgument("config key \"{}\" (from flag {}): {}", e->key, name, s.message());
    }
  }
  for (const Schema::Requirement& r : schema.requirements()) {
    if (r.check) {
      if (Status st = r.check(); !st.ok()) {
        return InvalidArgument("config key \"{}\": {}", r.key, st.message());
      }
    } else if (!r.ok()) {
      return InvalidArgument("config key \"{}\": expected {}", r.key, r.expectation);
    }
  }
  return outcome;
}

Result<Outcome> Load(const Schema& schema, const Program& program, int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    args.emplace_back(argv[i]);
  }
  return Load(schema, program, args, ProcessEnvironment());
}

std::string HelpText(const Schema& schema, const Program& program) {
  std::string out =
      fmt::format("{} - {}\n\nUsage: {} [flags]\n", program.name, program.summary, program.name);
  if (!program.usage_extra.empty()) {
    out += "\n" + program.usage_extra + "\n";
  }
  out += "\nFlags:\n";
  out += "  --help                 show this help and exit\n";
  out += "  --config FILE          YAML file of config keys\n";
  out += "  --set KEY=VALUE        set any config key (repeatable)\n";
  for (const Schema::Entry& e : schema.entries()) {
    if (!e.flag.empty()) {
      const std::string left = e.is_bool ? e.flag : fmt::format("{} VALUE", e.flag);
      out += fmt::format("  {:<22} {} (= {})\n", left, e.help, e.key);
    }
  }
  out +=
      "\nConfig keys (precedence: flags > environment FLAMESTREAM_<KEY, . as __> > --config "
      "file > default):\n";
  for (const Schema::Entry& e : schema.entries()) {
    out += fmt::format("  {}  ({}, default {})\n      {}\n", e.key, e.type, e.default_text, e.help);
  }
  return out;
}

}  // namespace flamestream::config
