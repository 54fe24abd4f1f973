#include "llvm_module.h"

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <llvm/DebugInfo/DIContext.h>
#include <llvm/DebugInfo/DWARF/DWARFContext.h>
#include <llvm/DebugInfo/DWARF/DWARFUnit.h>
#include <llvm/DebugInfo/Symbolize/Symbolize.h>
#include <llvm/Object/Binary.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Support/Error.h>

#include <utility>

namespace flamestream::symbols {

class LlvmModule::Llvm {
 public:
  llvm::object::OwningBinary<llvm::object::Binary> binary;
  const llvm::object::ObjectFile* object = nullptr;
  // One LLVMSymbolizer per file: destroying it (on eviction) releases the parsed DWARF, and
  // LLVM 14's symbolizer has no per-module eviction of its own.
  llvm::symbolize::LLVMSymbolizer symbolizer{MakeOptions()};

  static llvm::symbolize::LLVMSymbolizer::Options MakeOptions() {
    llvm::symbolize::LLVMSymbolizer::Options opts;
    opts.PrintFunctions = llvm::symbolize::FunctionNameKind::LinkageName;
    opts.PathStyle = llvm::symbolize::FileLineInfoKind::AbsoluteFilePath;
    opts.UseSymbolTable = true;
    // We demangle ourselves so the mangled (system) name is kept too.
    opts.Demangle = false;
    return opts;
  }
};

namespace {

// Touches every compile unit the way a lookup does: its DIE tree, its line table and the
// inlined-chain search at each of its address ranges and at every function symbol (lookups
// reach units through .debug_aranges even when a unit's own DIE is unreadable).
void ProbeDwarf(const llvm::object::ObjectFile& object) {
  auto quiet = [](llvm::Error e) { llvm::consumeError(std::move(e)); };
  std::unique_ptr<llvm::DWARFContext> ctx = llvm::DWARFContext::create(
      object, llvm::DWARFContext::ProcessDebugRelocations::Process, nullptr, "", quiet, quiet);
  llvm::DILineInfoSpecifier spec(
      llvm::DILineInfoSpecifier::FileLineInfoKind::AbsoluteFilePath,
      llvm::DILineInfoSpecifier::FunctionNameKind::LinkageName);
  for (const auto& unit : ctx->compile_units()) {
    unit->getUnitDIE(false);
    auto ranges = unit->collectAddressRanges();
    if (!ranges) {
      llvm::consumeError(ranges.takeError());
      continue;
    }
    ctx->getLineTableForUnit(unit.get());
    for (const llvm::DWARFAddressRange& r : *ranges) {
      for (uint64_t a : {r.LowPC, r.LowPC + (r.HighPC - r.LowPC) / 2}) {
        ctx->getInliningInfoForAddress({a, r.SectionIndex}, spec);
      }
    }
  }
  for (const llvm::object::SymbolRef& sym : object.symbols()) {
    auto type = sym.getType();
    auto address = sym.getAddress();
    if (!type || !address) {
      llvm::consumeError(type.takeError());
      llvm::consumeError(address.takeError());
      continue;
    }
    if (*type == llvm::object::SymbolRef::ST_Function) {
      ctx->getInliningInfoForAddress({*address, llvm::object::SectionedAddress::UndefSection},
                                     spec);
    }
  }
}

// LLVM 14's DWARF reader trusts parts of its input (a corrupt .debug_abbrev can make it read
// through a bad DIE and crash), so before the process relies on a debug file, a forked child
// walks it first. A crash or hang there turns into an error for this build id instead of taking
// the symbolizer down. Costs one fork and one pass over the units per file opened.
Status ProbeInChild(const llvm::object::ObjectFile& object, const std::string& path) {
  pid_t pid = ::fork();
  if (pid < 0) {
    return ErrnoError(errno, "fork DWARF probe");
  }
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      ::dup2(devnull, STDERR_FILENO);
    }
    ProbeDwarf(object);
    ::_exit(0);
  }
  constexpr int kTimeoutSeconds = 60;
  int status = 0;
  // Wait on a pidfd so the parent wakes the moment the child exits.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  bool exited = false;
  if (pidfd >= 0) {
    struct pollfd pfd = {pidfd, POLLIN, 0};
    int r = 0;
    do {
      r = ::poll(&pfd, 1, kTimeoutSeconds * 1000);
    } while (r < 0 && errno == EINTR);
    ::close(pidfd);
    exited = r > 0;
  } else {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kTimeoutSeconds);
    while (!exited && std::chrono::steady_clock::now() < deadline) {
      exited = ::waitpid(pid, &status, WNOHANG) == pid;
      if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (exited) pidfd = -2;  // already reaped
  }
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return DataLoss("{}: DWARF probe did not finish in {}s", path, kTimeoutSeconds);
  }
  if (pidfd != -2) {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (WIFSIGNALED(status)) {
    return DataLoss("{}: corrupt DWARF (the parser died with signal {})", path, WTERMSIG(status));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return DataLoss("{}: corrupt DWARF (probe exit status {})", path, status);
  }
  return OkStatus();
}

}  // namespace

LlvmModule::LlvmModule(DebugFiles files, std::unique_ptr<Llvm> llvm)
    : files_(std::move(files)), llvm_(std::move(llvm)) {}

LlvmModule::~LlvmModule() = default;

Result<std::unique_ptr<LlvmModule>> LlvmModule::Open(DebugFiles files, bool probe) {
  auto llvm = std::make_unique<Llvm>();
  const std::string& path = files.debug.path;
  auto binary = llvm::object::createBinary(path);
  if (!binary) {
    return DataLoss("{}: {}", path, llvm::toString(binary.takeError()));
  }
  llvm->binary = std::move(*binary);
  llvm->object = llvm::dyn_cast<llvm::object::ObjectFile>(llvm->binary.getBinary());
  if (llvm->object == nullptr) {
    return InvalidArgument("{} is not an object file", path);
  }
  if (probe && files.debug.has_dwarf) {
    FS_RETURN_IF_ERROR(ProbeInChild(*llvm->object, path));
  }
  return std::unique_ptr<LlvmModule>(new LlvmModule(std::move(files), std::move(llvm)));
}

Result<Location> LlvmModule::Symbolize(uint64_t address) {
  auto info = llvm_->symbolizer.symbolizeInlinedCode(
      *llvm_->object, {address, llvm::object::SectionedAddress::UndefSection});
  if (!info) {
    return DataLoss("{}: {}", files_.debug.path, llvm::toString(info.takeError()));
  }
  Location loc;
  uint32_t n = info->getNumberOfFrames();
  loc.frames.reserve(n == 0 ? 1 : n);
  for (uint32_t i = 0; i < n; ++i) {
    const llvm::DILineInfo& f = info->getFrame(i);
    SourceFrame frame;
    if (f.FunctionName == llvm::DILineInfo::BadString) {
      frame.function = kUnknown;
      frame.system_name = kUnknown;
    } else {
      // Printed verbatim even when empty (llvm-symbolizer does), but only a name resolves.
      frame.system_name = f.FunctionName;
      frame.function = llvm::symbolize::LLVMSymbolizer::DemangleName(f.FunctionName, nullptr);
      loc.resolved = loc.resolved || !frame.function.empty();
    }
    frame.file = f.FileName == llvm::DILineInfo::BadString ? kUnknown : f.FileName;
    frame.line = f.Line;
    frame.column = f.Column;
    loc.frames.push_back(std::move(frame));
  }
  if (loc.frames.empty()) {
    loc.frames.push_back({kUnknown, kUnknown, kUnknown, 0, 0});
  }
  return loc;
}

}  // namespace flamestream::symbols
