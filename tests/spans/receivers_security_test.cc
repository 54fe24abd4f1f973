// The OTLP receivers' transport security and auth against real clients (grpc++ stubs with
// SslCredentials, httplib::SSLClient): TLS, mutual TLS, bearer tokens, and config mistakes that
// name the key. A throwaway CA, a server certificate (SAN 127.0.0.1, localhost) and client
// certificates are made with the openssl CLI in a temp directory.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "flamestream/spans/counting_writer.h"
#include "flamestream/spans/receivers.h"
#include "flamestream/testing/certs.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"

namespace flamestream::spans {
namespace {

namespace fs = std::filesystem;
using opentelemetry::proto::collector::trace::v1::TraceService;

otlp::ExportTraceServiceRequest Request(int spans) {
  otlp::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  auto* a = rs->mutable_resource()->add_attributes();
  a->set_key("host.name");
  a->mutable_value()->set_string_value("node-1");
  auto* ss = rs->add_scope_spans();
  for (int i = 0; i < spans; ++i) {
    auto* s = ss->add_spans();
    s->set_trace_id(std::string(16, static_cast<char>(i + 1)));
    s->set_span_id(std::string(8, static_cast<char>(i + 1)));
    s->set_name("op");
    s->set_start_time_unix_nano(100);
    s->set_end_time_unix_nano(200);
  }
  return req;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

class ReceiverSecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("fs-otlp-tls-" + std::to_string(::getpid()));
    // other-ca signs a client (stranger.pem) the receivers must refuse.
    ok_ = flamestream::testing::TestCerts::Make(dir_).ok() &&
          std::system(
              ("printf 's3cret-token\\n' > '" + (dir_ / "token.txt").string() + "'").c_str()) == 0;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  void SetUp() override {
    ASSERT_TRUE(ok_) << "openssl could not make test certificates";
    router_ =
        std::make_unique<SpanRouter>(SpanRouterConfig{.default_cluster = "c1"}, sink_, metrics_);
  }

  static std::string Path(const std::string& name) { return (dir_ / name).string(); }

  ReceiverConfig Config() const {
    ReceiverConfig cfg;
    cfg.grpc_listen = "127.0.0.1:0";
    cfg.http_listen = "127.0.0.1:0";
    cfg.http_threads = 2;
    cfg.ack_timeout = std::chrono::seconds(2);
    return cfg;
  }
  ReceiverConfig TlsConfig(bool mutual) const {
    ReceiverConfig cfg = Config();
    cfg.tls = {.cert_file = Path("server.pem"),
               .key_file = Path("server.key"),
               .client_ca_file = mutual ? Path("ca.pem") : ""};
    return cfg;
  }

  void Start(const ReceiverConfig& cfg) {
    auto r = OtlpReceivers::Start(cfg, *router_, metrics_);
    ASSERT_TRUE(r.ok()) << r.error();
    receivers_ = std::move(*r);
  }

  // A TLS channel trusting the test CA, presenting `client` (cert, key) when given.
  std::shared_ptr<grpc::Channel> TlsChannel(const std::string& client_cert = "",
                                            const std::string& client_key = "") const {
    grpc::SslCredentialsOptions opts;
    opts.pem_root_certs = ReadFile(Path("ca.pem"));
    if (!client_cert.empty()) {
      opts.pem_cert_chain = ReadFile(Path(client_cert));
      opts.pem_private_key = ReadFile(Path(client_key));
    }
    return grpc::CreateChannel(fmt::format("127.0.0.1:{}", receivers_->grpc_port()),
                               grpc::SslCredentials(opts));
  }
  std::shared_ptr<grpc::Channel> PlainChannel() const {
    return grpc::CreateChannel(fmt::format("127.0.0.1:{}", receivers_->grpc_port()),
                               grpc::InsecureChannelCredentials());
  }

  static grpc::Status Export(const std::shared_ptr<grpc::Channel>& channel, int spans,
                             const std::string& authorization = "") {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    otlp::ExportTraceServiceResponse resp;
    return TraceService::NewStub(channel)->Export(&ctx, Request(spans), &resp);
  }

  std::unique_ptr<httplib::SSLClient> HttpsClient(bool with_cert) const {
    auto cli = with_cert
                   ? std::make_unique<httplib::SSLClient>("127.0.0.1", receivers_->http_port(),
                                                          Path("client.pem"), Path("client.key"))
                   : std::make_unique<httplib::SSLClient>("127.0.0.1", receivers_->http_port());
    cli->set_ca_cert_path(Path("ca.pem"));
    cli->enable_server_certificate_verification(true);
    cli->set_connection_timeout(std::chrono::seconds(2));
    cli->set_read_timeout(std::chrono::seconds(3));
    return cli;
  }

  uint64_t Requests(const std::string& transport, const std::string& code) {
    return metrics_
        .Counter("fs_otlp_requests_total", "", {{"transport", transport}, {"code", code}})
        .value();
  }

  static inline fs::path dir_;
  static inline bool ok_ = false;
  obs::Registry metrics_;
  testing::CountingSpanWriter sink_;
  std::unique_ptr<SpanRouter> router_;
  std::unique_ptr<OtlpReceivers> receivers_;
};

TEST_F(ReceiverSecurityTest, GrpcOverTlsDeliversSpansAndRefusesPlaintextClients) {
  Start(TlsConfig(/*mutual=*/false));
  grpc::Status st = Export(TlsChannel(), 3);
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  EXPECT_EQ(sink_.spans(), 3u);

  st = Export(PlainChannel(), 1);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  // A TLS client that does not trust the test CA (system roots) refuses the server.
  st = Export(grpc::CreateChannel(fmt::format("127.0.0.1:{}", receivers_->grpc_port()),
                                  grpc::SslCredentials({})),
              1);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_EQ(sink_.spans(), 3u);
}

TEST_F(ReceiverSecurityTest, GrpcMutualTlsRequiresAClientCertificateFromTheCa) {
  Start(TlsConfig(/*mutual=*/true));
  grpc::Status st = Export(TlsChannel(), 1);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << "no client certificate";
  st = Export(TlsChannel("stranger.pem", "client.key"), 1);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << "signed by another CA";
  EXPECT_EQ(sink_.spans(), 0u);

  st = Export(TlsChannel("client.pem", "client.key"), 2);
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  EXPECT_EQ(sink_.spans(), 2u);
}

TEST_F(ReceiverSecurityTest, HttpOverTlsWorksAndPlaintextFails) {
  Start(TlsConfig(/*mutual=*/false));
  const std::string body = Request(2).SerializeAsString();
  httplib::Result res = HttpsClient(false)->Post("/v1/traces", body, "application/x-protobuf");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(sink_.spans(), 2u);

  httplib::Client plain("127.0.0.1", receivers_->http_port());
  plain.set_read_timeout(std::chrono::seconds(3));
  res = plain.Post("/v1/traces", body, "application/x-protobuf");
  EXPECT_FALSE(res) << "plaintext request answered with " << res->status;
  EXPECT_EQ(sink_.spans(), 2u);
}

TEST_F(ReceiverSecurityTest, HttpMutualTlsRequiresAClientCertificate) {
  Start(TlsConfig(/*mutual=*/true));
  const std::string body = Request(1).SerializeAsString();
  httplib::Result res = HttpsClient(false)->Post("/v1/traces", body, "application/x-protobuf");
  EXPECT_FALSE(res) << "answered without a client certificate: " << res->status;
  EXPECT_EQ(sink_.spans(), 0u);

  res = HttpsClient(true)->Post("/v1/traces", body, "application/x-protobuf");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(sink_.spans(), 1u);
}

TEST_F(ReceiverSecurityTest, BearerTokenGuardsGrpc) {
  ReceiverConfig cfg = TlsConfig(/*mutual=*/false);
  cfg.bearer_token_file = Path("token.txt");
  Start(cfg);
  auto channel = TlsChannel();
  grpc::Status st = Export(channel, 1);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(st.error_message(),
            "bearer token required: send \"authorization: Bearer <token>\" "
            "(correlator.otlp.bearer_token_file)");
  for (const char* wrong : {"Bearer s3cret-toke", "Bearer s3cret-tokenX", "Basic s3cret-token",
                            "s3cret-token", "Bearer "}) {
    SCOPED_TRACE(wrong);
    st = Export(channel, 1, wrong);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(st.error_message(), "invalid bearer token");
  }
  EXPECT_EQ(sink_.spans(), 0u);
  EXPECT_EQ(Requests("grpc", "UNAUTHENTICATED"), 6u);

  st = Export(channel, 2, "Bearer s3cret-token");
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  EXPECT_EQ(sink_.spans(), 2u);
}

TEST_F(ReceiverSecurityTest, BearerTokenGuardsHttpWith401) {
  ReceiverConfig cfg = Config();
  cfg.bearer_token_file = Path("token.txt");
  Start(cfg);
  httplib::Client cli("127.0.0.1", receivers_->http_port());
  const std::string json = R"({"resourceSpans":[{"resource":{"attributes":[{"key":"host.name",
      "value":{"stringValue":"node-1"}}]},"scopeSpans":[{"spans":[{"traceId":
      "0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"op"}]}]}]})";

  httplib::Result res = cli.Post("/v1/traces", json, "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(res->get_header_value("WWW-Authenticate"), R"(Bearer realm="otlp")");
  auto j = nlohmann::json::parse(res->body);
  EXPECT_EQ(j["code"], 16);
  EXPECT_EQ(j["message"],
            "bearer token required: send \"authorization: Bearer <token>\" "
            "(correlator.otlp.bearer_token_file)");

  // Same connection (the refused body was read): a wrong token, protobuf.
  res = cli.Post("/v1/traces", {{"Authorization", "Bearer nope"}}, Request(1).SerializeAsString(),
                 "application/x-protobuf");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(res->get_header_value("WWW-Authenticate"),
            R"(Bearer realm="otlp", error="invalid_token")");
  EXPECT_EQ(res->body, EncodeRpcStatus(16, "invalid bearer token"));
  EXPECT_EQ(sink_.spans(), 0u);
  EXPECT_EQ(Requests("http", "401"), 2u);

  res =
      cli.Post("/v1/traces", {{"Authorization", "Bearer s3cret-token"}}, json, "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(sink_.spans(), 1u);
}

TEST_F(ReceiverSecurityTest, ConfigMistakesNameTheKey) {
  struct Case {
    std::string name;
    obs::ServerTlsFiles tls;
    std::string token_file;
    std::string message;
  };
  const std::string server = Path("server.pem");
  const std::string key = Path("server.key");
  const std::vector<Case> cases = {
      {"missing cert",
       {Path("nope.pem"), key, ""},
       "",
       "config key \"correlator.otlp.tls.cert_file\": cannot read " + Path("nope.pem") +
           ": No such file or directory"},
      {"missing key",
       {server, Path("nope.key"), ""},
       "",
       "config key \"correlator.otlp.tls.key_file\": cannot read " + Path("nope.key") +
           ": No such file or directory"},
      {"cert without key",
       {server, "", ""},
       "",
       "config key \"correlator.otlp.tls.key_file\": required when "
       "correlator.otlp.tls.cert_file is set"},
      {"client CA without cert",
       {"", "", Path("ca.pem")},
       "",
       "config key \"correlator.otlp.tls.cert_file\": required when "
       "correlator.otlp.tls.client_ca_file is set"},
      {"garbage cert",
       {Path("garbage.pem"), key, ""},
       "",
       "config key \"correlator.otlp.tls.cert_file\": " + Path("garbage.pem") +
           " holds no PEM certificate"},
      {"cert as key",
       {server, server, ""},
       "",
       "config key \"correlator.otlp.tls.key_file\": " + server +
           " holds no unencrypted PEM private key"},
      {"key of another cert",
       {server, Path("other.key"), ""},
       "",
       "config key \"correlator.otlp.tls.key_file\": " + Path("other.key") +
           " is not the private key of the certificate in " + server +
           " (correlator.otlp.tls.cert_file)"},
      {"garbage client CA",
       {server, key, Path("garbage.pem")},
       "",
       "config key \"correlator.otlp.tls.client_ca_file\": " + Path("garbage.pem") +
           " holds no PEM certificate"},
      {"missing token file",
       {},
       Path("nope.txt"),
       "config key \"correlator.otlp.bearer_token_file\": cannot read " + Path("nope.txt") +
           ": No such file or directory"},
      {"empty token file",
       {},
       Path("empty.txt"),
       "config key \"correlator.otlp.bearer_token_file\": " + Path("empty.txt") +
           " holds no token"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ReceiverConfig cfg = Config();
    cfg.tls = c.tls;
    cfg.bearer_token_file = c.token_file;
    auto r = OtlpReceivers::Start(cfg, *router_, metrics_);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.error().message().substr(0, c.message.size()), c.message) << r.error();
    EXPECT_EQ(cfg.LoadSecurity().status().message(), r.error().message());
  }
}

}  // namespace
}  // namespace flamestream::spans
