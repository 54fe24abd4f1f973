// Resolve mode and the Symbolizer against llvm-symbolizer on a corpus compiled by CMake
// (tests/symbols/CMakeLists.txt): every function start and an address every few bytes inside
// each function must print exactly what `llvm-symbolizer --inlining --demangle` prints.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "flamestream/common/strings.h"
#include "flamestream/symbols/elf_file.h"
#include "flamestream/symbols/symbolizer.h"
#include "resolve_mode.h"

extern char** environ;

namespace flamestream::symbols {
namespace {

namespace fs = std::filesystem;

// FS_SYMBOLS_CORPUS, else <build>/tests/symbols/corpus next to FS_BIN_DIR (fs_add_test passes
// only its first ENVIRONMENT entry through gtest_discover_tests today).
std::string Corpus() {
  if (const char* dir = std::getenv("FS_SYMBOLS_CORPUS"); dir != nullptr) {
    return dir;
  }
  const char* bin = std::getenv("FS_BIN_DIR");
  return bin != nullptr ? std::string(bin) + "/../tests/symbols/corpus" : "";
}

std::string CorpusFile(const std::string& name) { return Corpus() + "/" + name; }

// Runs a shell command and returns its stdout.
std::string RunShell(const std::string& cmd) {
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) {
    return out;
  }
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) {
    out.append(buf, n);
  }
  ::pclose(pipe);
  return out;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "fs-symbols-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct Symbol {
  std::string name;
  uint64_t address;
  uint64_t size;
};

// Defined functions with a size, from `nm -S` on a file with a symbol table.
std::vector<Symbol> Functions(const std::string& elf) {
  std::vector<Symbol> out;
  std::istringstream in(RunShell("nm -S --defined-only " + elf));
  std::string line;
  while (std::getline(in, line)) {
    auto parts = common::SplitNonEmpty(line, ' ');
    if (parts.size() != 4 || parts[2].size() != 1 ||
        std::string_view("tTwW").find(parts[2][0]) == std::string_view::npos) {
      continue;
    }
    auto addr = common::ParseInt<uint64_t>(parts[0], 16);
    auto size = common::ParseInt<uint64_t>(parts[1], 16);
    if (addr.ok() && size.ok() && *size > 0) {
      out.push_back({parts[3], *addr, *size});
    }
  }
  return out;
}

// Every function start, and an address every `step` bytes inside it.
std::vector<uint64_t> SampleAddresses(const std::string& elf, uint64_t step) {
  std::vector<uint64_t> out;
  for (const Symbol& s : Functions(elf)) {
    for (uint64_t off = 0; off < s.size; off += step) {
      out.push_back(s.address + off);
    }
  }
  return out;
}

std::string Lines(const std::string& module, const std::vector<uint64_t>& addresses) {
  std::string in;
  for (uint64_t a : addresses) {
    in += fmt::format("{} {:#x}\n", module, a);
  }
  return in;
}

std::string LlvmSymbolizer(const std::string& input, const std::string& extra_flags = "") {
  TempDir tmp;
  std::string path = tmp.path() + "/in.txt";
  std::ofstream(path) << input;
  return RunShell("llvm-symbolizer-14 --inlining --demangle " + extra_flags + " < " + path);
}

std::string Resolve(const std::string& input, std::vector<std::string> flags = {}) {
  flags.insert(flags.begin(), {"resolve", "--no-debuginfod"});
  std::istringstream in(input);
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(symbolizer::RunResolve(flags, in, out, err), 0) << err.str();
  return out.str();
}

// Splits llvm-symbolizer output into one block per address.
std::vector<std::string> Blocks(const std::string& out) {
  std::vector<std::string> blocks;
  std::string cur;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) {
      blocks.push_back(cur);
      cur.clear();
    } else {
      cur += line + "\n";
    }
  }
  return blocks;
}

std::string ReadelfBuildId(const std::string& elf) {
  std::istringstream in(RunShell("readelf -n " + elf));
  std::string line;
  while (std::getline(in, line)) {
    if (auto pos = line.find("Build ID: "); pos != std::string::npos) {
      return std::string(common::Trim(line.substr(pos + 10)));
    }
  }
  return "";
}

