#include "test_util.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include <gtest/gtest.h>

#include "flamestream/bpf/capabilities.h"

namespace flamestream::testing_agent {

std::string BinPath(const std::string& name) {
  const char* dir = std::getenv("FS_BIN_DIR");
  return std::string(dir ? dir : "bin") + "/" + name;
}

bool Privileged() {
  // The repo's rule: skip only when not root and not in CI. Root without the capabilities
  // (a restricted container) runs and fails, naming what is missing.
  const char* ci = std::getenv("CI");
  return geteuid() == 0 || bpf::CheckSamplerCapabilities().ok() ||
         (ci != nullptr && std::string(ci) == "true");
}

namespace {
pid_t ForkExec(const std::vector<std::string>& argv, int* out_read_fd) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  *out_read_fd = fds[0];
  return pid;
}
}  // namespace

Child Child::Spawn(const std::vector<std::string>& argv) {
  Child c;
  c.pid_ = ForkExec(argv, &c.out_fd_);
  std::string got;
  pollfd p{.fd = c.out_fd_, .events = POLLIN, .revents = 0};
  while (got.find("ready\n") == std::string::npos && poll(&p, 1, 10000) > 0) {
    char buf[256];
    const ssize_t n = read(c.out_fd_, buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_NE(got.find("ready"), std::string::npos) << argv[0] << " did not start";
  return c;
}

Child::Child(Child&& o) noexcept : pid_(o.pid_), out_fd_(o.out_fd_) {
  o.pid_ = -1;
  o.out_fd_ = -1;
}

Child::~Child() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
}

std::string RunToCompletion(const std::vector<std::string>& argv, int* exit_status) {
  int fd = -1;
  const pid_t pid = ForkExec(argv, &fd);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  int status = 0;
  waitpid(pid, &status, 0);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (exit_status != nullptr) {
    *exit_status = code;
  } else {
    EXPECT_EQ(code, 0) << argv[0] << " failed";
  }
  return out;
}

std::string RunWatchingStderr(const std::vector<std::string>& argv,
                              const std::function<void(const std::string&)>& on_stderr_line) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return "";
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  std::string stdout_text, stderr_buf;
  pollfd fds[2] = {{.fd = out[0], .events = POLLIN, .revents = 0},
                   {.fd = err[0], .events = POLLIN, .revents = 0}};
  int open_fds = 2;
  while (open_fds > 0 && poll(fds, 2, 60000) > 0) {
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[65536];
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      if (i == 0) {
        stdout_text.append(buf, static_cast<size_t>(n));
        continue;
      }
      stderr_buf.append(buf, static_cast<size_t>(n));
      for (size_t nl; (nl = stderr_buf.find('\n')) != std::string::npos;) {
        on_stderr_line(stderr_buf.substr(0, nl));
        stderr_buf.erase(0, nl + 1);
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << argv[0] << " failed";
  return stdout_text;
}

FunctionRanges FunctionRanges::Load(const std::string& path) {
  FunctionRanges r;
  elf_version(EV_CURRENT);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return r;
  Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
  std::vector<GElf_Phdr> loads;
  size_t phnum = 0;
  elf_getphdrnum(elf, &phnum);
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph;
    if (gelf_getphdr(elf, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD) loads.push_back(ph);
  }
  auto to_offset = [&](uint64_t vaddr) -> std::optional<uint64_t> {
    for (const GElf_Phdr& ph : loads) {
      if (vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_filesz) {
        return vaddr - ph.p_vaddr + ph.p_offset;
      }
    }
    return std::nullopt;
  };
  Elf_Scn* scn = nullptr;
  while ((scn = elf_nextscn(elf, scn)) != nullptr) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_SYMTAB) continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    const size_t count = sh.sh_size / sh.sh_entsize;
    for (size_t i = 0; i < count; ++i) {
      GElf_Sym sym;
      if (!gelf_getsym(data, static_cast<int>(i), &sym)) continue;
      if (GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_size == 0) continue;
      std::optional<uint64_t> off = to_offset(sym.st_value);
      if (!off) continue;
      r.fns_.push_back({elf_strptr(elf, sh.sh_link, sym.st_name), *off, *off + sym.st_size});
    }
  }
  elf_end(elf);
  close(fd);
  return r;
}

std::optional<std::string> FunctionRanges::At(uint64_t file_offset) const {
  for (const Fn& f : fns_) {
    if (file_offset >= f.start && file_offset <= f.end) return f.name;
  }
  return std::nullopt;
}

std::vector<FoldedLine> ParseFolded(const std::string& text) {
  std::vector<FoldedLine> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    FoldedLine f;
    f.count = std::strtoull(line.c_str() + sp + 1, nullptr, 10);
    std::string stack = line.substr(0, sp);
    size_t s = 0;
    while (true) {
      const size_t semi = stack.find(';', s);
      f.frames.push_back(stack.substr(s, semi == std::string::npos ? std::string::npos : semi - s));
      if (semi == std::string::npos) break;
      s = semi + 1;
    }
    lines.push_back(std::move(f));
  }
  return lines;
}

double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  uint64_t utime = 0, stime = 0;
  for (int i = 0; fields >> f; ++i) {  // i = 0 is field 3 (state)
    if (i == 11) utime = std::stoull(f);
    if (i == 12) {
      stime = std::stoull(f);
      break;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::optional<std::pair<std::string, uint64_t>> SplitFrame(const std::string& frame) {
  const size_t at = frame.rfind("+0x");
  if (at == std::string::npos) return std::nullopt;
  return std::make_pair(frame.substr(0, at), std::strtoull(frame.c_str() + at + 3, nullptr, 16));
}

std::map<uint32_t, double> ThreadCpuSeconds(pid_t pid) {
  std::map<uint32_t, double> out;
  std::error_code ec;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(dir, ec)) {
    std::ifstream in(task.path() / "schedstat");
    uint64_t run_ns = 0;
    if (!(in >> run_ns)) continue;  // exited meanwhile
    out[static_cast<uint32_t>(std::stoul(task.path().filename().string()))] =
        static_cast<double>(run_ns) / 1e9;
  }
  return out;
}

double TaskCpuSeconds(pid_t pid) {
  double sum = 0;
  for (const auto& [tid, s] : ThreadCpuSeconds(pid)) sum += s;
  return sum;
}

std::map<uint32_t, double> CpuBetween(const std::map<uint32_t, double>& start,
                                      const std::map<uint32_t, double>& end) {
  std::map<uint32_t, double> out;
  for (const auto& [tid, s] : end) {
    auto it = start.find(tid);
    out[tid] = s - (it == start.end() ? 0.0 : it->second);
  }
  return out;
}

std::string ThreadName(pid_t pid, uint32_t tid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

}  // namespace flamestream::testing_agent
