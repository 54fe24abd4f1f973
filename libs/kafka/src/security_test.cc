// Kafka TLS and SASL settings (kafka.* properties) build working clients with this
// librdkafka, and each mistake is an error naming the property. The dev broker (librdkafka's
// mock cluster) speaks neither TLS nor SASL, so a handshake against a real broker is covered by
// docker-compose / k8s, not here; see docs/deploy.md "Kafka TLS and SASL".
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "flamestream/kafka/client_info.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/producer.h"
#include "flamestream/testing/certs.h"

namespace flamestream::kafka {
namespace {

namespace fs = std::filesystem;

// A CA, a client certificate it signed, and an unrelated key, made with the openssl CLI.
class Certs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("fs-kafka-tls-" + std::to_string(::getpid()));
    ok_ = testing::TestCerts::Make(dir_).ok();
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  void SetUp() override { ASSERT_TRUE(ok_) << "openssl could not make test certificates"; }
  static std::string Path(const std::string& name) { return (dir_ / name).string(); }

  static Properties SaslSsl(const std::string& mechanism) {
    return {{"bootstrap.servers", "127.0.0.1:1"}, {"security.protocol", "sasl_ssl"},
            {"sasl.mechanisms", mechanism},       {"sasl.username", "flamestream"},
            {"sasl.password", "secret"},          {"ssl.ca.location", Path("ca.pem")}};
  }

  static Status BuildBoth(const Properties& props) {
    ProducerConfig p;
    p.properties = props;
    if (auto producer = Producer::Create(p); !producer.ok()) return producer.error();
    ConsumerConfig c;
    c.properties = props;
    c.group_id = "fs-security-test";
    c.topics = {"t"};
    if (auto consumer = Consumer::Create(c); !consumer.ok()) return consumer.error();
    return OkStatus();
  }

  static inline fs::path dir_;
  static inline bool ok_ = false;
};

TEST(KafkaClientInfo, ThisLibrdkafkaHasTlsAndEverySaslMechanism) {
  const std::vector<std::string> f = BuiltinFeatures();
  for (const char* want :
       {"ssl", "sasl_plain", "sasl_scram", "sasl_gssapi", "sasl_oauthbearer", "zstd"}) {
    EXPECT_NE(std::find(f.begin(), f.end(), want), f.end()) << want;
  }
  EXPECT_FALSE(LibrdkafkaVersion().empty());
}

TEST_F(Certs, SaslSslClientsBuildForEachMechanism) {
  for (const char* mechanism : {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}) {
    SCOPED_TRACE(mechanism);
    Status s = BuildBoth(SaslSsl(mechanism));
    EXPECT_TRUE(s.ok()) << s;
  }
}

TEST_F(Certs, MutualTlsClientCertificateLoads) {
  Properties props = {{"bootstrap.servers", "127.0.0.1:1"},
                      {"security.protocol", "ssl"},
                      {"ssl.ca.location", Path("ca.pem")},
                      {"ssl.certificate.location", Path("client.pem")},
                      {"ssl.key.location", Path("client.key")}};
  Status s = BuildBoth(props);
  EXPECT_TRUE(s.ok()) << s;
  // A key that does not belong to the certificate is refused when the client is built.
  props["ssl.key.location"] = Path("other.key");
  s = BuildBoth(props);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("ssl"), std::string::npos) << s;
}

TEST_F(Certs, MistakesAreErrorsNamingTheProperty) {
  struct Case {
    std::string key, value, named;
  } cases[] = {
      {"ssl.ca.location", "/nonexistent/ca.pem", "ssl.ca.location"},
      {"security.protocol", "tls", "security.protocol"},
      {"sasl.mechanisms", "KERBEROS-9", "SASL mechanism: KERBEROS-9"},
      {"sasl.username", "", "sasl.username"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key + "=" + c.value);
    Properties props = SaslSsl("SCRAM-SHA-512");
    if (c.value.empty()) {
      props.erase(c.key);
    } else {
      props[c.key] = c.value;
    }
    Status s = BuildBoth(props);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(c.named), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace flamestream::kafka