// Compares resolve-mode output with llvm-symbolizer's, block by block; returns the number of
// addresses compared.
size_t ExpectSameBlocks(const std::string& ours, const std::string& theirs,
                        const std::vector<uint64_t>& addresses) {
  auto a = Blocks(ours);
  auto b = Blocks(theirs);
  EXPECT_EQ(a.size(), addresses.size());
  EXPECT_EQ(b.size(), addresses.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (a[i] != b[i] && ++mismatches <= 5) {
      ADD_FAILURE() << fmt::format("address {:#x}:\nours:\n{}llvm-symbolizer:\n{}", addresses[i],
                                   a[i], b[i]);
    }
  }
  EXPECT_EQ(mismatches, 0u);
  return a.size();
}

TEST(ResolveMode, MatchesLlvmSymbolizerOnUnstrippedBinaries) {
  // C++ PIE and non-PIE executables, a C non-PIE executable, a shared library.
  size_t total = 0;
  for (const char* name : {"app_pie", "app_nopie", "calc_nopie", "libshapes.so"}) {
    SCOPED_TRACE(name);
    std::string path = CorpusFile(name);
    auto addresses = SampleAddresses(path, 5);
    ASSERT_GT(addresses.size(), 50u);
    std::string input = Lines(path, addresses);
    total += ExpectSameBlocks(Resolve(input), LlvmSymbolizer(input), addresses);
  }
  EXPECT_GT(total, 1000u);
}

TEST(ResolveMode, FindsDebugInfoOfStrippedBinaries) {
  struct Case {
    const char* name;
    std::vector<std::string> flags;  // ours
    std::string llvm_flags;
    bool by_build_id;
  };
  std::string debugroot = CorpusFile("debugroot");
  const Case cases[] = {
      {"app_bid", {"--debug-dir=" + debugroot}, "--debug-file-directory=" + debugroot, false},
      {"app_bid", {"--debug-dir", debugroot}, "--debug-file-directory=" + debugroot, true},
      {"app_link", {}, "", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{} by_build_id={}", c.name, c.by_build_id));
    std::string stripped = CorpusFile(c.name);
    std::string full = stripped + ".full";
    ASSERT_FALSE(Functions(stripped).size() > 0) << "corpus binary is not stripped";
    auto addresses = SampleAddresses(full, 7);
    ASSERT_GT(addresses.size(), 100u);
    std::string module = c.by_build_id ? "buildid:" + ReadelfBuildId(stripped) : stripped;
    std::string ours = Resolve(Lines(module, addresses), c.flags);

    // Same output as llvm-symbolizer on the unstripped binary: identical code and DWARF.
    ExpectSameBlocks(ours, LlvmSymbolizer(Lines(full, addresses)), addresses);

    // llvm-symbolizer 14 on the stripped binary finds the same DWARF but names the outermost
    // frame from the stripped file's .dynsym, which lacks local symbols. Where that misses it
    // falls back to the DWARF name: without a clone suffix ("Histogram(...)" where the full
    // .symtab, which we read from the debug file, says "Histogram(...) (.cold)"), or the bare
    // DW_AT_name when DWARF has no linkage name ("_M_manager"), or "??" for code without DWARF
    // (crt's "_start"). So every file:line:column and
    // every inlined frame is equal, and an outermost name may differ only by being a substring.
    if (!c.by_build_id) {
      auto a = Blocks(ours);
      auto b = Blocks(LlvmSymbolizer(Lines(stripped, addresses), c.llvm_flags));
      ASSERT_EQ(a.size(), b.size());
      size_t renamed = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        auto la = common::Split(a[i], '\n');
        auto lb = common::Split(b[i], '\n');
        ASSERT_EQ(la.size(), lb.size()) << a[i] << "vs\n" << b[i];
        for (size_t j = 0; j < la.size(); ++j) {
          if (la[j] == lb[j]) {
            continue;
          }
          bool outermost_function_line = j + 3 == la.size();  // Split leaves a trailing ""
          EXPECT_TRUE(outermost_function_line &&
                      (lb[j] == "??" || la[j].find(lb[j]) != std::string::npos))
              << la[j] << " vs " << lb[j];
          ++renamed;
        }
      }
      EXPECT_LT(renamed, a.size() / 4);
    }
  }
}

