// The admin listener over TLS (admin.tls.*): HTTPS with the certificate, plaintext refused,
// and mistakes in the files are errors naming the key. A self-signed certificate (SAN
// 127.0.0.1) is made with the openssl CLI.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "flamestream/obs/admin_server.h"
#include "flamestream/obs/server_security.h"
#include "flamestream/testing/certs.h"

namespace flamestream::obs {
namespace {

namespace fs = std::filesystem;

class AdminTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("fs-admin-tls-" + std::to_string(::getpid()));
    ok_ = testing::TestCerts::Make(dir_).ok();
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  void SetUp() override { ASSERT_TRUE(ok_) << "openssl could not make a test certificate"; }
  static std::string Path(const std::string& name) { return (dir_ / name).string(); }

  static inline fs::path dir_;
  static inline bool ok_ = false;
};

TEST_F(AdminTlsTest, ServesHttpsOnlyWithTheCertificate) {
  auto tls =
      LoadServerTls({.cert_file = Path("server.pem"), .key_file = Path("server.key")}, "admin.tls");
  ASSERT_TRUE(tls.ok()) << tls.error();
  ASSERT_TRUE(tls->has_value());
  Registry r;
  r.Counter("fs_up_total", "up").Inc();
  auto admin = AdminServer::Start("127.0.0.1:0", r, {.bearer_token = "s3cret", .tls = *tls});
  ASSERT_TRUE(admin.ok()) << admin.error();

  httplib::SSLClient https("127.0.0.1", (*admin)->port());
  https.set_ca_cert_path(Path("ca.pem"));
  https.enable_server_certificate_verification(true);
  auto m = https.Get("/metrics", {{"Authorization", "Bearer s3cret"}});
  ASSERT_TRUE(m) << httplib::to_string(m.error());
  EXPECT_EQ(m->status, 200);
  EXPECT_NE(m->body.find("fs_up_total 1"), std::string::npos);
  auto h = https.Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);

  httplib::Client plain("127.0.0.1", (*admin)->port());
  plain.set_read_timeout(std::chrono::seconds(3));
  auto p = plain.Get("/healthz");
  EXPECT_FALSE(p) << "plaintext answered " << p->status;
}

TEST_F(AdminTlsTest, MistakesNameTheKey) {
  auto r = LoadServerTls({.cert_file = Path("server.pem")}, "admin.tls");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(),
            "config key \"admin.tls.key_file\": required when admin.tls.cert_file is set");
  r = LoadServerTls({.cert_file = Path("server.key"), .key_file = Path("server.key")}, "admin.tls");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(), "config key \"admin.tls.cert_file\": " + Path("server.key") +
                                     " holds no PEM certificate");
  auto t = ReadTokenFile(Path("absent"), "admin.bearer_token_file");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().message(), "config key \"admin.bearer_token_file\": cannot read " +
                                     Path("absent") + ": No such file or directory");
}

TEST(BearerMatches, ComparesSchemeCaseInsensitivelyAndTokenExactly) {
  EXPECT_TRUE(BearerMatches("Bearer abc", "abc"));
  EXPECT_TRUE(BearerMatches("bearer abc", "abc"));
  for (const char* wrong :
       {"Bearer ab", "Bearer abcd", "Bearer abC", "Basic abc", "abc", "", "Bearer "}) {
    EXPECT_FALSE(BearerMatches(wrong, "abc")) << wrong;
  }
  EXPECT_FALSE(BearerMatches("Bearer ", "")) << "an empty token never matches";
}

}  // namespace
}  // namespace flamestream::obs
