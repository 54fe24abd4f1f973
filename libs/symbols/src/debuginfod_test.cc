// debuginfod off the consume path: downloads run on a bounded worker pool, a batch waits for
// them at most debuginfod_batch_deadline, frames still pending come back unresolved (counted,
// not cached) and resolve in a later batch; oversized files are refused. An httplib server
// stands in for debuginfod and serves this test executable (which has DWARF) as the debug file
// of its own build id.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <link.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "flamestream/symbols/elf_file.h"
#include "flamestream/symbols/symbolizer.h"

extern "C" __attribute__((noinline, used)) int FsDebuginfodTestTarget(int x) {
  asm volatile("" ::: "memory");
  return x * 3 + 1;
}

namespace flamestream::symbols {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string SelfPath() { return fs::read_symlink("/proc/self/exe").string(); }

uint64_t MainProgramBias() {
  uint64_t bias = 0;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        *static_cast<uint64_t*>(out) = info->dlpi_addr;
        return 1;  // the first object is the main program
      },
      &bias);
  return bias;
}

// The file offset of FsDebuginfodTestTarget in this executable, as an agent would report it.
uint64_t TargetFileOffset(const ElfInfo& self) {
  const uint64_t vaddr =
      reinterpret_cast<uintptr_t>(&FsDebuginfodTestTarget) - MainProgramBias();
  for (const LoadSegment& s : self.segments) {
    if (vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz) {
      return vaddr - s.vaddr + s.offset;
    }
  }
  ADD_FAILURE() << "no PT_LOAD segment holds " << std::hex << vaddr;
  return 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A debuginfod stand-in: GET /buildid/<id>/{debuginfo,executable}. Serves `file` for
// `build_id` (404 for any other id) after `delay`, and counts requests and the most handled at
// once.
class FakeDebuginfod {
 public:
  FakeDebuginfod(std::string build_id, std::string file, std::chrono::milliseconds delay)
      : build_id_(std::move(build_id)), file_(std::move(file)), delay_(delay) {
    server_.Get(R"(/buildid/([0-9a-f]+)/(debuginfo|executable))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  const int now = ++in_flight_;
                  int prev = max_in_flight_.load();
                  while (now > prev && !max_in_flight_.compare_exchange_weak(prev, now)) {
                  }
                  {
                    std::lock_guard<std::mutex> lock(mu_);
                    ++requests_[req.matches[1].str() + "/" + req.matches[2].str()];
                  }
                  std::this_thread::sleep_for(delay_);
                  if (req.matches[1].str() == build_id_) {
                    res.set_content(file_, "application/octet-stream");
                  } else {
                    res.status = 404;
                  }
                  --in_flight_;
                });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });  // already listening
  }
  ~FakeDebuginfod() {
    server_.stop();
    thread_.join();
  }
  [[nodiscard]] std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }
  int requests(const std::string& build_id, const std::string& kind) {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_[build_id + "/" + kind];
  }
  int total_requests() {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& [k, v] : requests_) n += v;
    return n;
  }
  [[nodiscard]] int max_in_flight() const { return max_in_flight_.load(); }

 private:
  httplib::Server server_;
  std::string build_id_;
  std::string file_;
  std::chrono::milliseconds delay_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> in_flight_{0};
  std::atomic<int> max_in_flight_{0};
  std::mutex mu_;
  std::map<std::string, int> requests_;
};

// DEBUGINFOD_URLS and a private client cache for one test; libdebuginfod reads both on every
// fetch, so the Symbolizer (its workers) must be gone before this is.
class DebuginfodEnv {
 public:
  explicit DebuginfodEnv(const std::string& url) {
    cache_ = fs::temp_directory_path() /
             fmt::format("fs-debuginfod-test-{}-{}", ::getpid(), counter_++);
    fs::remove_all(cache_);
    ::setenv("DEBUGINFOD_URLS", url.c_str(), 1);
    ::setenv("DEBUGINFOD_CACHE_PATH", cache_.c_str(), 1);
  }
  ~DebuginfodEnv() {
    ::unsetenv("DEBUGINFOD_URLS");
    ::unsetenv("DEBUGINFOD_CACHE_PATH");
    std::error_code ec;
    fs::remove_all(cache_, ec);
  }

 private:
  static inline int counter_ = 0;
  fs::path cache_;
};

