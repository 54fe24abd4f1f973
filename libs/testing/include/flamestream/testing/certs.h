// Throwaway certificates for TLS tests, made with the openssl CLI (EC P-256: milliseconds).
//
//   Result<testing::TestCerts> certs = testing::TestCerts::Make(dir);
//   cfg.tls = {.cert_file = certs->Path("server.pem"), .key_file = certs->Path("server.key"),
//              .client_ca_file = certs->Path("ca.pem")};
//
// Files in `dir`:
//   ca.pem, ca.key              the test CA
//   server.pem, server.key      signed by it; SAN 127.0.0.1 and localhost, serverAuth
//   client.pem, client.key      signed by it; clientAuth
//   other-ca.pem, other-ca.key  an unrelated CA
//   stranger.pem                client.key's certificate signed by other-ca (must be refused)
//   other.key                   a key that matches no certificate
//   garbage.pem, empty.txt      not a certificate; an empty file
#pragma once

#include <filesystem>
#include <string>

#include "flamestream/common/status.h"

namespace flamestream::testing {

class TestCerts {
 public:
  // Creates `dir` and the files above; an error names what failed (openssl missing, ...).
  static Result<TestCerts> Make(const std::filesystem::path& dir);
  [[nodiscard]] std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }

 private:
  explicit TestCerts(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path dir_;
};

}  // namespace flamestream::testing
