// The BPF unwinder on frame-pointer-less code, checked against `perf record --call-graph dwarf`
// on the same process at the same time: the agent's stacks must be perf's stacks.
//
// Both tools print frames as (file, offset). The agent prints return addresses as they are;
// perf prints them minus one (the call instruction), except the interrupted pc of a frame a
// signal handler interrupted. Offsets are compared after undoing that.
#include <fcntl.h>
#include <gelf.h>
#include <gtest/gtest.h>
#include <libelf.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

namespace flamestream::testing_agent {
namespace {

#define SKIP_UNLESS_PRIVILEGED()                                                               \
  if (!Privileged()) {                                                                         \
    GTEST_SKIP() << "needs root or CAP_BPF+CAP_PERFMON+CAP_SYS_PTRACE (set CI=true to force)"; \
  }

constexpr uint32_t kHz = 499;

std::string Basename(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// ELF vaddr -> file offset through the PT_LOAD headers (perf prints vaddrs; for non-PIE code
// they are not file offsets).
class OffsetMapper {
 public:
  std::optional<uint64_t> ToOffset(const std::string& path, uint64_t vaddr) {
    auto it = files_.find(path);
    if (it == files_.end()) it = files_.emplace(path, Load(path)).first;
    for (const GElf_Phdr& ph : it->second) {
      if (vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_memsz) {
        return vaddr - ph.p_vaddr + ph.p_offset;
      }
    }
    return std::nullopt;
  }
  bool Known(const std::string& path) {
    (void)ToOffset(path, 0);
    return !files_[path].empty();
  }

 private:
  static std::vector<GElf_Phdr> Load(const std::string& path) {
    std::vector<GElf_Phdr> loads;
    elf_version(EV_CURRENT);
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return loads;
    Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
    size_t phnum = 0;
    if (elf != nullptr && elf_getphdrnum(elf, &phnum) == 0) {
      for (size_t i = 0; i < phnum; ++i) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD) {
          loads.push_back(ph);
        }
      }
    }
    elf_end(elf);
    close(fd);
    return loads;
  }
  std::map<std::string, std::vector<GElf_Phdr>> files_;
};

struct PerfStacks {
  std::map<std::string, uint64_t> stacks;  // canonical stack -> samples
  std::set<std::string> roots;             // outermost frames perf named as a thread's root
  uint64_t samples = 0;
  uint64_t rooted = 0;  // samples whose outermost frame is _start / clone3 / start_thread
};

std::string FrameKey(const std::string& file, uint64_t offset) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "+0x%llx", static_cast<unsigned long long>(offset));
  return file + buf;
}

bool IsRootSymbol(const std::string& sym) {
  return sym == "_start" || sym.find("clone") != std::string::npos ||
         sym.find("start_thread") != std::string::npos;
}

// `perf script -F ip,sym,dso`: one block per sample, leaf first, lines
// "\t<hex ip> <sym>[+off] (<dso>)"; inlined frames repeat the ip with " (inlined)" instead.
PerfStacks ParsePerf(const std::string& text) {
  PerfStacks out;
  OffsetMapper mapper;
  std::istringstream in(text);
  std::string line;
  std::vector<std::string> frames;  // leaf first, canonical "file+0xoff"
  std::string last_sym;
  bool after_signal = false;
  bool bad = false;
  auto flush = [&] {
    if (frames.empty()) return;
    ++out.samples;
    if (IsRootSymbol(last_sym)) {
      ++out.rooted;
      out.roots.insert(frames.back());
    }
    std::string key;
    for (size_t i = frames.size(); i-- > 0;) key += frames[i] + ";";
    if (!bad) out.stacks[key]++;
    frames.clear();
    after_signal = false;
    bad = false;
  };
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t") == std::string::npos) {
      flush();
      continue;
    }
    if (line.find("(inlined)") != std::string::npos) continue;
    std::istringstream ls(line);
    std::string ip_hex;
    ls >> ip_hex;
    const size_t open = line.rfind(" (");
    const size_t close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) {
      bad = true;
      continue;
    }
    const std::string dso = line.substr(open + 2, close - open - 2);
    std::string sym = line.substr(line.find(ip_hex) + ip_hex.size());
    sym = sym.substr(0, sym.rfind(" ("));
    sym.erase(0, sym.find_first_not_of(' '));
    if (const size_t plus = sym.find("+0x"); plus != std::string::npos) sym.resize(plus);
    uint64_t ip = std::stoull(ip_hex, nullptr, 16);
    // perf prints an ELF vaddr for shared objects and PIE, but already a file offset for a
    // non-PIE executable's code: convert only what lies in a segment's address range.
    std::optional<uint64_t> off = mapper.ToOffset(dso, ip);
    if (!off && mapper.Known(dso)) off = ip;
    if (!off || dso.find('[') != std::string::npos) {
      bad = true;  // [unknown], [vdso]: not comparable by file offset
      frames.emplace_back("?");
      last_sym = sym;
      continue;
    }
    // perf shows a return address as the call (ra - 1); the agent shows ra.
    if (!frames.empty() && !after_signal) *off += 1;
    frames.push_back(FrameKey(Basename(dso), *off));
    // perf cannot name __restore_rt (its return address minus one lies before the symbol)
    // and shows it as libc's "[unknown]"; the frame after it is the interrupted pc itself.
    after_signal =
        sym == "__restore_rt" || (sym == "[unknown]" && Basename(dso).rfind("libc.so", 0) == 0);
    last_sym = sym;
  }
  flush();
  return out;
}

