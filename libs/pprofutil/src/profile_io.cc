#include "flamestream/pprofutil/profile_io.h"

#include <zlib.h>

#include <cerrno>
#include <fstream>
#include <limits>
#include <sstream>

namespace flamestream::pprofutil {
namespace {

bool IsGzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f &&
         static_cast<unsigned char>(bytes[1]) == 0x8b;
}

// Owns a z_stream for inflate or deflate; ends it on destruction.
class ZStream {
 public:
  explicit ZStream(bool inflate) : inflate_(inflate) {}
  ~ZStream() {
    if (initialized_) {
      inflate_ ? inflateEnd(&z_) : deflateEnd(&z_);
    }
  }
  ZStream(const ZStream&) = delete;
  ZStream& operator=(const ZStream&) = delete;

  Status Init() {
    // 16 + MAX_WBITS selects the gzip wrapper in both directions.
    const int rc = inflate_ ? inflateInit2(&z_, 16 + MAX_WBITS)
                            : deflateInit2(&z_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS,
                                           8, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) {
      return InternalError("zlib init failed: {}", rc);
    }
    initialized_ = true;
    return OkStatus();
  }
  z_stream* get() { return &z_; }

 private:
  bool inflate_;
  bool initialized_ = false;
  z_stream z_{};
};

}  // namespace

Result<std::string> Gunzip(std::string_view data) {
  if (data.size() > std::numeric_limits<uInt>::max()) {
    return InvalidArgument("gzip input too large ({} bytes)", data.size());
  }
  ZStream zs(/*inflate=*/true);
  FS_RETURN_IF_ERROR(zs.Init());
  z_stream* z = zs.get();
  z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z->avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buf[1 << 16];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    z->next_out = reinterpret_cast<Bytef*>(buf);
    z->avail_out = sizeof(buf);
    rc = inflate(z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      return DataLoss("corrupt gzip data (zlib error {})", rc);
    }
    out.append(buf, sizeof(buf) - z->avail_out);
    if (rc == Z_OK && z->avail_in == 0 && z->avail_out != 0) {
      return DataLoss("truncated gzip data");
    }
  }
  return out;
}

Result<std::string> Gzip(std::string_view data) {
  if (data.size() > std::numeric_limits<uInt>::max()) {
    return InvalidArgument("gzip input too large ({} bytes)", data.size());
  }
  ZStream zs(/*inflate=*/false);
  FS_RETURN_IF_ERROR(zs.Init());
  z_stream* z = zs.get();
  z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z->avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buf[1 << 16];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    z->next_out = reinterpret_cast<Bytef*>(buf);
    z->avail_out = sizeof(buf);
    rc = deflate(z, Z_FINISH);
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      return InternalError("gzip failed (zlib error {})", rc);
    }
    out.append(buf, sizeof(buf) - z->avail_out);
  }
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