// Reads PT_LOAD (offset, vaddr, filesz) with readelf, independently of fs_symbols' parser.
std::vector<LoadSegment> ReadelfLoads(const std::string& elf) {
  std::vector<LoadSegment> out;
  std::istringstream in(RunShell("readelf -lW " + elf));
  std::string line;
  while (std::getline(in, line)) {
    auto parts = common::SplitNonEmpty(line, ' ');
    if (parts.size() >= 6 && parts[0] == "LOAD") {
      out.push_back({*common::ParseInt<uint64_t>(parts[1], 16),
                     *common::ParseInt<uint64_t>(parts[2], 16),
                     *common::ParseInt<uint64_t>(parts[4], 16),
                     *common::ParseInt<uint64_t>(parts[5], 16)});
    }
  }
  return out;
}

TEST(ResolveMode, OffsetsMapThroughLoadSegments) {
  for (const char* name : {"app_pie", "app_nopie", "calc_nopie", "libshapes.so"}) {
    SCOPED_TRACE(name);
    std::string path = CorpusFile(name);
    auto loads = ReadelfLoads(path);
    ASSERT_FALSE(loads.empty());
    std::vector<uint64_t> addresses = SampleAddresses(path, 61);
    std::vector<uint64_t> offsets;
    for (uint64_t a : addresses) {
      for (const LoadSegment& s : loads) {
        if (a >= s.vaddr && a < s.vaddr + s.filesz) {
          offsets.push_back(a - s.vaddr + s.offset);
        }
      }
    }
    ASSERT_EQ(offsets.size(), addresses.size());
    if (std::string_view(name) == "app_nopie") {
      EXPECT_NE(offsets[0], addresses[0]);  // non-PIE: text is mapped at 0x400000 + offset
    }
    ExpectSameBlocks(Resolve(Lines(path, offsets), {"--offsets"}),
                     LlvmSymbolizer(Lines(path, addresses)), addresses);
  }
}

TEST(ResolveMode, UnknownInputsPrintQuestionMarks) {
  std::string out = Resolve(
      "/nonexistent/file 0x10\nbuildid:00112233445566778899 0x10\nnot-a-request\n" +
      CorpusFile("app_pie") + " 0xfffffffff\n");
  // Far past the code, llvm-symbolizer (and so resolve mode) names the last symbol, the linker's
  // size-less `_end`, and knows no line.
  EXPECT_EQ(out, "??\n??:0:0\n\n??\n??:0:0\n\nnot-a-request\n_end\n??:0:0\n\n");
}

SymbolizerConfig TestConfig() {
  SymbolizerConfig config;
  config.locator.debug_dirs = {CorpusFile("debugroot")};
  config.locator.debuginfod = false;
  return config;
}

// The chain ResolveBatch returns, printed as resolve mode prints it.
std::string Print(const Location& loc) {
  std::string s;
  for (const SourceFrame& f : loc.frames) {
    s += fmt::format("{}\n{}:{}:{}\n", f.function, f.file, f.line, f.column);
  }
  return s;
}

