// Frames per second for the three ways a frame gets its symbols, on the test corpus:
//   BM_LruHit           every frame already in the in-process LRU (ResolveBatch, 512 frames)
//   BM_ColdDwarf        a fresh Symbolizer per iteration, as a freshly started process sees
//                       it: start the DWARF worker, locate and open each file (first lookup
//                       included), read DWARF; probe:0 parses in-process (trusted input only)
//   BM_LlvmSymbolizer   `llvm-symbolizer-14 --inlining --demangle` as a process on the same
//                       addresses (what the cold path is compared with)
//   BM_LlvmSymbolizerStartup  the same process with no input (its fixed cost)
// Counters: self_cpu_ms / child_cpu_ms per iteration (children: the DWARF worker, or
// llvm-symbolizer and its shell) and frames_per_cpu_s, the per-core rate that stays comparable
// when other jobs share the machine. Compare the ratios of one run, not absolute numbers.
// Run: nice build-*/bench/symbols_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "flamestream/common/strings.h"
#include "flamestream/symbols/dwarf_engine.h"
#include "flamestream/symbols/elf_file.h"
#include "flamestream/symbols/symbolizer.h"

namespace flamestream::symbols {
namespace {

std::string CorpusDir() {
  const char* env = std::getenv("FS_SYMBOLS_CORPUS");
  return env != nullptr ? env : FS_SYMBOLS_CORPUS_DIR;
}

std::string RunShell(const std::string& cmd) {
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

struct Workload {
  std::vector<std::string> build_ids;  // storage for the requests' views
  std::vector<std::string> paths;
  std::vector<FrameRequest> requests;
  std::string llvm_input_path;  // "<path> 0x<vaddr>" lines
};

// Every function start and every 5th byte inside each function of four corpus binaries.
const Workload& GetWorkload() {
  static const Workload* w = [] {
    auto* w = new Workload;
    w->build_ids.reserve(4);
    w->paths.reserve(4);
    std::string lines;
    for (const char* name : {"app_pie", "app_nopie", "calc_nopie", "libshapes.so"}) {
      std::string path = CorpusDir() + "/" + name;
      auto info = ReadElfInfo(path);
      if (!info.ok()) continue;
      w->build_ids.push_back(info->build_id);
      w->paths.push_back(path);
      std::istringstream nm(RunShell("nm -S --defined-only " + path));
      std::string line;
      while (std::getline(nm, line)) {
        auto p = common::SplitNonEmpty(line, ' ');
        if (p.size() != 4 || (p[2] != "t" && p[2] != "T" && p[2] != "W" && p[2] != "w")) continue;
        uint64_t addr = *common::ParseInt<uint64_t>(p[0], 16);
        uint64_t size = *common::ParseInt<uint64_t>(p[1], 16);
        for (uint64_t off = 0; off < size; off += 5) {
          for (const LoadSegment& s : info->segments) {
            if (addr + off >= s.vaddr && addr + off < s.vaddr + s.filesz) {
              w->requests.push_back({w->build_ids.back(), w->paths.back(),
                                     addr + off - s.vaddr + s.offset, false});
              lines += fmt::format("{} {:#x}\n", path, addr + off);
            }
          }
        }
      }
    }
    w->llvm_input_path = "/tmp/fs-symbols-bench-addresses.txt";
    std::ofstream(w->llvm_input_path) << lines;
    return w;
  }();
  return *w;
}

// CPU seconds of this process and of its reaped children (the DWARF worker, llvm-symbolizer
// and its shell): with other jobs on the machine, frames per CPU second ("per core") is the
// steadier comparison; wall-clock rates are reported too.
struct CpuTimes {
  double self = 0;
  double children = 0;
};

double Seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

CpuTimes Cpu() {
  rusage self{};
  rusage children{};
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &children);
  return {Seconds(self.ru_utime) + Seconds(self.ru_stime),
          Seconds(children.ru_utime) + Seconds(children.ru_stime)};
}

void ReportCpu(benchmark::State& state, const CpuTimes& before, size_t frames) {
  const CpuTimes after = Cpu();
  const double self = after.self - before.self;
  const double children = after.children - before.children;
  const double n = static_cast<double>(state.iterations());
  state.counters["self_cpu_ms"] = self * 1e3 / n;
  state.counters["child_cpu_ms"] = children * 1e3 / n;
  state.counters["frames_per_cpu_s"] = static_cast<double>(frames) * n / (self + children);
}

SymbolizerConfig BenchConfig() {
  SymbolizerConfig config;
  config.locator.debug_dirs = {CorpusDir() + "/debugroot"};
  config.locator.debuginfod = false;
  return config;
}

void BM_LruHit(benchmark::State& state) {
  const Workload& w = GetWorkload();
  auto sym = Symbolizer::Create(BenchConfig());
  if (!sym.ok() || w.requests.empty()) {
    state.SkipWithError("no corpus");
    return;
  }
  (*sym)->ResolveBatch(w.requests);  // warm the LRU
  constexpr size_t kBatch = 512;
  size_t pos = 0;
  for (auto _ : state) {
    size_t n = std::min(kBatch, w.requests.size() - pos);
    auto out = (*sym)->ResolveBatch(std::span(w.requests).subspan(pos, n));
    benchmark::DoNotOptimize(out.data());
    pos = pos + n >= w.requests.size() ? 0 : pos + n;
    state.SetItemsProcessed(state.items_processed() + static_cast<int64_t>(n));
  }
}
BENCHMARK(BM_LruHit);

void BM_ColdDwarf(benchmark::State& state) {
  const Workload& w = GetWorkload();
  size_t resolved = 0;
  SymbolizerConfig config = BenchConfig();
  config.probe_debug_info = state.range(0) != 0;
  if (!config.probe_debug_info) {
    config.dwarf_engine = LlvmDwarfEngine();  // LLVM in this process (fs_symbols_dwarf)
  }
  const CpuTimes before = Cpu();
  for (auto _ : state) {
    auto sym = Symbolizer::Create(config);
    auto out = (*sym)->ResolveBatch(w.requests);
    resolved = 0;
    for (const auto& loc : out) resolved += loc->resolved ? 1 : 0;
  }
  ReportCpu(state, before, w.requests.size());
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(w.requests.size()));
  state.counters["frames"] = static_cast<double>(w.requests.size());
  state.counters["resolved"] = static_cast<double>(resolved);
}
BENCHMARK(BM_ColdDwarf)->ArgName("probe")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LlvmSymbolizer(benchmark::State& state) {
  const Workload& w = GetWorkload();
  const CpuTimes before = Cpu();
  for (auto _ : state) {
    std::string out =
        RunShell("llvm-symbolizer-14 --inlining --demangle < " + w.llvm_input_path);
    benchmark::DoNotOptimize(out.data());
  }
  ReportCpu(state, before, w.requests.size());
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(w.requests.size()));
}
BENCHMARK(BM_LlvmSymbolizer)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LlvmSymbolizerStartup(benchmark::State& state) {
  for (auto _ : state) {
    std::string out = RunShell("llvm-symbolizer-14 --inlining --demangle < /dev/null");
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_LlvmSymbolizerStartup)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace flamestream::symbols

BENCHMARK_MAIN();
