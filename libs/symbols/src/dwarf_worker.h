// The DWARF worker's side: LocalModule reads one debug file with LLVM in the calling process;
// RunDwarfWorker serves LocalModule lookups over a socket. Compiled only into the
// flamestream-dwarf-worker executable (which links LLVM statically, so it starts in a few ms)
// and into fs_symbols_dwarf (LlvmDwarfEngine); fs_symbols uses just the wire format below.
//
//   // in the worker process, with the Symbolizer's end of a socketpair on fd 3:
//   RunDwarfWorker(3);  // returns never; exits when the socket closes
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "flamestream/common/status.h"
#include "flamestream/symbols/dwarf_engine.h"
#include "flamestream/symbols/location.h"

namespace flamestream::symbols {

class LocalModule final : public DwarfFile {
 public:
  [[nodiscard]] static Result<std::unique_ptr<LocalModule>> Open(const std::string& path);
  ~LocalModule() override;
  LocalModule(const LocalModule&) = delete;
  LocalModule& operator=(const LocalModule&) = delete;
  // The inlining chain at a virtual address, exactly as `llvm-symbolizer --inlining` reports
  // it (one "??" frame when nothing is known).
  [[nodiscard]] Result<Location> Symbolize(uint64_t address) override;

 private:
  class Llvm;
  explicit LocalModule(std::string path);
  std::string path_;
  std::unique_ptr<Llvm> llvm_;
};

// Serves requests on `fd` until it closes, then exits the process.
[[noreturn]] void RunDwarfWorker(int fd);

namespace wire {
// --- Wire format between the Symbolizer and its worker: frames of [u32 length][payload]. ---
// Requests: u8 op, u64 handle, then kOpen: string path; kSymbolize: u32 n, u64 address * n;
// kClose: nothing (no reply). Replies: u8 ok, then an error string, or for kSymbolize u32 n and
// per address u8 ok + string (EncodeLocation or an error message).
enum Op : uint8_t { kOpen = 1, kSymbolize = 2, kClose = 3 };

inline void PutU32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
inline void PutU64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
inline void PutStr(std::string& out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U8(uint8_t* v) { return Raw(v, 1); }
  bool U32(uint32_t* v) { return Raw(v, 4); }
  bool U64(uint64_t* v) { return Raw(v, 8); }
  bool Str(std::string_view* s) {
    uint32_t n = 0;
    if (!U32(&n) || n > in_.size()) return false;
    *s = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }

 private:
  bool Raw(void* v, size_t n) {
    if (in_.size() < n) return false;
    std::memcpy(v, in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view in_;
};

inline std::string Frame(std::string payload) {
  std::string out;
  out.reserve(payload.size() + 4);
  PutU32(out, static_cast<uint32_t>(payload.size()));
  out += payload;
  return out;
}
}  // namespace wire
}  // namespace flamestream::symbols
