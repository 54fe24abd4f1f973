#include "flamestream/obs/server_security.h"

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "flamestream/common/strings.h"

namespace flamestream::obs {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// OpenSSL's most recent error as text (and the queue cleared), or "" if none.
std::string OpenSslError() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    out = buf;
  }
  return out;
}

Result<std::string> ReadWholeFile(const std::string& path, const std::string& key) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return InvalidArgument("config key \"{}\": cannot read {}: {}", key, path,
                           errno != 0 ? std::strerror(errno) : "cannot open");
  }
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    return InvalidArgument("config key \"{}\": cannot read {}: {}", key, path,
                           errno != 0 ? std::strerror(errno) : "read error");
  }
  return data;
}

BioPtr MemBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Every certificate in a PEM bundle (none if it holds none).
std::vector<X509Ptr> ReadCerts(const std::string& pem) {
  std::vector<X509Ptr> certs;
  BioPtr bio = MemBio(pem);
  while (bio != nullptr) {
    X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (x == nullptr) break;
    certs.push_back(std::move(x));
  }
  ERR_clear_error();  // the read past the last certificate
  return certs;
}

PkeyPtr ReadKey(const std::string& pem) {
  BioPtr bio = MemBio(pem);
  // A passphrase callback that gives none: an encrypted key fails instead of prompting.
  auto no_passphrase = [](char*, int, int, void*) { return 0; };
  return PkeyPtr(bio == nullptr
                     ? nullptr
                     : PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
}

bool ConfigureSslCtx(SSL_CTX& ctx, const ServerTls& tls) {
  SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION) != 1) return false;
  std::vector<X509Ptr> chain = ReadCerts(tls.cert_pem);
  PkeyPtr key = ReadKey(tls.key_pem);
  if (chain.empty() || key == nullptr) return false;
  if (SSL_CTX_use_certificate(&ctx, chain[0].get()) != 1) return false;
  for (size_t i = 1; i < chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(&ctx, chain[i].get()) != 1) return false;
  }
  if (SSL_CTX_use_PrivateKey(&ctx, key.get()) != 1 || SSL_CTX_check_private_key(&ctx) != 1) {
    return false;
  }
  if (!tls.client_ca_pem.empty()) {
    X509_STORE* store = SSL_CTX_get_cert_store(&ctx);
    for (const X509Ptr& ca : ReadCerts(tls.client_ca_pem)) {
      if (X509_STORE_add_cert(store, ca.get()) != 1) return false;
      if (SSL_CTX_add_client_CA(&ctx, ca.get()) != 1) return false;
    }
    SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return true;
}

}  // namespace

Result<std::optional<ServerTls>> LoadServerTls(const ServerTlsFiles& files,
                                               const std::string& key_prefix) {
  const std::string cert_key = key_prefix + ".cert_file";
  const std::string key_key = key_prefix + ".key_file";
  const std::string ca_key = key_prefix + ".client_ca_file";
  if (files.cert_file.empty() && files.key_file.empty() && files.client_ca_file.empty()) {
    return std::optional<ServerTls>();
  }
  if (files.cert_file.empty()) {
    return InvalidArgument("config key \"{}\": required when {} is set", cert_key,
                           files.key_file.empty() ? ca_key : key_key);
  }
  if (files.key_file.empty()) {
    return InvalidArgument("config key \"{}\": required when {} is set", key_key, cert_key);
  }
  ServerTls tls;
  FS_ASSIGN_OR_RETURN(tls.cert_pem, ReadWholeFile(files.cert_file, cert_key));
  FS_ASSIGN_OR_RETURN(tls.key_pem, ReadWholeFile(files.key_file, key_key));
  std::vector<X509Ptr> chain = ReadCerts(tls.cert_pem);
  if (chain.empty()) {
    return InvalidArgument("config key \"{}\": {} holds no PEM certificate", cert_key,
                           files.cert_file);
  }
  PkeyPtr key = ReadKey(tls.key_pem);
  if (key == nullptr) {
    const std::string why = OpenSslError();
    return InvalidArgument("config key \"{}\": {} holds no unencrypted PEM private key{}{}",
                           key_key, files.key_file, why.empty() ? "" : ": ", why);
  }
  if (X509_check_private_key(chain[0].get(), key.get()) != 1) {
    ERR_clear_error();
    return InvalidArgument(
        "config key \"{}\": {} is not the private key of the certificate in "
        "{} ({})",
        key_key, files.key_file, files.cert_file, cert_key);
  }
  if (!files.client_ca_file.empty()) {
    FS_ASSIGN_OR_RETURN(tls.client_ca_pem, ReadWholeFile(files.client_ca_file, ca_key));
    if (ReadCerts(tls.client_ca_pem).empty()) {
      return InvalidArgument("config key \"{}\": {} holds no PEM certificate", ca_key,
                             files.client_ca_file);
    }
  }
  return std::optional<ServerTls>(std::move(tls));
}

Result<std::unique_ptr<httplib::Server>> NewHttpServer(const std::optional<ServerTls>& tls) {
  if (!tls.has_value()) {
    return std::make_unique<httplib::Server>();
  }
  const ServerTls copy = *tls;
  auto srv = std::make_unique<httplib::SSLServer>(
      [&copy](SSL_CTX& ctx) { return ConfigureSslCtx(ctx, copy); });
  if (!srv->is_valid()) {
    const std::string why = OpenSslError();
    return InvalidArgument("cannot set up TLS with this certificate and key{}{}",
                           why.empty() ? "" : ": ", why);
  }
  return std::unique_ptr<httplib::Server>(std::move(srv));
}

Result<std::string> ReadTokenFile(const std::string& path, const std::string& key) {
  FS_ASSIGN_OR_RETURN(std::string token, ReadWholeFile(path, key));
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' ||
                            token.back() == '\t')) {
    token.pop_back();
  }
  if (token.empty()) {
    return InvalidArgument("config key \"{}\": {} holds no token", key, path);
  }
  if (token.find_first_of("\r\n") != std::string::npos) {
    return InvalidArgument("config key \"{}\": {} holds more than one line", key, path);
  }
  return token;
}

bool BearerMatches(std::string_view authorization, std::string_view token) {
  constexpr std::string_view kScheme = "bearer ";
  if (token.empty() || authorization.size() < kScheme.size() ||
      common::ToLower(authorization.substr(0, kScheme.size())) != kScheme) {
    return false;
  }
  const std::string_view got = authorization.substr(kScheme.size());
  // Constant time in the token's length: no early exit on the first differing byte.
  unsigned char diff = got.size() == token.size() ? 0 : 1;
  for (size_t i = 0; i < token.size(); ++i) {
    diff |= static_cast<unsigned char>(token[i] ^ (i < got.size() ? got[i] : 0));
  }
  return diff == 0;
}

}  // namespace flamestream::obs
