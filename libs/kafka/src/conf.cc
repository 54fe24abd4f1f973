#include "conf.h"

#include <array>

#include "flamestream/common/strings.h"
#include "flamestream/kafka/client_info.h"
#include "flamestream/log/log.h"

namespace flamestream::kafka::internal {

Result<KafkaConf> MakeConf(const Properties& props) {
  KafkaConf conf(rd_kafka_conf_new());
  std::array<char, 512> err{};
  for (const auto& [key, value] : props) {
    if (rd_kafka_conf_set(conf.get(), key.c_str(), value.c_str(), err.data(), err.size()) !=
        RD_KAFKA_CONF_OK) {
      return InvalidArgument("kafka property {}: {}", key, err.data());
    }
  }
  return conf;
}

namespace {

void LogCallback(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  // syslog levels: 0..3 error, 4 warning, 5..6 info, 7 debug.
  log::Fields fields = {{"client", rd_kafka_name(rk)}, {"facility", fac}};
  if (level <= 3) {
    log::Error(buf, fields);
  } else if (level == 4) {
    log::Warn(buf, fields);
  } else if (level <= 6) {
    log::Info(buf, fields);
  } else {
    log::Debug(buf, fields);
  }
}

}  // namespace

void SetLogger(rd_kafka_conf_t* conf) { rd_kafka_conf_set_log_cb(conf, LogCallback); }

StatusCode ErrCode(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return StatusCode::kDeadlineExceeded;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
      return StatusCode::kResourceExhausted;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
      return StatusCode::kInvalidArgument;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
      return StatusCode::kOutOfRange;
    case RD_KAFKA_RESP_ERR__STATE:
    case RD_KAFKA_RESP_ERR__FATAL:
      return StatusCode::kFailedPrecondition;
    default:
      return StatusCode::kUnavailable;
  }
}

Status ErrStatus(rd_kafka_resp_err_t err, std::string_view what) {
  return Status(ErrCode(err), fmt::format("{}: {}", what, rd_kafka_err2str(err)));
}

}  // namespace flamestream::kafka::internal

namespace flamestream::kafka {

std::vector<std::string> BuiltinFeatures() {
  KafkaConf conf(rd_kafka_conf_new());
  std::array<char, 1024> buf{};
  size_t size = buf.size();
  if (rd_kafka_conf_get(conf.get(), "builtin.features", buf.data(), &size) != RD_KAFKA_CONF_OK) {
    return {};
  }
  return common::Split(std::string_view(buf.data()), ',');
}

std::string LibrdkafkaVersion() { return rd_kafka_version_str(); }

}  // namespace flamestream::kafka
