// Unwind-table builds (libs/unwind BuildTable), with `readelf --debug-dump=frames-interp` on the
// same file as the baseline (it decodes the same CFI into the same rows, as text).
//
//   build/bench/unwind_bench --benchmark_min_time=0.5
//
// Counters: rows and bytes of the table; for BM_RunningBinaries, the distinct executable files
// mapped by running processes (by device and inode) and the bytes of all their tables.
#include <benchmark/benchmark.h>
#include <dirent.h>
#include <dlfcn.h>
#include <sys/stat.h>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <utility>

#include "flamestream/unwind/table.h"

namespace {

std::string LibcPath() {
  Dl_info info{};
  void* sym = dlsym(RTLD_DEFAULT, "sigaction");
  return sym != nullptr && dladdr(sym, &info) != 0 ? info.dli_fname : "";
}

void BM_BuildLibc(benchmark::State& state) {
  const std::string path = LibcPath();
  flamestream::unwind::BuildStats stats;
  uint64_t bytes = 0;
  for (auto _ : state) {
    auto table = flamestream::unwind::BuildTable(path, &stats);
    if (!table.ok()) {
      state.SkipWithError(table.status().ToString().c_str());
      return;
    }
    bytes = table->bytes();
    benchmark::DoNotOptimize(table->rows.data());
  }
  state.counters["rows"] = static_cast<double>(stats.rows);
  state.counters["bytes"] = static_cast<double>(bytes);
  state.counters["unsupported"] = static_cast<double>(stats.unsupported_rows);
}
BENCHMARK(BM_BuildLibc)->Unit(benchmark::kMillisecond);

// Baseline: readelf decoding the same CFI to text (output discarded).
void BM_ReadelfLibc(benchmark::State& state) {
  const std::string command =
      "readelf -wN --debug-dump=frames-interp '" + LibcPath() + "' >/dev/null 2>&1";
  for (auto _ : state) {
    if (std::system(command.c_str()) != 0) {
      state.SkipWithError("readelf failed");
      return;
    }
  }
}
BENCHMARK(BM_ReadelfLibc)->Unit(benchmark::kMillisecond);

// Every distinct file an executable mapping of a running process points at.
std::map<std::pair<dev_t, ino_t>, std::string> RunningBinaries() {
  std::map<std::pair<dev_t, ino_t>, std::string> files;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return files;
  while (dirent* e = readdir(proc)) {
    if (std::isdigit(static_cast<unsigned char>(e->d_name[0])) == 0) continue;
    const std::string dir = std::string("/proc/") + e->d_name;
    std::ifstream maps(dir + "/maps");
    for (std::string line; std::getline(maps, line);) {
      // 7f00-7f10 r-xp 00000000 fd:01 4242   /usr/lib/x86_64-linux-gnu/libc.so.6
      const size_t perms = line.find(' ');
      const size_t path = line.find(" /");
      if (perms == std::string::npos || path == std::string::npos || line[perms + 3] != 'x') {
        continue;
      }
      const std::string file = dir + "/root" + line.substr(path + 1);
      struct stat st {};
      if (stat(file.c_str(), &st) == 0) files.emplace(std::make_pair(st.st_dev, st.st_ino), file);
    }
  }
  closedir(proc);
  return files;
}

void BM_RunningBinaries(benchmark::State& state) {
  const auto files = RunningBinaries();
  uint64_t bytes = 0;
  uint64_t rows = 0;
  uint64_t built = 0;
  for (auto _ : state) {
    bytes = rows = built = 0;
    for (const auto& [key, path] : files) {
      auto table = flamestream::unwind::BuildTable(path, nullptr);
      if (!table.ok()) continue;
      ++built;
      rows += table->rows.size();
      bytes += table->bytes();
    }
  }
  state.counters["files"] = static_cast<double>(built);
  state.counters["rows"] = static_cast<double>(rows);
  state.counters["MiB"] = static_cast<double>(bytes) / (1 << 20);
}
BENCHMARK(BM_RunningBinaries)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
