// TLS for the remote sinks against real TLS servers (cpp-httplib's SSLServer, gRPC's
// SslServerCredentials) that require client certificates, with a CA, server and client
// certificates made by the openssl CLI for each run.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "flamestream/sinks/otlp_sink.h"
#include "flamestream/sinks/pyroscope_sink.h"
#include "opentelemetry/proto/collector/profiles/v1development/profiles_service.grpc.pb.h"
#include "push_server.h"
#include "test_util.h"

namespace flamestream::exporter_test {
namespace {

namespace collector = ::opentelemetry::proto::collector::profiles::v1development;

struct Pki {
  std::string ca, server_cert, server_key, client_cert, client_key;
  std::string other_ca;  // a CA that signed nothing here
};

Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return out ? OkStatus() : InternalError("write {}", path);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all P-256.
Result<Pki> MakePki(const std::string& dir) {
  const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                       "-nodes"};
  auto req = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"openssl", "req"};
    argv.insert(argv.end(), ec.begin(), ec.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  };
  for (const char* ca : {"ca", "other-ca"}) {
    FS_RETURN_IF_ERROR(
        req({"-x509", "-days", "2", "-subj", std::string("/CN=flamestream-test-") + ca, "-keyout",
             dir + "/" + ca + ".key", "-out", dir + "/" + ca + ".crt"})
            .status());
  }
  FS_RETURN_IF_ERROR(WriteFile(dir + "/server.ext",
                               "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                               "extendedKeyUsage=serverAuth\n"));
  FS_RETURN_IF_ERROR(WriteFile(dir + "/client.ext", "extendedKeyUsage=clientAuth\n"));
  for (const char* who : {"server", "client"}) {
    const std::string base = dir + "/" + who;
    FS_RETURN_IF_ERROR(req({"-subj", std::string("/CN=flamestream-test-") + who, "-keyout",
                            base + ".key", "-out", base + ".csr"})
                           .status());
    FS_RETURN_IF_ERROR(RunCommand({"openssl", "x509", "-req", "-in", base + ".csr", "-CA",
                                   dir + "/ca.crt", "-CAkey", dir + "/ca.key", "-CAcreateserial",
                                   "-days", "2", "-out", base + ".crt", "-extfile", base + ".ext"})
                           .status());
  }
  return Pki{.ca = dir + "/ca.crt",
             .server_cert = dir + "/server.crt",
             .server_key = dir + "/server.key",
             .client_cert = dir + "/client.crt",
             .client_key = dir + "/client.key",
             .other_ca = dir + "/other-ca.crt"};
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<Pki> pki = MakePki(dir_.path());
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *pki;
    window_ = std::move(Aggregate(StandardBatches(), {}).front());
  }
  TempDir dir_;
  Pki pki_;
  std::unique_ptr<profile::Window> window_;
};

struct TlsCase {
  std::string name;
  sinks::TlsConfig tls;
  bool accepted;
};

std::vector<TlsCase> ClientCases(const Pki& pki) {
  return {
      {"ca+client cert",
       {.ca_file = pki.ca, .cert_file = pki.client_cert, .key_file = pki.client_key},
       true},
      {"ca, no client cert", {.ca_file = pki.ca}, false},
      {"wrong ca",
       {.ca_file = pki.other_ca, .cert_file = pki.client_cert, .key_file = pki.client_key},
       false},
      {"system roots", {.cert_file = pki.client_cert, .key_file = pki.client_key}, false},
      {"skip verify+client cert",
       {.cert_file = pki.client_cert, .key_file = pki.client_key, .insecure_skip_verify = true},
       true},
      {"skip verify, no client cert", {.insecure_skip_verify = true}, false},
  };
}

TEST_F(TlsTest, PyroscopeSinkPresentsClientCertificateAndVerifiesServer) {
  const PushServer::Tls tls{
      .cert_file = pki_.server_cert, .key_file = pki_.server_key, .client_ca_file = pki_.ca};
  PushServer server({}, &tls);
  ASSERT_EQ(server.url().rfind("https://", 0), 0u);
  size_t accepted = 0;
  for (const TlsCase& c : ClientCases(pki_)) {
    SCOPED_TRACE(c.name);
    sinks::PyroscopeSink sink(
        {.url = server.url(), .tls = c.tls, .timeout = std::chrono::seconds(5)});
    ASSERT_TRUE(sink.Start().ok());
    const Status st = sink.Export(*window_);
    EXPECT_EQ(st.ok(), c.accepted) << st;
    if (!c.accepted) {
      // A refused handshake is a connection error: retried, never dead-lettered.
      EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st;
    } else {
      ++accepted;
    }
    EXPECT_EQ(server.accepted().size(), accepted);
  }
}

TEST_F(TlsTest, OtlpHttpSinkPresentsClientCertificate) {
  httplib::SSLServer server(pki_.server_cert.c_str(), pki_.server_key.c_str(), pki_.ca.c_str());
  ASSERT_TRUE(server.is_valid());
  std::mutex mu;
  int requests = 0;
  server.Post("/v1development/profiles", [&](const httplib::Request& req, httplib::Response& res) {
    collector::ExportProfilesServiceRequest r;
    std::lock_guard lock(mu);
    if (r.ParseFromString(req.body) && r.resource_profiles_size() > 0) ++requests;
    res.set_content(collector::ExportProfilesServiceResponse().SerializeAsString(),
                    "application/x-protobuf");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread t([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int accepted = 0;
  for (const TlsCase& c : ClientCases(pki_)) {
    SCOPED_TRACE(c.name);
    sinks::OtlpSink sink({.protocol = "http",
                          .endpoint = "https://127.0.0.1:" + std::to_string(port),
                          .tls = c.tls,
                          .timeout = std::chrono::seconds(5)});
    const Status st = sink.Export(*window_);
    EXPECT_EQ(st.ok(), c.accepted) << st;
    if (c.accepted) ++accepted;
    std::lock_guard lock(mu);
    EXPECT_EQ(requests, accepted);
  }
  server.stop();
  t.join();
}

class CountingService final : public collector::ProfilesService::Service {
 public:
  grpc::Status Export(grpc::ServerContext*, const collector::ExportProfilesServiceRequest* req,
                      collector::ExportProfilesServiceResponse*) override {
    if (req->resource_profiles_size() > 0) ++requests;
    return grpc::Status::OK;
  }
  std::atomic<int> requests{0};
};

TEST_F(TlsTest, OtlpGrpcSinkPresentsClientCertificate) {
  CountingService service;
  grpc::SslServerCredentialsOptions opts(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  opts.pem_root_certs = ReadFile(pki_.ca);
  opts.pem_key_cert_pairs.push_back({ReadFile(pki_.server_key), ReadFile(pki_.server_cert)});
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(opts), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_GT(port, 0);
  int accepted = 0;
  for (TlsCase c : ClientCases(pki_)) {
    SCOPED_TRACE(c.name);
    c.tls.enabled = true;
    sinks::OtlpSink sink({.protocol = "grpc",
                          .endpoint = "127.0.0.1:" + std::to_string(port),
                          .tls = c.tls,
                          .timeout = std::chrono::seconds(3)});
    ASSERT_TRUE(sink.Start().ok());
    const Status st = sink.Export(*window_);
    EXPECT_EQ(st.ok(), c.accepted) << st;
    if (!c.accepted) {
      EXPECT_TRUE(sinks::IsRetryable(st)) << st;
    } else {
      ++accepted;
    }
    EXPECT_EQ(service.requests.load(), accepted);
  }
  server->Shutdown();
}

TEST_F(TlsTest, BadTlsSettingsFailAtStartNotPerWindow) {
  struct Case {
    std::string name;
    std::string url;
    sinks::TlsConfig tls;
  };
  const std::vector<Case> cases = {
      {"cert without key", "https://127.0.0.1:1", {.cert_file = pki_.client_cert}},
      {"key without cert", "https://127.0.0.1:1", {.key_file = pki_.client_key}},
      {"missing ca file", "https://127.0.0.1:1", {.ca_file = dir_.path() + "/nope.crt"}},
      {"tls files on http://", "http://127.0.0.1:1", {.ca_file = pki_.ca}},
      {"key does not match cert",
       "https://127.0.0.1:1",
       {.cert_file = pki_.client_cert, .key_file = pki_.server_key}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    sinks::PyroscopeSink pyroscope({.url = c.url, .tls = c.tls});
    const Status st = pyroscope.Start();
    EXPECT_FALSE(st.ok());
    EXPECT_FALSE(sinks::IsRetryable(st)) << st;
    sinks::OtlpSink otlp({.protocol = "http", .endpoint = c.url, .tls = c.tls});
    EXPECT_FALSE(otlp.Start().ok());
  }
  sinks::OtlpSink grpc_plain(
      {.protocol = "grpc", .endpoint = "127.0.0.1:1", .tls = {.ca_file = pki_.ca}});
  EXPECT_FALSE(grpc_plain.Start().ok()) << "tls files without tls.enabled";
}

}  // namespace
}  // namespace flamestream::exporter_test
