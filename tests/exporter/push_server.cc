#include "push_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include "flamestream/profile/pprof.h"

namespace flamestream::exporter_test {

PushServer::PushServer(Decide decide, const Tls* tls) : decide_(std::move(decide)) {
  if (tls != nullptr) {
    server_ = std::make_unique<httplib::SSLServer>(
        tls->cert_file.c_str(), tls->key_file.c_str(),
        tls->client_ca_file.empty() ? nullptr : tls->client_ca_file.c_str());
    scheme_ = "https";
  } else {
    server_ = std::make_unique<httplib::Server>();
    scheme_ = "http";
  }
  EXPECT_TRUE(server_->is_valid()) << "test server TLS setup failed";
  server_->Post(
      "/push.v1.PusherService/Push", [this](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mu_);
        Request r;
        r.at = std::chrono::steady_clock::now();
        r.decoded = req.get_header_value("Content-Type") == "application/proto" &&
                    r.push.ParseFromString(req.body);
        const Seen seen{.index = static_cast<int>(log_.size()),
                        .since_first = log_.empty()
                                           ? std::chrono::milliseconds(0)
                                           : std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 r.at - log_.front().at),
                        .push = r.decoded ? &r.push : nullptr};
        r.answer = !r.decoded ? Answer{.status = 400, .body = "undecodable"}
                   : decide_  ? decide_(seen)
                              : Answer{};
        res.status = r.answer.status;
        if (!r.answer.retry_after.empty()) res.set_header("Retry-After", r.answer.retry_after);
        res.set_content(r.answer.body,
                        r.answer.status < 300 ? "application/proto" : "application/json");
        log_.push_back(std::move(r));
      });
  port_ = server_->bind_to_any_port("127.0.0.1");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

PushServer::~PushServer() {
  server_->stop();
  thread_.join();
}

std::string PushServer::url() const { return scheme_ + "://127.0.0.1:" + std::to_string(port_); }

std::vector<PushServer::Request> PushServer::log() const {
  std::lock_guard lock(mu_);
  return log_;
}

std::vector<push::v1::PushRequest> PushServer::accepted() const {
  std::lock_guard lock(mu_);
  std::vector<push::v1::PushRequest> out;
  for (const Request& r : log_) {
    if (r.answer.status >= 200 && r.answer.status < 300) out.push_back(r.push);
  }
  return out;
}

std::vector<PushedSeries> DecodePushes(const std::vector<push::v1::PushRequest>& pushes) {
  std::vector<PushedSeries> out;
  for (const push::v1::PushRequest& p : pushes) {
    for (const push::v1::RawProfileSeries& s : p.series()) {
      PushedSeries ps;
      for (const types::v1::LabelPair& l : s.labels()) {
        if (l.name() == "service_name") ps.service = l.value();
      }
      for (const push::v1::RawSample& raw : s.samples()) {
        Result<perftools::profiles::Profile> prof = profile::DecodePprof(raw.raw_profile());
        EXPECT_TRUE(prof.ok()) << prof.status();
        if (!prof.ok()) continue;
        ps.window_start_ns = prof->time_nanos();
        Result<std::vector<profile::FoldedStack>> f = profile::Fold(*prof);
        EXPECT_TRUE(f.ok()) << f.status();
        if (!f.ok()) continue;
        for (const auto& st : *f) {
          ps.count += st.count;
          ps.nanos += st.nanos;
        }
      }
      out.push_back(std::move(ps));
    }
  }
  return out;
}

}  // namespace flamestream::exporter_test