struct AgentStacks {
  std::map<std::string, uint64_t> stacks;  // canonical stack (root first) -> samples
  uint64_t samples = 0;
};

// The agent's folded output with offsets: "comm;file+0xoff;...;leaf count", root first.
AgentStacks ParseAgent(const std::string& text) {
  AgentStacks out;
  for (const FoldedLine& l : ParseFolded(text)) {
    std::string key;
    for (size_t i = 1; i < l.frames.size(); ++i) key += l.frames[i] + ";";
    out.stacks[key] += l.count;
    out.samples += l.count;
  }
  return out;
}

std::string RootOf(const std::string& key) { return key.substr(0, key.find(';')); }

struct Comparison {
  uint64_t samples = 0;
  uint64_t matched = 0;   // agent samples whose exact stack perf also recorded
  uint64_t rooted = 0;    // agent samples whose outermost frame is a root perf named
  std::string unmatched;  // the most frequent agent stacks perf never saw
};

Comparison Compare(const AgentStacks& ours, const PerfStacks& perf) {
  Comparison c;
  std::vector<std::pair<uint64_t, std::string>> missing;
  for (const auto& [key, n] : ours.stacks) {
    c.samples += n;
    if (perf.stacks.contains(key)) {
      c.matched += n;
    } else {
      missing.emplace_back(n, key);
    }
    if (perf.roots.contains(RootOf(key))) c.rooted += n;
  }
  std::sort(missing.rbegin(), missing.rend());
  for (size_t i = 0; i < missing.size() && i < 5; ++i) {
    c.unmatched += std::to_string(missing[i].first) + " " + missing[i].second + "\n";
  }
  return c;
}

struct TwoRuns {
  AgentStacks agent;
  PerfStacks perf;
  std::string agent_log;
};

// Samples `pid` with the agent and perf at the same time for `seconds`.
TwoRuns SampleBoth(pid_t pid, int seconds, const std::vector<std::string>& extra = {}) {
  TwoRuns run;
  const std::string data =
      (std::filesystem::temp_directory_path() / ("fs-unwind-" + std::to_string(pid) + ".data"))
          .string();
  std::thread perf([&] {
    (void)RunToCompletion({"/usr/bin/perf", "record", "-q", "-e", "cpu-clock", "-F",
                           std::to_string(kHz), "--call-graph", "dwarf", "-p", std::to_string(pid),
                           "-o", data, "--", "/bin/sleep", std::to_string(seconds)});
  });
  std::vector<std::string> args = {BinPath("flamestream-agent"),
                                   "--print",
                                   "--duration",
                                   std::to_string(seconds) + "s",
                                   "--frequency",
                                   std::to_string(kHz),
                                   "--pid",
                                   std::to_string(pid),
                                   "--set",
                                   "agent.print_symbolize=false",
                                   "--set",
                                   "agent.kernel_stacks=false",
                                   "--log-level",
                                   "info"};
  args.insert(args.end(), extra.begin(), extra.end());
  const std::string out = RunWatchingStderr(args, [&](const std::string& line) {
    if (line.find("unwind") != std::string::npos ||
        line.find("sampler stopped") != std::string::npos) {
      run.agent_log += line + "\n";
    }
  });
  perf.join();
  run.agent = ParseAgent(out);
  const std::string script = RunToCompletion(
      {"/usr/bin/perf", "script", "-i", data, "-F", "ip,sym,dso", "--no-demangle", "--no-inline"});
  std::filesystem::remove(data);
  run.perf = ParsePerf(script);
  return run;
}

