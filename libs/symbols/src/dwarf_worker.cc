#include "dwarf_worker.h"

#include <absl/container/flat_hash_map.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include <llvm/DebugInfo/DIContext.h>
#include <llvm/DebugInfo/Symbolize/Symbolize.h>
#include <llvm/Object/Binary.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Support/Error.h>

namespace flamestream::symbols {

// A debug file read by LLVM in the calling process.
class LocalModule::Llvm {
 public:
  static llvm::symbolize::LLVMSymbolizer::Options MakeOptions() {
    llvm::symbolize::LLVMSymbolizer::Options opts;
    opts.PrintFunctions = llvm::symbolize::FunctionNameKind::LinkageName;
    opts.PathStyle = llvm::symbolize::FileLineInfoKind::AbsoluteFilePath;
    opts.UseSymbolTable = true;
    // We demangle ourselves so the mangled (system) name is kept too.
    opts.Demangle = false;
    return opts;
  }

  // Many addresses share a function (and inlined callees): demangle each name once.
  const std::string& Demangle(const std::string& name) {
    auto [it, inserted] = demangled.try_emplace(name);
    if (inserted) {
      it->second = llvm::symbolize::LLVMSymbolizer::DemangleName(name, nullptr);
    }
    return it->second;
  }

  llvm::object::OwningBinary<llvm::object::Binary> binary;
  const llvm::object::ObjectFile* object = nullptr;
  // One LLVMSymbolizer per file: destroying it (on eviction) releases the parsed DWARF, and
  // LLVM 14's symbolizer has no per-module eviction of its own.
  llvm::symbolize::LLVMSymbolizer symbolizer{MakeOptions()};
  absl::flat_hash_map<std::string, std::string> demangled;
};

LocalModule::LocalModule(std::string path) : path_(std::move(path)), llvm_(std::make_unique<Llvm>()) {}
LocalModule::~LocalModule() = default;

Result<std::unique_ptr<LocalModule>> LocalModule::Open(const std::string& path) {
    auto m = std::unique_ptr<LocalModule>(new LocalModule(path));
    auto binary = llvm::object::createBinary(path);
    if (!binary) {
      return DataLoss("{}: {}", path, llvm::toString(binary.takeError()));
    }
    m->llvm_->binary = std::move(*binary);
    m->llvm_->object = llvm::dyn_cast<llvm::object::ObjectFile>(m->llvm_->binary.getBinary());
    if (m->llvm_->object == nullptr) {
      return InvalidArgument("{} is not an object file", path);
    }
    return m;
}

Result<Location> LocalModule::Symbolize(uint64_t address) {
    auto info = llvm_->symbolizer.symbolizeInlinedCode(
        *llvm_->object, {address, llvm::object::SectionedAddress::UndefSection});
    if (!info) {
      return DataLoss("{}: {}", path_, llvm::toString(info.takeError()));
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
        frame.function = llvm_->Demangle(f.FunctionName);
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

namespace {

using namespace wire;

// Blocking I/O for the worker side (it has nothing else to do).
bool WriteAllBlocking(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool ReadExactBlocking(int fd, char* buf, size_t n) {
  while (n > 0) {
    ssize_t r = ::read(fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// The worker's main loop: runs in the forked child until the parent closes the socket.
}  // namespace

[[noreturn]] void RunDwarfWorker(int fd) {
  absl::flat_hash_map<uint64_t, std::unique_ptr<LocalModule>> modules;
  std::string payload;
  for (;;) {
    uint32_t len = 0;
    if (!ReadExactBlocking(fd, reinterpret_cast<char*>(&len), 4)) ::_exit(0);
    payload.resize(len);
    if (!ReadExactBlocking(fd, payload.data(), len)) ::_exit(0);
    Reader in(payload);
    uint8_t op = 0;
    uint64_t handle = 0;
    if (!in.U8(&op) || !in.U64(&handle)) ::_exit(3);
    // The reply is built behind room for its length, so it is written without another copy.
    std::string reply(4, '\0');
    if (op == kOpen) {
      std::string_view path;
      if (!in.Str(&path)) ::_exit(3);
      auto m = LocalModule::Open(std::string(path));
      if (m.ok()) {
        modules[handle] = std::move(m).value();
        reply.push_back(1);
      } else {
        reply.push_back(0);
        PutStr(reply, m.error().message());
      }
    } else if (op == kSymbolize) {
      uint32_t n = 0;
      if (!in.U32(&n)) ::_exit(3);
      auto it = modules.find(handle);
      if (it == modules.end()) {
        reply.push_back(0);
        PutStr(reply, "file not open in the DWARF worker");
      } else {
        reply.reserve(reply.size() + 5 + size_t{n} * 160);
        reply.push_back(1);
        PutU32(reply, n);
        for (uint32_t i = 0; i < n; ++i) {
          uint64_t address = 0;
          if (!in.U64(&address)) ::_exit(3);
          auto loc = it->second->Symbolize(address);
          reply.push_back(loc.ok() ? 1 : 0);
          PutStr(reply, loc.ok() ? EncodeLocation(*loc) : loc.error().message());
        }
      }
    } else if (op == kClose) {
      modules.erase(handle);
      continue;
    } else {
      ::_exit(3);
    }
    const auto reply_len = static_cast<uint32_t>(reply.size() - 4);
    std::memcpy(reply.data(), &reply_len, 4);
    if (!WriteAllBlocking(fd, reply)) ::_exit(0);
  }
}

}  // namespace flamestream::symbols
