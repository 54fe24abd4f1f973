#include "resolve_mode.h"

#include <iostream>
#include <set>
#include <string_view>

#include "flamestream/common/strings.h"
#include "flamestream/symbols/symbolizer.h"

namespace flamestream::symbolizer {
namespace {

constexpr std::string_view kUsage = R"(usage: flamestream-symbolizer resolve [flags] < lines
Reads `<PATH|buildid:HEX> <ADDRESS>` lines and prints llvm-symbolizer --inlining --demangle
output: a function line and a file:line:column line per (inlined) frame, innermost first, then a
blank line.
  --offsets               ADDRESS is a file offset (mapped through PT_LOAD), not a vaddr
  --debug-dir=DIR         global debug directory (build-id tree, debuglink); repeatable;
                          default /usr/lib/debug
  --path-map=FROM=TO      rewrite path prefixes of binaries (repeatable)
  --sysroot=DIR           look for binaries under DIR (repeatable)
  --no-debuginfod         never ask DEBUGINFOD_URLS servers
)";

struct Options {
  bool offsets = false;
  symbols::SymbolizerConfig config;
};

// Parses "--name=value" or "--name value".
bool TakeValue(const std::vector<std::string>& args, size_t& i, std::string_view name,
               std::string* value) {
  std::string_view arg = args[i];
  if (arg.substr(0, name.size()) != name) {
    return false;
  }
  if (arg.size() > name.size() && arg[name.size()] == '=') {
    *value = std::string(arg.substr(name.size() + 1));
    return true;
  }
  if (arg.size() == name.size() && i + 1 < args.size()) {
    *value = args[++i];
    return true;
  }
  return false;
}

// Address as llvm-symbolizer parses it: 0x-prefixed hex, 0-prefixed octal, else decimal.
Result<uint64_t> ParseAddress(std::string_view s) {
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    return common::ParseInt<uint64_t>(s, 16);
  }
  if (s.size() > 1 && s[0] == '0') {
    return common::ParseInt<uint64_t>(s.substr(1), 8);
  }
  return common::ParseInt<uint64_t>(s, 10);
}

void PrintLocation(const symbols::Location& loc, std::ostream& out) {
  for (const symbols::SourceFrame& f : loc.frames) {
    out << f.function << '\n' << f.file << ':' << f.line << ':' << f.column << '\n';
  }
  out << '\n';
}

}  // namespace

int RunResolve(const std::vector<std::string>& args, std::istream& in, std::ostream& out,
               std::ostream& err) {
  Options opts;
  bool debug_dirs_given = false;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string value;
    if (args[i] == "--offsets") {
      opts.offsets = true;
    } else if (args[i] == "--no-debuginfod") {
      opts.config.locator.debuginfod = false;
    } else if (args[i] == "--help" || args[i] == "-h") {
      out << kUsage;
      return 0;
    } else if (TakeValue(args, i, "--debug-dir", &value)) {
      if (!debug_dirs_given) {
        opts.config.locator.debug_dirs.clear();
        debug_dirs_given = true;
      }
      opts.config.locator.debug_dirs.push_back(value);
    } else if (TakeValue(args, i, "--path-map", &value)) {
      if (value.find('=') == std::string::npos) {
        err << "flamestream-symbolizer resolve: --path-map wants FROM=TO, got " << value << '\n';
        return 2;
      }
      opts.config.locator.path_mappings.push_back(value);
    } else if (TakeValue(args, i, "--sysroot", &value)) {
      opts.config.locator.sysroots.push_back(value);
    } else {
      err << "flamestream-symbolizer resolve: unknown flag " << args[i] << "\n" << kUsage;
      return 2;
    }
  }
  // Resolve mode answers one address at a time; caching results would only cost memory.
  opts.config.lru_bytes = 0;
  auto symbolizer = symbols::Symbolizer::Create(opts.config);
  if (!symbolizer.ok()) {
    err << "flamestream-symbolizer resolve: " << symbolizer.error() << '\n';
    return 1;
  }
  symbols::Symbolizer& sym = **symbolizer;
  std::set<std::string> reported;  // report each failing file once, as llvm-symbolizer does
  const symbols::Location unknown{false, {{symbols::kUnknown, symbols::kUnknown, symbols::kUnknown, 0, 0}}, ""};

  std::string line;
  while (std::getline(in, line)) {
    std::string_view text = common::Trim(line);
    size_t split = text.find_last_of(" \t");
    if (text.empty() || split == std::string_view::npos) {
      out << line << '\n' << std::flush;  // llvm-symbolizer echoes what it cannot parse
      continue;
    }
    std::string module(common::Trim(text.substr(0, split)));
    if (module.size() >= 2 && (module.front() == '"' || module.front() == '\'') &&
        module.back() == module.front()) {
      module = module.substr(1, module.size() - 2);
    }
    auto address = ParseAddress(text.substr(split + 1));
    if (!address.ok() || module.empty()) {
      out << line << '\n' << std::flush;
      continue;
    }
    constexpr std::string_view kBuildIdPrefix = "buildid:";
    bool by_build_id = module.compare(0, kBuildIdPrefix.size(), kBuildIdPrefix) == 0;
    std::string build_id =
        by_build_id ? common::ToLower(std::string_view(module).substr(kBuildIdPrefix.size())) : "";

    Result<uint64_t> vaddr = *address;
    if (opts.offsets) {
      vaddr = by_build_id ? sym.BuildIdOffsetToAddress(build_id, "", *address)
                          : sym.PathOffsetToAddress(module, *address);
    }
    Result<symbols::Location> loc =
        !vaddr.ok()     ? Result<symbols::Location>(vaddr.error())
        : by_build_id ? sym.ResolveBuildIdAddress(build_id, "", *vaddr)
                        : sym.ResolvePathAddress(module, *vaddr);
    if (loc.ok()) {
      PrintLocation(*loc, out);
    } else {
      if (reported.insert(loc.error().message()).second) {
        err << "flamestream-symbolizer: error: '" << module << "': " << loc.error().message()
            << '\n';
      }
      PrintLocation(unknown, out);
    }
    out << std::flush;
  }
  return 0;
}

int RunResolve(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  return RunResolve(args, std::cin, std::cout, std::cerr);
}

}  // namespace flamestream::symbolizer