void ExpectAgentEqualsPerf(const std::string& what, const TwoRuns& run) {
  const Comparison c = Compare(run.agent, run.perf);
  std::printf(
      "%s: agent %lu samples, %.1f%% equal to a perf --call-graph dwarf stack, %.1f%% "
      "reach the thread's root; perf %lu samples, %.1f%% rooted\n%s",
      what.c_str(), static_cast<unsigned long>(c.samples),
      c.samples ? 100.0 * c.matched / c.samples : 0.0,
      c.samples ? 100.0 * c.rooted / c.samples : 0.0, static_cast<unsigned long>(run.perf.samples),
      run.perf.samples ? 100.0 * run.perf.rooted / run.perf.samples : 0.0, run.agent_log.c_str());
  ASSERT_GT(c.samples, 300u);
  ASSERT_GT(run.perf.samples, 300u);
  // perf is the reference only where it reached the root itself.
  ASSERT_GE(run.perf.rooted * 100, run.perf.samples * 95);
  EXPECT_GE(c.rooted * 100, c.samples * 95) << "most common stacks perf did not record:\n"
                                            << c.unmatched;
  EXPECT_GE(c.matched * 100, c.samples * 95) << "most common stacks perf did not record:\n"
                                             << c.unmatched;
}

// Share of agent samples with a frame in `file`.
double ShareIn(const AgentStacks& s, const std::string& file) {
  uint64_t n = 0;
  for (const auto& [key, count] : s.stacks) {
    if (key.find(";" + file + "+") != std::string::npos || key.rfind(file + "+", 0) == 0) {
      n += count;
    }
  }
  return s.samples ? static_cast<double>(n) / static_cast<double>(s.samples) : 0;
}

TEST(AgentUnwind, FramelessPieStacksEqualPerfDwarf) {
  SKIP_UNLESS_PRIVILEGED();
  Child w = Child::Spawn({BinPath("fs-workload-unwind"), "spin", "20"});
  const TwoRuns run = SampleBoth(w.pid(), 4);
  ExpectAgentEqualsPerf("pie", run);
  // The hot leaves really are in libm, the shared library and the binary itself.
  EXPECT_GT(ShareIn(run.agent, "libm.so.6"), 0.2);
  EXPECT_GT(ShareIn(run.agent, "libfs-uwlib.so"), 0.3);
}

TEST(AgentUnwind, FramelessNonPieStacksEqualPerfDwarf) {
  SKIP_UNLESS_PRIVILEGED();
  Child w = Child::Spawn({BinPath("fs-workload-unwind-nopie"), "spin", "20"});
  const TwoRuns run = SampleBoth(w.pid(), 4);
  ExpectAgentEqualsPerf("non-pie", run);
  EXPECT_GT(ShareIn(run.agent, "libm.so.6"), 0.2);
}

TEST(AgentUnwind, SignalHandlerFramesUnwindThroughRestoreRt) {
  SKIP_UNLESS_PRIVILEGED();
  const std::string exe = BinPath("fs-workload-unwind");
  Child w = Child::Spawn({exe, "signal", "20"});
  const TwoRuns run = SampleBoth(w.pid(), 4);
  ExpectAgentEqualsPerf("signal", run);
  // Samples in the handler: the handler, __restore_rt in libc, then the interrupted code.
  FunctionRanges fns = FunctionRanges::Load(exe);
  uint64_t in_handler = 0, through = 0;
  for (const auto& [key, n] : run.agent.stacks) {
    std::vector<std::string> frames;
    std::istringstream ks(key);
    for (std::string f; std::getline(ks, f, ';');) frames.push_back(f);
    for (size_t i = 0; i < frames.size(); ++i) {
      const size_t plus = frames[i].find("+0x");
      if (frames[i].substr(0, plus) != Basename(exe)) continue;
      std::optional<std::string> fn = fns.At(std::stoull(frames[i].substr(plus + 3), nullptr, 16));
      if (fn == "handler") {
        in_handler += n;
        // Root first: _start ... interrupted frames, libc's __restore_rt, handler.
        if (i >= 2 && frames[i - 1].rfind("libc.so.6+", 0) == 0) through += n;
        break;
      }
    }
  }
  std::printf("signal: %lu samples in the handler, %lu of them below __restore_rt\n",
              static_cast<unsigned long>(in_handler), static_cast<unsigned long>(through));
  EXPECT_GT(in_handler * 20, run.agent.samples);  // > 5%
  EXPECT_GE(through * 100, in_handler * 95);
}

TEST(AgentUnwind, VdsoFramesUnwindThroughTheKernelsOwnTable) {
  SKIP_UNLESS_PRIVILEGED();
  Child w = Child::Spawn({BinPath("fs-workload-unwind"), "vdso", "20"});
  const TwoRuns run = SampleBoth(w.pid(), 4);
  // perf names vDSO frames [vdso] without a file offset, so compare reach, not frames.
  uint64_t in_vdso = 0, rooted = 0;
  for (const auto& [key, n] : run.agent.stacks) {
    const bool vdso = key.find("[vdso]+") != std::string::npos;
    if (!vdso) continue;
    in_vdso += n;
    if (run.perf.roots.contains(RootOf(key))) rooted += n;
  }
  std::printf("vdso: %lu of %lu samples in the vDSO, %lu of those reach _start\n",
              static_cast<unsigned long>(in_vdso), static_cast<unsigned long>(run.agent.samples),
              static_cast<unsigned long>(rooted));
  EXPECT_GT(in_vdso * 2, run.agent.samples);
  EXPECT_GE(rooted * 100, in_vdso * 95);
}