TEST(Symbolizer, ResolveBatchByBuildIdAndOffsetMatchesLlvmSymbolizer) {
  auto sym = Symbolizer::Create(TestConfig());
  ASSERT_TRUE(sym.ok()) << sym.error();
  for (const char* name : {"app_pie", "libshapes.so", "app_bid"}) {
    SCOPED_TRACE(name);
    std::string path = CorpusFile(name);
    std::string full = fs::exists(path + ".full") ? path + ".full" : path;
    std::string build_id = ReadelfBuildId(path);
    auto loads = ReadelfLoads(path);
    auto addresses = SampleAddresses(full, 13);
    std::vector<FrameRequest> requests;  // views into build_id and hint
    std::vector<uint64_t> lookups;
    // app_bid: the stripped binary is where the process saw it; DWARF is in the build-id tree.
    // The others: the path hint is wrong on this host, a build id -> path hint fixes it.
    const bool stripped = std::string_view(name) == "app_bid";
    const std::string hint = stripped ? path : "/proc-saw/this/" + std::string(name);
    for (size_t i = 0; i < addresses.size(); ++i) {
      for (const LoadSegment& s : loads) {
        if (addresses[i] >= s.vaddr && addresses[i] < s.vaddr + s.filesz) {
          // Every other frame is a return address: the frame carries offset + 1.
          bool ret = i % 2 == 1;
          uint64_t offset = addresses[i] - s.vaddr + s.offset;
          requests.push_back({build_id, hint,
                              offset + (ret ? 1 : 0), ret});
          lookups.push_back(addresses[i]);
        }
      }
    }
    ASSERT_EQ(lookups.size(), addresses.size());
    if (!stripped) {
      (*sym)->AddBuildIdPath(build_id, path);
    }
    auto locations = (*sym)->ResolveBatch(requests);
    ASSERT_EQ(locations.size(), requests.size());
    auto expected = Blocks(LlvmSymbolizer(Lines(full, lookups)));
    ASSERT_EQ(expected.size(), requests.size());
    size_t resolved = 0;
    for (size_t i = 0; i < locations.size(); ++i) {
      if (!locations[i]->resolved) {
        // Only addresses llvm-symbolizer cannot name either.
        EXPECT_EQ(expected[i].substr(0, 3), "??\n") << fmt::format("{:#x}", lookups[i]);
        EXPECT_EQ(locations[i]->display_name,
                  fmt::format("{}+{:#x}", name, requests[i].file_offset));
        continue;
      }
      ++resolved;
      EXPECT_EQ(Print(*locations[i]), expected[i]) << fmt::format("{:#x}", lookups[i]);
      EXPECT_FALSE(locations[i]->frames.back().system_name.empty());
    }
    EXPECT_GT(resolved, requests.size() * 9 / 10);
    // The second time every frame is an LRU hit.
    auto before = (*sym)->stats();
    auto again = (*sym)->ResolveBatch(requests);
    EXPECT_EQ((*sym)->stats().lru_hits - before.lru_hits, resolved);
    EXPECT_EQ((*sym)->stats().resolved, before.resolved);

    if (stripped) {
      // Without the binary only the debug file is left, whose PT_LOAD headers lost their file
      // offsets: the frame cannot be mapped and says so by build id and offset.
      (*sym)->DropBuildId(build_id);
      FrameRequest alone{build_id, "", requests[0].file_offset, false};
      auto loc = (*sym)->ResolveBatch({&alone, 1})[0];
      EXPECT_FALSE(loc->resolved);
      EXPECT_EQ(loc->display_name, fmt::format("{}+{:#x}", build_id, alone.file_offset));
    }
  }
}

TEST(Symbolizer, KeepsMangledSystemNames) {
  auto sym = Symbolizer::Create(TestConfig());
  ASSERT_TRUE(sym.ok());
  std::string path = CorpusFile("app_pie");
  for (const Symbol& s : Functions(path)) {
    if (s.name != "_ZN3app4LeafEi") {
      continue;
    }
    auto loc = (*sym)->ResolvePathAddress(path, s.address);
    ASSERT_TRUE(loc.ok()) << loc.error();
    ASSERT_FALSE(loc->frames.empty());
    EXPECT_EQ(loc->frames.back().function, "app::Leaf(int)");
    EXPECT_EQ(loc->frames.back().system_name, "_ZN3app4LeafEi");
    return;
  }
  FAIL() << "app::Leaf not in the corpus";
}

// A controllable clock for the negative cache.
struct FakeClock {
  std::chrono::steady_clock::time_point t{};
};

TEST(Symbolizer, NegativeCacheExpiresAfterTtl) {
  TempDir tmp;
  FakeClock clock;
  SymbolizerConfig config = TestConfig();
  config.negative_ttl = std::chrono::seconds(60);
  config.now = [&clock] { return clock.t; };
  auto sym = Symbolizer::Create(config);
  ASSERT_TRUE(sym.ok());
  std::string src = CorpusFile("app_pie");
  std::string path = tmp.path() + "/late";
  std::string build_id = ReadelfBuildId(src);
  uint64_t offset = ReadelfLoads(src)[1].offset + 0x10;  // inside .text
  FrameRequest req{build_id, path, offset, false};

  EXPECT_FALSE((*sym)->ResolveBatch({&req, 1})[0]->resolved);
  fs::copy_file(src, path);  // the binary appears (a deploy finished)
  clock.t += std::chrono::seconds(30);
  auto loc = (*sym)->ResolveBatch({&req, 1})[0];
  EXPECT_FALSE(loc->resolved) << "negative entry must hold for its TTL";
  EXPECT_EQ(loc->display_name, fmt::format("late+{:#x}", offset));
  EXPECT_EQ((*sym)->stats().negative_hits, 1u);
  clock.t += std::chrono::seconds(31);
  EXPECT_TRUE((*sym)->ResolveBatch({&req, 1})[0]->resolved);
}