// Only debuginfod can find anything: no host paths, no debug dirs.
SymbolizerConfig OnlyDebuginfod() {
  SymbolizerConfig c;
  c.locator.use_host_paths = false;
  c.locator.debug_dirs = {};
  c.locator.debuginfod = true;
  c.locator.debuginfod_timeout = std::chrono::seconds(60);
  return c;
}

struct Self {
  ElfInfo elf;
  std::string bytes;
  uint64_t offset = 0;
};
const Self& SelfInfo() {
  static const Self self = [] {
    Self s;
    auto info = ReadElfInfo(SelfPath());
    EXPECT_TRUE(info.ok()) << info.error();
    if (info.ok()) s.elf = *info;
    s.bytes = ReadFile(SelfPath());
    s.offset = TargetFileOffset(s.elf);
    return s;
  }();
  return self;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

TEST(DebuginfodAsync, SelfHasWhatTheTestsNeed) {
  const Self& self = SelfInfo();
  ASSERT_FALSE(self.elf.build_id.empty()) << "the test executable needs a build id";
  ASSERT_TRUE(self.elf.has_dwarf) << "the test executable needs DWARF (-g)";
  ASSERT_GT(self.bytes.size(), size_t{1} << 20);
}

// A slow server (3 s) must not hold a batch much longer than its deadline (300 ms): the frame
// comes back unresolved, counted, and is not cached, so the batch after the download names it.
TEST(DebuginfodAsync, SlowServerDoesNotHoldTheBatchAndTheFrameResolvesLater) {
  const Self& self = SelfInfo();
  ASSERT_FALSE(self.elf.build_id.empty());
  FakeDebuginfod server(self.elf.build_id, self.bytes, std::chrono::milliseconds(3000));
  DebuginfodEnv env(server.url());
  SymbolizerConfig config = OnlyDebuginfod();
  config.debuginfod_batch_deadline = std::chrono::milliseconds(300);
  auto sym = Symbolizer::Create(config);
  ASSERT_TRUE(sym.ok()) << sym.error();

  const std::vector<FrameRequest> frames = {
      {.build_id = self.elf.build_id, .path_hint = "/app/bin", .file_offset = self.offset}};
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    const auto start = Clock::now();
    auto out = (*sym)->ResolveBatch(frames);
    const double took = Seconds(Clock::now() - start);
    EXPECT_LT(took, 2.0) << "the batch waited for the download";
    ASSERT_EQ(out.size(), 1u);
    EXPECT_FALSE(out[0]->resolved);
    EXPECT_EQ(out[0]->display_name, fmt::format("bin+{:#x}", self.offset));
  }
  EXPECT_EQ((*sym)->stats().pending_debuginfo, 2u);
  EXPECT_EQ((*sym)->stats().negative_hits, 0u);
  // One download per build id, however many batches asked.
  EXPECT_EQ(server.requests(self.elf.build_id, "debuginfo"), 1);

  // Once the download finished, the same frame resolves (not a cached unresolved answer).
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  while ((*sym)->stats().debuginfod.found == 0 && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE((*sym)->stats().debuginfod.found, 1u);
  auto out = (*sym)->ResolveBatch(frames);
  ASSERT_TRUE(out[0]->resolved) << out[0]->display_name;
  EXPECT_EQ(out[0]->frames.front().function, "FsDebuginfodTestTarget");
  EXPECT_EQ((*sym)->stats().pending_debuginfo, 2u);
  EXPECT_EQ(server.requests(self.elf.build_id, "debuginfo"), 1);
}

// The deadline is spent once per build id: a batch after the one that waited for a pending
// download returns at once instead of waiting again.
TEST(DebuginfodAsync, APendingBuildIdIsWaitedForOnlyOnce) {
  const Self& self = SelfInfo();
  ASSERT_FALSE(self.elf.build_id.empty());
  FakeDebuginfod server(self.elf.build_id, self.bytes, std::chrono::milliseconds(5000));
  DebuginfodEnv env(server.url());
  SymbolizerConfig config = OnlyDebuginfod();
  config.debuginfod_batch_deadline = std::chrono::milliseconds(1500);
  auto sym = Symbolizer::Create(config);
  ASSERT_TRUE(sym.ok()) << sym.error();
  const std::vector<FrameRequest> frames = {
      {.build_id = self.elf.build_id, .file_offset = self.offset}};
  auto start = Clock::now();
  auto out = (*sym)->ResolveBatch(frames);
  const double first = Seconds(Clock::now() - start);
  EXPECT_FALSE(out[0]->resolved);
  EXPECT_GE(first, 1.2) << "the first batch should wait for the download up to its deadline";
  EXPECT_LT(first, 3.5);
  start = Clock::now();
  out = (*sym)->ResolveBatch(frames);
  const double second = Seconds(Clock::now() - start);
  EXPECT_FALSE(out[0]->resolved);
  EXPECT_LT(second, 0.75) << "the second batch waited again for the same download";
  EXPECT_EQ((*sym)->stats().pending_debuginfo, 2u);
  // Shutdown aborts the running download instead of waiting for it.
  start = Clock::now();
  sym->reset();
  EXPECT_LT(Seconds(Clock::now() - start), 2.5) << "the destructor waited for the download";
}

// A download that finishes within the deadline is used by the batch that started it.
TEST(DebuginfodAsync, FastServerResolvesWithinTheBatch) {
  const Self& self = SelfInfo();
  ASSERT_FALSE(self.elf.build_id.empty());
  FakeDebuginfod server(self.elf.build_id, self.bytes, std::chrono::milliseconds(0));
  DebuginfodEnv env(server.url());
  SymbolizerConfig config = OnlyDebuginfod();
  config.debuginfod_batch_deadline = std::chrono::seconds(30);
  auto sym = Symbolizer::Create(config);
  ASSERT_TRUE(sym.ok()) << sym.error();
  auto out = (*sym)->ResolveBatch(std::vector<FrameRequest>{
      {.build_id = self.elf.build_id, .file_offset = self.offset}});
  ASSERT_TRUE(out[0]->resolved) << out[0]->display_name;
  EXPECT_EQ(out[0]->frames.front().function, "FsDebuginfodTestTarget");
  EXPECT_EQ((*sym)->stats().pending_debuginfo, 0u);
}

// Resolve mode (one address at a time, no consume loop) waits for the download itself.
TEST(DebuginfodAsync, ResolveModeWaitsForTheDownload) {
  const Self& self = SelfInfo();
  ASSERT_FALSE(self.elf.build_id.empty());
  FakeDebuginfod server(self.elf.build_id, self.bytes, std::chrono::milliseconds(1000));
  DebuginfodEnv env(server.url());
  SymbolizerConfig config = OnlyDebuginfod();
  config.debuginfod_batch_deadline = std::chrono::milliseconds(0);
  auto sym = Symbolizer::Create(config);
  ASSERT_TRUE(sym.ok()) << sym.error();
  auto vaddr = (*sym)->BuildIdOffsetToAddress(self.elf.build_id, "", self.offset);
  ASSERT_TRUE(vaddr.ok()) << vaddr.error();
  auto loc = (*sym)->ResolveBuildIdAddress(self.elf.build_id, "", *vaddr);
  ASSERT_TRUE(loc.ok()) << loc.error();
  EXPECT_EQ(loc->frames.front().function, "FsDebuginfodTestTarget");
}

// A file over debuginfod_max_size is refused and counted; its build id is negatively cached
// (not downloaded again by the next batch) and its frames stay unresolved.
TEST(DebuginfodAsync, OversizedFileIsRefusedAndNegativelyCached) {
  const Self& self = SelfInfo();
  ASSERT_FALSE(self.elf.build_id.empty());
  FakeDebuginfod server(self.elf.build_id, self.bytes, std::chrono::milliseconds(0));
  DebuginfodEnv env(server.url());
  SymbolizerConfig config = OnlyDebuginfod();
  config.locator.debuginfod_max_size = 64 << 10;  // the test executable is several MiB
  config.debuginfod_batch_deadline = std::chrono::seconds(30);
  auto sym = Symbolizer::Create(config);
  ASSERT_TRUE(sym.ok()) << sym.error();
  const std::vector<FrameRequest> frames = {
      {.build_id = self.elf.build_id, .file_offset = self.offset}};
  auto out = (*sym)->ResolveBatch(frames);
  EXPECT_FALSE(out[0]->resolved);
  Symbolizer::Stats st = (*sym)->stats();
  EXPECT_EQ(st.debuginfod.too_large, 1u);
  EXPECT_EQ(st.debuginfod.found, 0u);
  EXPECT_EQ(st.pending_debuginfo, 0u) << "a refused file is an answer, not a pending download";
  EXPECT_EQ(st.negative_entries, 1u);
  std::error_code ec;
  const auto cached = fs::file_size(
      fs::path(std::getenv("DEBUGINFOD_CACHE_PATH")) / self.elf.build_id / "debuginfo", ec);
  EXPECT_TRUE(ec || cached == 0) << "the oversized file stayed in the client cache";

  const int asked = server.requests(self.elf.build_id, "debuginfo");
  out = (*sym)->ResolveBatch(frames);
  EXPECT_FALSE(out[0]->resolved);
  EXPECT_EQ(server.requests(self.elf.build_id, "debuginfo"), asked);
  EXPECT_GE((*sym)->stats().negative_hits, 1u);
}

// Many unknown build ids at once: never more than `debuginfod_concurrency` requests reach the
// server at a time, each build id is asked once, and the batch still ends by its deadline.
TEST(DebuginfodAsync, ConcurrencyIsBoundedAndLookupsAreDeduplicated) {
  FakeDebuginfod server("", "", std::chrono::milliseconds(400));  // 404 for everything
  DebuginfodEnv env(server.url());
  SymbolizerConfig config = OnlyDebuginfod();
  config.locator.debuginfod_concurrency = 2;
  config.debuginfod_batch_deadline = std::chrono::milliseconds(300);
  auto sym = Symbolizer::Create(config);
  ASSERT_TRUE(sym.ok()) << sym.error();
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    ids.push_back(fmt::format("{:040x}", 0xabc000 + i));
  }
  std::vector<FrameRequest> frames;
  for (const std::string& id : ids) {
    frames.push_back({.build_id = id, .file_offset = 0x1000});
    frames.push_back({.build_id = id, .file_offset = 0x2000});
  }
  const auto start = Clock::now();
  auto out = (*sym)->ResolveBatch(frames);
  EXPECT_LT(Seconds(Clock::now() - start), 2.0);
  for (const auto& loc : out) {
    EXPECT_FALSE(loc->resolved);
  }
  EXPECT_GT((*sym)->stats().pending_debuginfo, 0u);

  // Batches keep coming while the downloads drain; they all end up as not found.
  const auto give_up = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < give_up) {
    (*sym)->ResolveBatch(frames);
    const Symbolizer::Stats st = (*sym)->stats();
    if (st.debuginfod.in_flight == 0 && st.debuginfod.queued == 0 &&
        st.negative_entries == ids.size()) {
      break;
    }
  }
  const Symbolizer::Stats st = (*sym)->stats();
  EXPECT_EQ(st.negative_entries, ids.size());
  EXPECT_LE(server.max_in_flight(), 2);
  EXPECT_LE(st.debuginfod.max_in_flight, 2u);
  EXPECT_GE(server.max_in_flight(), 1);
  for (const std::string& id : ids) {
    EXPECT_EQ(server.requests(id, "debuginfo"), 1) << id;
    EXPECT_LE(server.requests(id, "executable"), 1) << id;
  }
  EXPECT_GE(st.debuginfod.not_found, ids.size());
}

