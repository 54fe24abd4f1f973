#include "flamestream/pprofutil/profile_io.h"

#include <zlib.h>

#include <cerrno>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>

namespace flamestream::pprofutil {
namespace {

bool IsGzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f &&
         static_cast<unsigned char>(bytes[1]) == 0x8b;
}

}  // namespace

Result<std::string> Gunzip(std::string_view data) {
  if (data.size() > std::numeric_limits<uInt>::max()) {
    return InvalidArgument("gzip input too large ({} bytes)", data.size());
  }
  z_stream zs{};
  // 16 + MAX_WBITS: the gzip wrapper (RFC 1952).
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return InternalError("zlib inflateInit2 failed");
  std::unique_ptr<z_stream, int (*)(z_stream*)> end(&zs, inflateEnd);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buf[1 << 16];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      return DataLoss("corrupt gzip data ({})", zs.msg != nullptr ? zs.msg : "zlib error");
    }
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      return DataLoss("truncated gzip data");
    }
  }
  return out;
}

Result<std::string> Gzip(std::string_view data, int level) {
  if (data.size() > std::numeric_limits<uInt>::max()) {
    return InvalidArgument("gzip input too large ({} bytes)", data.size());
  }
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return InternalError("zlib deflateInit2 failed (level {})", level);
  }
  std::unique_ptr<z_stream, int (*)(z_stream*)> end(&zs, deflateEnd);
  // One call into a buffer deflateBound says is always enough (plus the gzip header).
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) return InternalError("gzip: deflate did not finish");
  out.resize(zs.total_out);
  return out;
}

Result<perftools::profiles::Profile> ParseProfile(std::string_view bytes) {
  std::string inflated;
  if (IsGzip(bytes)) {
    FS_ASSIGN_OR_RETURN(inflated, Gunzip(bytes));
    bytes = inflated;
  }
  perftools::profiles::Profile profile;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !profile.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return DataLoss("not a pprof profile (protobuf parse failed)");
  }
  return profile;
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return ErrnoError(errno, fmt::format("open {}", path));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    return ErrnoError(errno, fmt::format("read {}", path));
  }
  return ss.str();
}

Status WriteFile(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return ErrnoError(errno, fmt::format("create {}", path));
  }
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) {
    return ErrnoError(errno, fmt::format("write {}", path));
  }
  return OkStatus();
}

Result<perftools::profiles::Profile> ReadProfile(const std::string& path) {
  FS_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  Result<perftools::profiles::Profile> p = ParseProfile(bytes);
  if (!p.ok()) {
    return p.error().WithContext(path);
  }
  return p;
}

}  // namespace flamestream::pprofutil
