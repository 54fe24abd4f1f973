// Reading and writing pprof files (perftools.profiles.Profile), gzip-compressed or plain.
//
//   FS_ASSIGN_OR_RETURN(perftools::profiles::Profile p, pprofutil::ReadProfile("cpu.pb.gz"));
//   FS_ASSIGN_OR_RETURN(std::string gz, pprofutil::Gzip(p.SerializeAsString()));
//   FS_RETURN_IF_ERROR(pprofutil::WriteFile("copy.pb.gz", gz));
#pragma once

#include <string>
#include <string_view>

#include "flamestream/common/status.h"
#include "pprof/profile.pb.h"

namespace flamestream::pprofutil {

// Parses a serialized profile; gzip input (magic 1f 8b) is inflated first, as pprof does.
Result<perftools::profiles::Profile> ParseProfile(std::string_view bytes);
// Reads and parses `path`; errors name the file.
Result<perftools::profiles::Profile> ReadProfile(const std::string& path);

// gzip (RFC 1952) for pprof files and HTTP bodies; `level` is zlib's (1 fastest .. 9 smallest).
Result<std::string> Gzip(std::string_view data, int level = 6);
Result<std::string> Gunzip(std::string_view data);

Result<std::string> ReadFile(const std::string& path);
Status WriteFile(const std::string& path, std::string_view data);

}  // namespace flamestream::pprofutil