// The pending set is bounded: past debuginfod_max_pending, lookups are deferred (counted) and
// made by a later batch.
TEST(DebuginfodAsync, PendingDownloadsAreBounded) {
  FakeDebuginfod server("", "", std::chrono::milliseconds(300));
  DebuginfodEnv env(server.url());
  SymbolizerConfig config = OnlyDebuginfod();
  config.locator.debuginfod_concurrency = 1;
  config.locator.debuginfod_max_pending = 2;
  config.debuginfod_batch_deadline = std::chrono::milliseconds(0);
  auto sym = Symbolizer::Create(config);
  ASSERT_TRUE(sym.ok()) << sym.error();
  std::vector<FrameRequest> frames;
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(fmt::format("{:040x}", 0xdef000 + i));
  }
  for (const std::string& id : ids) {
    frames.push_back({.build_id = id, .file_offset = 0x1000});
  }
  (*sym)->ResolveBatch(frames);
  Symbolizer::Stats st = (*sym)->stats();
  EXPECT_LE(st.debuginfod.queued + st.debuginfod.in_flight, 2u);
  EXPECT_GE(st.debuginfod.queue_full, 3u);
  const auto give_up = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < give_up && (*sym)->stats().negative_entries < ids.size()) {
    (*sym)->ResolveBatch(frames);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ((*sym)->stats().negative_entries, ids.size());
  for (const std::string& id : ids) {
    EXPECT_EQ(server.requests(id, "debuginfo"), 1) << id;
  }
}

}  // namespace
}  // namespace flamestream::symbols