TEST(AgentUnwind, DeepFramelessRecursionIsWalkedToTheRoot) {
  SKIP_UNLESS_PRIVILEGED();
  const std::string exe = BinPath("fs-workload-unwind");
  Child w = Child::Spawn({exe, "recurse", "20", "600"});
  // perf's dwarf mode copies 8 KiB of stack and cannot reach the root here: the agent alone.
  const std::string out =
      RunToCompletion({BinPath("flamestream-agent"), "--print", "--duration", "3s", "--frequency",
                       std::to_string(kHz), "--pid", std::to_string(w.pid()), "--set",
                       "agent.print_symbolize=false", "--set", "agent.kernel_stacks=false",
                       "--user-stack-depth", "1024", "--log-level", "warn"});
  FunctionRanges fns = FunctionRanges::Load(exe);
  uint64_t total = 0, deep = 0;
  for (const FoldedLine& l : ParseFolded(out)) {
    total += l.count;
    size_t recursions = 0;
    bool rooted = false;
    for (size_t i = 1; i < l.frames.size(); ++i) {
      const size_t plus = l.frames[i].find("+0x");
      if (l.frames[i].substr(0, plus) != Basename(exe)) continue;
      std::optional<std::string> fn =
          fns.At(std::stoull(l.frames[i].substr(plus + 3), nullptr, 16));
      if (i == 1 && fn == "_start") rooted = true;
      if (fn == "recurse") ++recursions;
    }
    if (rooted && recursions >= 600) deep += l.count;
  }
  std::printf("recursion: %lu of %lu samples reach _start through >= 600 frames\n",
              static_cast<unsigned long>(deep), static_cast<unsigned long>(total));
  ASSERT_GT(total, 300u);
  EXPECT_GE(deep * 100, total * 95);
}

// Garbles a copy of the workload's .eh_frame: the agent must neither crash nor invent frames.
TEST(AgentUnwind, CorruptEhFrameFallsBackToFramePointersAndIsCounted) {
  SKIP_UNLESS_PRIVILEGED();
  const std::string exe = BinPath("fs-workload-unwind");
  const std::string copy =
      (std::filesystem::temp_directory_path() / "fs-workload-unwind-corrupt").string();
  std::filesystem::copy_file(exe, copy, std::filesystem::copy_options::overwrite_existing);
  {
    elf_version(EV_CURRENT);
    const int fd = open(copy.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
    size_t shstrndx = 0;
    ASSERT_EQ(elf_getshdrstrndx(elf, &shstrndx), 0);
    uint64_t off = 0, size = 0;
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
      GElf_Shdr sh;
      gelf_getshdr(scn, &sh);
      if (std::string(elf_strptr(elf, shstrndx, sh.sh_name)) == ".eh_frame") {
        off = sh.sh_offset;
        size = sh.sh_size;
      }
    }
    elf_end(elf);
    ASSERT_GT(size, 64u);
    // Every CIE/FDE length becomes huge and every instruction byte junk.
    std::string junk(size, '\0');
    for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 131 + 7) & 0xff);
    ASSERT_EQ(pwrite(fd, junk.data(), junk.size(), static_cast<off_t>(off)),
              static_cast<ssize_t>(junk.size()));
    close(fd);
  }
  Child w = Child::Spawn({copy, "spin", "20"});
  std::string log;
  int status = -1;
  const std::string out =
      RunWatchingStderr({BinPath("flamestream-agent"), "--print", "--duration", "3s", "--frequency",
                         std::to_string(kHz), "--pid", std::to_string(w.pid()), "--set",
                         "agent.print_symbolize=false", "--log-level", "info"},
                        [&](const std::string& line) {
                          if (line.find("sampler stopped") != std::string::npos) log = line;
                        });
  (void)status;
  std::filesystem::remove(copy);
  const AgentStacks s = ParseAgent(out);
  std::printf("corrupt: %lu samples; %s\n", static_cast<unsigned long>(s.samples), log.c_str());
  EXPECT_GT(s.samples, 300u);
  EXPECT_NE(log.find("unwind_cfi_errors="), std::string::npos) << log;
  EXPECT_EQ(log.find("unwind_cfi_errors=0 "), std::string::npos) << log;
  // Frames in libm and the shared library still unwind by CFI up to the corrupt binary.
  EXPECT_GT(ShareIn(s, "libm.so.6"), 0.2);
}

}  // namespace
}  // namespace flamestream::testing_agent
