#include "flamestream/testing/certs.h"

#include <cstdlib>
#include <system_error>

namespace flamestream::testing {

Result<TestCerts> TestCerts::Make(const std::filesystem::path& dir) {
  std::error_code ec_dir;
  std::filesystem::create_directories(dir, ec_dir);
  if (ec_dir)
    return InternalError("test certs: cannot create {}: {}", dir.string(), ec_dir.message());
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string ca_ext =
      "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign";
  const std::string script =
      "set -e; cd '" + dir.string() + "'; " +
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' "
      "  > server.ext; "
      "printf 'extendedKeyUsage=clientAuth\\n' > client.ext; " +
      "openssl req -x509 " + ec + " -days 2 -subj /CN=fs-test-ca " + ca_ext +
      "  -keyout ca.key -out ca.pem; " + "openssl req -x509 " + ec +
      " -days 2 -subj /CN=fs-other-ca " + ca_ext + "  -keyout other-ca.key -out other-ca.pem; " +
      "openssl req " + ec + " -subj /CN=localhost -keyout server.key -out server.csr; " +
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "  -extfile server.ext -out server.pem; " +
      "openssl req " + ec + " -subj /CN=fs-client -keyout client.key -out client.csr; " +
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "  -extfile client.ext -out client.pem; " +
      "openssl x509 -req -in client.csr -CA other-ca.pem -CAkey other-ca.key "
      "  -CAcreateserial -days 2 -extfile client.ext -out stranger.pem; " +
      "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out other.key; " +
      "echo 'not a certificate' > garbage.pem; : > empty.txt";
  if (std::system(("(" + script + ") >/dev/null 2>&1").c_str()) != 0) {
    return InternalError("test certs: the openssl CLI failed in {} (is openssl installed?)",
                         dir.string());
  }
  return TestCerts(dir);
}

}  // namespace flamestream::testing