TEST(Symbolizer, CorruptAndTruncatedFilesGiveErrorsNotCrashes) {
  TempDir tmp;
  std::string good = CorpusFile("app_pie");
  std::string bytes;
  {
    std::ifstream in(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 4096u);
  auto section = [&](const std::string& name) -> std::pair<uint64_t, uint64_t> {
    std::istringstream in(RunShell("readelf -SW " + good));
    std::string line;
    while (std::getline(in, line)) {
      size_t bracket = line.find(']');
      if (bracket == std::string::npos) continue;
      // "  [34] .debug_info  PROGBITS  0000000000000000 00308b 0012ab 00  0 0 1"
      auto parts = common::SplitNonEmpty(line.substr(bracket + 1), ' ');
      if (parts.size() > 4 && parts[0] == name) {
        return {*common::ParseInt<uint64_t>(parts[3], 16), *common::ParseInt<uint64_t>(parts[4], 16)};
      }
    }
    return {0, 0};
  };
  std::mt19937_64 rng(42);
  std::map<std::string, std::string> files;
  files["empty"] = "";
  files["garbage"] = std::string(8192, '\0');
  for (char& c : files["garbage"]) c = static_cast<char>(rng());
  files["elf-magic-then-garbage"] = files["garbage"];
  files["elf-magic-then-garbage"].replace(0, 4, "\x7f" "ELF");
  for (size_t len : {size_t{16}, size_t{64}, size_t{1000}, bytes.size() / 2, bytes.size() - 100}) {
    files[fmt::format("truncated-{}", len)] = bytes.substr(0, len);
  }
  for (const char* sec : {".debug_info", ".debug_line", ".debug_abbrev", ".debug_str",
                          ".debug_rnglists", ".debug_loclists"}) {
    auto [off, size] = section(sec);
    if (size == 0) continue;
    for (int variant = 0; variant < 3; ++variant) {
      std::string corrupt = bytes;
      for (uint64_t i = 0; i < size; ++i) {
        if (variant == 0 || (variant == 1 && rng() % 8 == 0) || (variant == 2 && i < 64)) {
          corrupt[off + i] = static_cast<char>(rng());
        }
      }
      files[fmt::format("corrupt{}-{}", variant, sec)] = corrupt;
    }
  }
  ASSERT_GT(files.size(), 10u);
  auto sym = Symbolizer::Create(TestConfig());
  ASSERT_TRUE(sym.ok());
  std::string build_id = ReadelfBuildId(good);
  auto addresses = SampleAddresses(good, 97);
  for (const auto& [name, content] : files) {
    SCOPED_TRACE(name);
    std::string path = tmp.path() + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    bool header_intact = name.rfind("corrupt", 0) == 0;
    // By path: either an error or an answer, never a crash.
    for (uint64_t a : addresses) {
      auto loc = (*sym)->ResolvePathAddress(path, a);
      if (!header_intact) {
        EXPECT_FALSE(loc.ok());
      }
    }
    // By build id: frames come back unresolved (or resolved where DWARF survived), one per request.
    std::vector<FrameRequest> reqs;
    for (uint64_t a : addresses) reqs.push_back({build_id, path, a, false});
    auto out = (*sym)->ResolveBatch(reqs);
    EXPECT_EQ(out.size(), reqs.size());
    if (!header_intact) {
      for (const auto& loc : out) EXPECT_FALSE(loc->resolved);
    }
    (*sym)->DropBuildId(build_id);  // next file, same build id
  }
  // The same Symbolizer still answers for the intact file (through a restarted DWARF worker
  // when a corrupt file killed one).
  size_t resolved = 0;
  for (uint64_t a : addresses) {
    auto loc = (*sym)->ResolvePathAddress(good, a);
    ASSERT_TRUE(loc.ok()) << loc.error();
    resolved += loc->resolved ? 1 : 0;
  }
  EXPECT_EQ(resolved, addresses.size());
  const Symbolizer::Stats st = (*sym)->stats();
  EXPECT_EQ(st.worker_starts, st.worker_crashes + 1);
  std::printf("DWARF worker: %llu crashes or hangs on %zu damaged files\n",
              static_cast<unsigned long long>(st.worker_crashes), files.size());
}

// --- debuginfod --------------------------------------------------------------------------

int FreePort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  ::close(s);
  return port;
}

