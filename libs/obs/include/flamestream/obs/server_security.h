// Transport security and bearer tokens for the servers we run (OTLP receivers, admin listener):
// certificates and tokens are read from files named by config keys, and every mistake is an
// InvalidArgument naming the key.
//
//   obs::ServerTlsFiles files{.cert_file = ..., .key_file = ..., .client_ca_file = ...};
//   FS_ASSIGN_OR_RETURN(std::optional<obs::ServerTls> tls,
//                       obs::LoadServerTls(files, "correlator.otlp.tls"));
//   std::unique_ptr<httplib::Server> srv = obs::NewHttpServer(tls);   // SSLServer when set
//   FS_ASSIGN_OR_RETURN(std::string token, obs::ReadTokenFile(path, "x.bearer_token_file"));
//   if (!obs::BearerMatches(req.get_header_value("Authorization"), token)) ... 401
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "flamestream/common/status.h"

namespace httplib {
class Server;
}

namespace flamestream::obs {

// Paths from config; all empty = plaintext.
struct ServerTlsFiles {
  std::string cert_file;       // PEM certificate (chain: leaf first)
  std::string key_file;        // PEM private key of that certificate (unencrypted)
  std::string client_ca_file;  // PEM CA bundle; set = mutual TLS, clients must present a cert
};

// The PEM contents, checked: the certificate parses, the key parses and belongs to it, the CA
// bundle holds at least one certificate.
struct ServerTls {
  std::string cert_pem;
  std::string key_pem;
  std::string client_ca_pem;  // empty: no client certificate requested
};

// nullopt when no file is set. `key_prefix` names the keys in errors ("<prefix>.cert_file").
Result<std::optional<ServerTls>> LoadServerTls(const ServerTlsFiles& files,
                                               const std::string& key_prefix);

// An httplib::Server, or an httplib::SSLServer (TLS 1.2+, client certificates required and
// verified against client_ca_pem when set) when `tls` is set.
Result<std::unique_ptr<httplib::Server>> NewHttpServer(const std::optional<ServerTls>& tls);

// The token in `path` (trailing whitespace and newlines cut); an error naming `key` when the
// file cannot be read or holds no token.
Result<std::string> ReadTokenFile(const std::string& path, const std::string& key);

// Whether an Authorization header value is "Bearer <token>", in time independent of where
// they differ (the scheme is matched case-insensitively, RFC 7235).
bool BearerMatches(std::string_view authorization, std::string_view token);

}  // namespace flamestream::obs