class DebuginfodServer {
 public:
  DebuginfodServer(const std::string& dir, const std::string& db, int port) {
    std::vector<std::string> args = {"debuginfod", "-F", dir, "-p", std::to_string(port),
                                     "-d", db, "-t", "0", "-g", "0"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    if (posix_spawnp(&pid_, "debuginfod", &actions, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
  }
  ~DebuginfodServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  [[nodiscard]] bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

TEST(Debuginfod, ServesDebugFileOfStrippedBinaryWithNoOtherSource) {
  std::string stripped = CorpusFile("app_dbgd");
  std::string full = stripped + ".full";
  std::string build_id = ReadelfBuildId(stripped);
  ASSERT_FALSE(build_id.empty());
  TempDir tmp;
  int port = FreePort();
  DebuginfodServer server(CorpusFile("debuginfod-serve"), tmp.path() + "/db.sqlite", port);
  ASSERT_TRUE(server.running());
  // Wait until the server has scanned the directory and serves the build id.
  httplib::Client http("127.0.0.1", port);
  bool ready = false;
  for (int i = 0; i < 300 && !ready; ++i) {
    auto res = http.Get(fmt::format("/buildid/{}/debuginfo", build_id));  // no HEAD support
    ready = res && res->status == 200;
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(ready) << "debuginfod did not serve " << build_id;

  ::setenv("DEBUGINFOD_URLS", fmt::format("http://127.0.0.1:{}", port).c_str(), 1);
  ::setenv("DEBUGINFOD_CACHE_PATH", (tmp.path() + "/client-cache").c_str(), 1);
  SymbolizerConfig config = TestConfig();
  config.locator.debuginfod = true;
  auto sym = Symbolizer::Create(config);
  ASSERT_TRUE(sym.ok());
  struct UnsetAtExit {
    ~UnsetAtExit() {
      ::unsetenv("DEBUGINFOD_URLS");
      ::unsetenv("DEBUGINFOD_CACHE_PATH");
    }
  } unset_at_exit;  // libdebuginfod reads both on every fetch

  auto addresses = SampleAddresses(full, 11);
  auto loads = ReadelfLoads(stripped);
  auto expected = Blocks(LlvmSymbolizer(Lines(full, addresses)));
  struct Case {
    const char* name;
    std::string path_hint;  // "": only the build id is known; the executable comes from debuginfod
  };
  for (const Case& c : {Case{"path hint", stripped}, Case{"build id only", ""}}) {
    SCOPED_TRACE(c.name);
    std::vector<FrameRequest> reqs;
    for (uint64_t a : addresses) {
      for (const LoadSegment& s : loads) {
        if (a >= s.vaddr && a < s.vaddr + s.filesz) {
          reqs.push_back({build_id, c.path_hint, a - s.vaddr + s.offset, false});
        }
      }
    }
    ASSERT_EQ(reqs.size(), addresses.size());
    auto out = (*sym)->ResolveBatch(reqs);
    size_t resolved = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      if (out[i]->resolved) {
        ++resolved;
        EXPECT_EQ(Print(*out[i]), expected[i]);
      }
    }
    EXPECT_GT(resolved, out.size() * 9 / 10);
    (*sym)->DropBuildId(build_id);
  }
  EXPECT_TRUE(fs::exists(tmp.path() + "/client-cache/" + build_id + "/debuginfo"));
}

}  // namespace
}  // namespace flamestream::symbols
