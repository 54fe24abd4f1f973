#include "flamestream/spans/router.h"

#include <unistd.h>

#include <array>
#include <future>

#include "flamestream/common/identity.h"
#include "flamestream/common/strings.h"
#include "flamestream/config/config.h"
#include "flamestream/log/log.h"
#include "flamestream/v1/processes.pb.h"

namespace flamestream::spans {
namespace {

using opentelemetry::proto::common::v1::AnyValue;
using opentelemetry::proto::common::v1::KeyValue;

constexpr std::array<std::string_view, 4> kSourceNames = {"unspecified", "kafka", "grpc", "http"};

std::string_view SourceName(v1::SpanSource source) {
  const auto i = static_cast<size_t>(source);
  return i < kSourceNames.size() ? kSourceNames[i] : "unspecified";
}

std::string AnyValueText(const AnyValue& v) {
  switch (v.value_case()) {
    case AnyValue::kStringValue:
      return v.string_value();
    case AnyValue::kBoolValue:
      return v.bool_value() ? "true" : "false";
    case AnyValue::kIntValue:
      return std::to_string(v.int_value());
    case AnyValue::kDoubleValue:
      return fmt::format("{}", v.double_value());
    case AnyValue::kBytesValue:
      return common::HexEncode(v.bytes_value());
    case AnyValue::kArrayValue: {
      std::vector<std::string> parts;
      for (const auto& e : v.array_value().values()) parts.push_back(AnyValueText(e));
      return "[" + common::Join(parts, ",") + "]";
    }
    case AnyValue::kKvlistValue: {
      std::vector<std::string> parts;
      for (const auto& kv : v.kvlist_value().values()) {
        parts.push_back(kv.key() + "=" + AnyValueText(kv.value()));
      }
      return "{" + common::Join(parts, ",") + "}";
    }
    default:
      return "";
  }
}

// process.pid / thread.id: an int, or (from sloppy SDKs) a decimal string.
std::optional<int64_t> AnyValueInt(const AnyValue& v) {
  if (v.value_case() == AnyValue::kIntValue) return v.int_value();
  if (v.value_case() == AnyValue::kStringValue) {
    auto r = common::ParseInt<int64_t>(v.string_value());
    if (r.ok()) return *r;
  }
  if (v.value_case() == AnyValue::kDoubleValue &&
      v.double_value() == static_cast<double>(static_cast<int64_t>(v.double_value()))) {
    return static_cast<int64_t>(v.double_value());
  }
  return std::nullopt;
}

// The identifying resource attributes of one ResourceSpans.
struct Identity {
  std::string service_name;
  std::string host_name;
  std::string k8s_node_name;
  std::string k8s_cluster_name;
  std::string container_id;
  std::string pod_uid;
  uint32_t pid = 0;
};

Identity IdentityOf(const google::protobuf::RepeatedPtrField<KeyValue>& attrs) {
  Identity id;
  for (const KeyValue& kv : attrs) {
    const std::string& k = kv.key();
    if (k == "service.name") {
      id.service_name = AnyValueText(kv.value());
    } else if (k == "host.name") {
      id.host_name = AnyValueText(kv.value());
    } else if (k == "k8s.node.name") {
      id.k8s_node_name = AnyValueText(kv.value());
    } else if (k == "k8s.cluster.name") {
      id.k8s_cluster_name = AnyValueText(kv.value());
    } else if (k == "container.id") {
      id.container_id = AnyValueText(kv.value());
    } else if (k == "k8s.pod.uid") {
      id.pod_uid = AnyValueText(kv.value());
    } else if (k == "process.pid") {
      auto pid = AnyValueInt(kv.value());
      if (pid && *pid > 0 && *pid <= std::numeric_limits<uint32_t>::max()) {
        id.pid = static_cast<uint32_t>(*pid);
      }
    }
  }
  return id;
}

bool AllZero(const std::string& bytes) {
  return bytes.find_first_not_of('\0') == std::string::npos;
}

// `batch`'s spans [begin, end) as a batch of the same key.
v1::SpanBatch Slice(const v1::SpanBatch& batch, int begin, int end) {
  v1::SpanBatch out;
  out.set_cluster(batch.cluster());
  out.set_node(batch.node());
  out.mutable_spans()->Reserve(end - begin);
  for (int i = begin; i < end; ++i) *out.add_spans() = batch.spans(i);
  return out;
}

// Splits `batch` into batches of at most `max_bytes` serialized (a span bigger than that
// alone stays a batch of one: the writer decides whether Kafka takes it).
std::vector<v1::SpanBatch> SplitBySize(v1::SpanBatch batch, uint64_t max_bytes) {
  std::vector<v1::SpanBatch> out;
  if (max_bytes == 0 || batch.ByteSizeLong() <= max_bytes || batch.spans_size() <= 1) {
    out.push_back(std::move(batch));
    return out;
  }
  const uint64_t header = Slice(batch, 0, 0).ByteSizeLong() + 16;  // + id
  int begin = 0;
  uint64_t size = header;
  for (int i = 0; i < batch.spans_size(); ++i) {
    const uint64_t span = batch.spans(i).ByteSizeLong() + 6;  // + tag and length
    if (i > begin && size + span > max_bytes) {
      out.push_back(Slice(batch, begin, i));
      begin = i;
      size = header;
    }
    size += span;
  }
  out.push_back(Slice(batch, begin, batch.spans_size()));
  return out;
}

std::string DefaultInstanceId() {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  return fmt::format("span-router/{}/{}", host.data(), getpid());
}

}  // namespace

void SpanRouterConfig::Declare(config::Schema& schema, const std::string& prefix) {
  schema.Add(prefix + ".default_cluster", &default_cluster,
             "cluster of spans without the k8s.cluster.name resource attribute");
  schema.Add(prefix + ".keep_attributes", &keep_attributes,
             "span or resource attributes copied into keyed spans (e.g. http.route)");
  schema.Add(prefix + ".instance_id", &instance_id,
             "batch id prefix of this router (default span-router/<host>/<pid>)");
  schema.Add(prefix + ".max_batch_bytes", &max_batch_bytes,
             "largest keyed span batch written as one Kafka record, bytes (bigger ones are "
             "split; keep under the topic's max.message.bytes)");
  schema.Add(prefix + ".max_inflight_bytes", &max_inflight_bytes,
             "most bytes of keyed spans written and not yet acknowledged; requests over it get "
             "503/UNAVAILABLE (0: no bound)");
}

std::string SpanKey(const v1::KeyedSpan& span) {
  return common::NodeKey::Of(span.cluster(), span.node()).str();
}

struct SpanRouter::Extracted {
  std::map<std::string, v1::SpanBatch> batches;  // by key
  uint64_t received = 0;
  uint64_t accepted = 0;
  uint64_t rejected = 0;
  std::map<std::string, uint64_t> rejected_by;  // reason label -> spans
  std::string first_detail;
  std::map<correlate::ProcessResolution, uint64_t> resolution;  // placed spans
};

struct SpanRouter::Writer {
  explicit Writer(SpanWriter& s) : out(s) {}
  SpanWriter& out;
  std::string instance_id;
  std::atomic<uint64_t> sequence{0};
  std::atomic<uint64_t> inflight{0};
  // Set when the router is destroyed: a batch failing afterwards is not split and written
  // again (the writer may be gone too).
  std::atomic<bool> closed{false};
  obs::Gauge* inflight_gauge = nullptr;
  obs::Counter* too_large_spans = nullptr;
  obs::Counter* splits = nullptr;
};

struct SpanRouter::Pending {
  std::mutex mu;
  bool finished = false;
  size_t remaining = 0;
  RouteResult result;
  uint64_t received = 0;
  std::string first_detail;
  RouteCallback done;
  obs::Counter* accepted = nullptr;
  obs::Counter* failed_batches = nullptr;
  obs::Counter* timeouts = nullptr;

  // Completes once; the winner calls `done` outside the lock.
  void Finish(Status status) {
    RouteResult r;
    {
      std::lock_guard lock(mu);
      if (finished) return;
      finished = true;
      r = std::move(result);
      r.status = std::move(status);
      if (!r.status.ok()) r.accepted = 0;
      if (r.rejected > 0) {
        std::vector<std::string> counts;
        for (const auto& [reason, n] : r.rejected_by)
          counts.push_back(fmt::format("{} {}", n, reason));
        r.rejection = fmt::format("{} of {} spans rejected ({}); first: {}", r.rejected, received,
                                  common::Join(counts, ", "), first_detail);
      }
    }
    if (r.status.ok()) accepted->Inc(r.accepted);
    RouteCallback cb = std::move(done);
    cb(std::move(r));
  }
  // One batch became two (a split): false when the request is already answered.
  bool AddBatch() {
    std::lock_guard lock(mu);
    if (finished) return false;
    ++remaining;
    return true;
  }
  // A span no Kafka message can hold: rejected instead of written.
  void RejectTooLarge(const std::string& detail) {
    std::lock_guard lock(mu);
    if (result.accepted > 0) --result.accepted;
    ++result.rejected;
    ++result.rejected_by["too_large_for_kafka"];
    if (first_detail.empty()) first_detail = detail;
  }
  void BatchDone(const Status& status) {
    bool last = false;
    {
      std::lock_guard lock(mu);
      if (finished) return;
      last = --remaining == 0;
    }
    if (!status.ok()) {
      failed_batches->Inc();
      Finish(Unavailable("spans not acknowledged by Kafka: {}", status.message()));
    } else if (last) {
      Finish(OkStatus());
    }
  }
};

SpanRouter::SpanRouter(SpanRouterConfig config, SpanWriter& writer, obs::Registry& metrics)
    : config_(std::move(config)),
      output_(writer),
      metrics_(metrics),
      keep_(config_.keep_attributes.begin(), config_.keep_attributes.end()),
      placer_(table_, {.default_cluster = common::ToLower(config_.default_cluster),
                       .start_time_tolerance_ns = config_.start_time_tolerance.count()}) {
  if (config_.instance_id.empty()) config_.instance_id = DefaultInstanceId();
  writer_ = std::make_shared<Writer>(output_);
  writer_->instance_id = config_.instance_id;
  writer_->inflight_gauge = &metrics_.Gauge(
      "fs_span_router_inflight_bytes", "bytes of keyed spans written and not yet acknowledged");
  writer_->too_large_spans =
      &metrics_.Counter("fs_spans_rejected_total",
                        "spans dropped (malformed ids, or not placeable on a node), by reason",
                        {{"reason", "too_large_for_kafka"}});
  writer_->splits =
      &metrics_.Counter("fs_span_batches_split_total",
                        "keyed span batches split because Kafka refused them as too large");
  timer_thread_ = std::thread([this] { RunTimers(); });
}

SpanRouter::~SpanRouter() {
  writer_->closed = true;
  {
    std::lock_guard lock(timer_mu_);
    stop_timers_ = true;
  }
  timer_cv_.notify_all();
  timer_thread_.join();
}

void SpanRouter::Reject(Extracted* out, const std::string& reason_label,
                        const std::string& detail) {
  ++out->rejected;
  ++out->rejected_by[reason_label];
  if (out->first_detail.empty()) out->first_detail = detail;
}

void SpanRouter::Extract(const otlp::ExportTraceServiceRequest& request, v1::SpanSource source,
                         Extracted* out) {
  const auto now_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
  std::lock_guard lock(table_mu_);
  for (int ri = 0; ri < request.resource_spans_size(); ++ri) {
    const auto& rs = request.resource_spans(ri);
    const auto& rattrs = rs.resource().attributes();
    const Identity id = IdentityOf(rattrs);
    for (int si = 0; si < rs.scope_spans_size(); ++si) {
      const auto& ss = rs.scope_spans(si);
      for (int k = 0; k < ss.spans_size(); ++k) {
        const auto& span = ss.spans(k);
        ++out->received;
        auto where = [&](std::string_view field) {
          return fmt::format("resource_spans[{}].scope_spans[{}].spans[{}].{}", ri, si, k, field);
        };
        if (span.trace_id().size() != 16 || AllZero(span.trace_id())) {
          Reject(
              out, "invalid_trace_id",
              fmt::format("{}: {} bytes{}, want 16 non-zero bytes", where("trace_id"),
                          span.trace_id().size(), span.trace_id().size() == 16 ? " all zero" : ""));
          continue;
        }
        if (span.span_id().size() != 8 || AllZero(span.span_id())) {
          Reject(out, "invalid_span_id",
                 fmt::format("{}: {} bytes{}, want 8 non-zero bytes", where("span_id"),
                             span.span_id().size(), span.span_id().size() == 8 ? " all zero" : ""));
          continue;
        }
        if (!span.parent_span_id().empty() && span.parent_span_id().size() != 8) {
          Reject(out, "invalid_parent_span_id",
                 fmt::format("{}: {} bytes, want 8 (or none for a root span)",
                             where("parent_span_id"), span.parent_span_id().size()));
          continue;
        }
        correlate::SpanResource res{.cluster = id.k8s_cluster_name,
                                    .k8s_node_name = id.k8s_node_name,
                                    .host_name = id.host_name,
                                    .container_id = id.container_id,
                                    .pod_uid = id.pod_uid,
                                    .pid = id.pid};
        const correlate::Placement p =
            placer_.Place(res, static_cast<int64_t>(span.start_time_unix_nano()));
        if (!p.placed()) {
          const std::string reason(correlate::UnplacedReasonName(p.reason));
          Reject(out, "unplaced_" + reason,
                 fmt::format("resource_spans[{}]: span cannot be placed on a node ({}): send "
                             "k8s.node.name or host.name (or container.id known to an agent)",
                             ri, reason));
          continue;
        }
        v1::SpanBatch& batch = out->batches[p.node_key];
        if (batch.spans_size() == 0) {
          batch.set_cluster(p.node.cluster);
          batch.set_node(p.node.node);
        }
        v1::KeyedSpan* ks = batch.add_spans();
        ks->set_trace_id(span.trace_id());
        ks->set_span_id(span.span_id());
        if (!AllZero(span.parent_span_id())) ks->set_parent_span_id(span.parent_span_id());
        ks->set_name(span.name());
        const int kind = static_cast<int>(span.kind());
        ks->set_kind(v1::SpanKind_IsValid(kind) ? static_cast<v1::SpanKind>(kind)
                                                : v1::SPAN_KIND_UNSPECIFIED);
        ks->set_service_name(id.service_name);
        ks->set_start_time_unix_ns(span.start_time_unix_nano());
        ks->set_end_time_unix_ns(span.end_time_unix_nano());
        ks->set_host_name(id.host_name);
        ks->set_k8s_node_name(id.k8s_node_name);
        ks->set_cluster(p.node.cluster);
        ks->set_node(p.node.node);
        ks->set_pid(id.pid);
        ks->set_container_id(id.container_id);
        ks->set_k8s_pod_uid(id.pod_uid);
        ks->set_source(source);
        // Which rule placed it (mirrors SpanPlacer: node name, then container/pod, then host).
        if (!id.k8s_node_name.empty()) {
          ks->set_placement(v1::SPAN_PLACEMENT_K8S_NODE_NAME);
        } else if (!id.container_id.empty()) {
          ks->set_placement(v1::SPAN_PLACEMENT_CONTAINER_ID);
        } else if (!id.pod_uid.empty()) {
          ks->set_placement(v1::SPAN_PLACEMENT_POD_UID);
        } else {
          ks->set_placement(v1::SPAN_PLACEMENT_HOST_NAME);
        }
        ks->set_host_pid(p.process == correlate::ProcessResolution::kResolved ? p.host_pid : 0);
        ks->set_received_unix_ns(now_ns);
        if (!keep_.empty()) {
          for (const KeyValue& kv : rattrs) {
            if (keep_.contains(kv.key()))
              (*ks->mutable_attributes())[kv.key()] = AnyValueText(kv.value());
          }
        }
        for (const KeyValue& kv : span.attributes()) {
          if (kv.key() == "thread.id") {
            if (auto tid = AnyValueInt(kv.value())) ks->set_thread_id(*tid);
          }
          if (keep_.contains(kv.key())) {
            (*ks->mutable_attributes())[kv.key()] = AnyValueText(kv.value());
          }
        }
        ++out->accepted;
        ++out->resolution[p.process];
      }
    }
  }
}

void SpanRouter::WriteBatch(const std::shared_ptr<Writer>& w, const std::shared_ptr<Pending>& p,
                            const std::string& key, v1::SpanBatch batch) {
  v1::BatchId* bid = batch.mutable_id();
  bid->set_agent_id(w->instance_id);
  bid->set_sequence(w->sequence.fetch_add(1, std::memory_order_relaxed) + 1);
  const uint64_t bytes = batch.ByteSizeLong();
  w->inflight_gauge->Set(static_cast<double>(w->inflight.fetch_add(bytes) + bytes));
  // Kept for a split; only the spans are needed.
  auto kept = std::make_shared<v1::SpanBatch>(batch);
  w->out.Write(key, std::move(batch), [w, p, key, kept, bytes](const Status& st) {
    w->inflight_gauge->Set(static_cast<double>(w->inflight.fetch_sub(bytes) - bytes));
    if (st.code() != StatusCode::kOutOfRange || w->closed.load()) {
      p->BatchDone(st);
      return;
    }
    const int n = kept->spans_size();
    if (n <= 1) {
      w->too_large_spans->Inc();
      log::Warn("keyed span larger than a Kafka message rejected",
                {{"key", key}, {"bytes", static_cast<long long>(bytes)}, {"error", st}});
      p->RejectTooLarge(
          fmt::format("a span of {} bytes keyed {} is larger than a Kafka message "
                      "({})",
                      bytes, key, st.message()));
      p->BatchDone(OkStatus());
      return;
    }
    if (!p->AddBatch()) return;  // answered already (deadline)
    w->splits->Inc();
    WriteBatch(w, p, key, Slice(*kept, 0, n / 2));
    WriteBatch(w, p, key, Slice(*kept, n / 2, n));
  });
}

void SpanRouter::RouteAsync(const otlp::ExportTraceServiceRequest& request, v1::SpanSource source,
                            std::chrono::milliseconds timeout, RouteCallback done) {
  Extracted ex;
  Extract(request, source, &ex);
  const obs::Labels source_label = {{"source", std::string(SourceName(source))}};
  if (config_.max_inflight_bytes != 0) {
    uint64_t bytes = 0;
    for (const auto& [key, batch] : ex.batches) bytes += batch.ByteSizeLong();
    const uint64_t held = writer_->inflight.load();
    // Over the bound, unless nothing is held (a request bigger than the bound alone still
    // goes through, or it could never be written).
    if (held > 0 && held + bytes > config_.max_inflight_bytes) {
      metrics_
          .Counter("fs_spans_refused_total",
                   "OTLP requests and otlp_spans records refused whole, by source and reason",
                   {{"source", std::string(SourceName(source))}, {"reason", "router_full"}})
          .Inc();
      RouteResult r;
      r.status = Unavailable(
          "span router holds {} bytes of unacknowledged keyed spans, {} more would exceed "
          "spans.max_inflight_bytes ({}); retry later",
          held, bytes, config_.max_inflight_bytes);
      done(std::move(r));
      return;
    }
  }
  metrics_.Counter("fs_spans_received_total", "spans received, by source", source_label)
      .Inc(ex.received);
  for (const auto& [reason, n] : ex.rejected_by) {
    metrics_
        .Counter("fs_spans_rejected_total",
                 "spans dropped (malformed ids, or not placeable on a node), by reason",
                 {{"reason", reason}})
        .Inc(n);
  }

  for (const auto& [resolution, n] : ex.resolution) {
    metrics_
        .Counter("fs_spans_process_resolution_total",
                 "placed spans by how their host process was resolved",
                 {{"resolution", std::string(correlate::ProcessResolutionName(resolution))}})
        .Inc(n);
  }

  auto pending = std::make_shared<Pending>();
  pending->done = std::move(done);
  pending->result.accepted = ex.accepted;
  pending->result.rejected = ex.rejected;
  pending->result.rejected_by = ex.rejected_by;
  pending->received = ex.received;
  pending->first_detail = ex.first_detail;
  pending->accepted = &metrics_.Counter("fs_spans_accepted_total",
                                        "spans acknowledged by Kafka, by source", source_label);
  pending->failed_batches = &metrics_.Counter("fs_span_batches_failed_total",
                                              "keyed span batches the writer failed to write");
  pending->timeouts = &metrics_.Counter("fs_span_ack_timeouts_total",
                                        "requests answered unavailable: Kafka did not ack in time");
  std::vector<std::pair<std::string, v1::SpanBatch>> batches;
  for (auto& [key, batch] : ex.batches) {
    for (v1::SpanBatch& b : SplitBySize(std::move(batch), config_.max_batch_bytes)) {
      batches.emplace_back(key, std::move(b));
    }
  }
  pending->remaining = batches.size();
  if (batches.empty()) {
    pending->Finish(OkStatus());
    return;
  }
  ArmTimeout(pending, timeout);
  for (auto& [key, batch] : batches) WriteBatch(writer_, pending, key, std::move(batch));
}

RouteResult SpanRouter::Route(const otlp::ExportTraceServiceRequest& request, v1::SpanSource source,
                              std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<RouteResult>>();
  std::future<RouteResult> future = promise->get_future();
  RouteAsync(request, source, timeout,
             [promise](RouteResult r) { promise->set_value(std::move(r)); });
  return future.get();  // RouteAsync's timer guarantees completion
}

void SpanRouter::ArmTimeout(const std::shared_ptr<Pending>& pending,
                            std::chrono::milliseconds timeout) {
  {
    std::lock_guard lock(timer_mu_);
    timers_.emplace(std::chrono::steady_clock::now() + timeout, pending);
  }
  timer_cv_.notify_all();
}

void SpanRouter::RunTimers() {
  std::unique_lock lock(timer_mu_);
  while (!stop_timers_) {
    if (timers_.empty()) {
      timer_cv_.wait(lock);
      continue;
    }
    auto first = timers_.begin();
    if (std::chrono::steady_clock::now() < first->first) {
      timer_cv_.wait_until(lock, first->first);
      continue;
    }
    std::shared_ptr<Pending> p = first->second.lock();
    timers_.erase(first);
    if (!p) continue;
    lock.unlock();
    bool expired = false;
    {
      std::lock_guard plock(p->mu);
      expired = !p->finished;
    }
    if (expired) {
      p->timeouts->Inc();
      p->Finish(Unavailable("spans not acknowledged by Kafka within the deadline"));
    }
    lock.lock();
  }
  // Requests still pending at shutdown fail, so no caller waits forever.
  std::vector<std::shared_ptr<Pending>> left;
  for (auto& [t, w] : timers_) {
    if (auto p = w.lock()) left.push_back(std::move(p));
  }
  timers_.clear();
  lock.unlock();
  for (auto& p : left) p->Finish(Unavailable("span router shutting down"));
}

Status SpanRouter::ApplyProcessRecord(std::string_view key, std::optional<std::string_view> value) {
  FS_ASSIGN_OR_RETURN(const common::ProcessKey pk, common::ProcessKey::Parse(key));
  const std::string host_key = pk.PidKey();
  std::lock_guard lock(table_mu_);
  if (!value.has_value()) {
    auto it = live_keys_.find(host_key);
    if (it != live_keys_.end() && it->second == key) {
      table_.Remove(pk.node.cluster, pk.node.node, pk.pid);
      live_keys_.erase(it);
    }
    return OkStatus();
  }
  v1::ProcessRecord rec;
  if (!rec.ParseFromArray(value->data(), static_cast<int>(value->size()))) {
    return InvalidArgument("processes record \"{}\": value is not a ProcessRecord", key);
  }
  table_.Upsert({.cluster = rec.cluster().empty() ? pk.node.cluster : rec.cluster(),
                 .node = rec.node().empty() ? pk.node.node : rec.node(),
                 .host_pid = rec.host_pid() != 0 ? rec.host_pid() : pk.pid,
                 .ns_pid = rec.ns_pid() != 0 ? rec.ns_pid() : rec.host_pid(),
                 .container_id = rec.container_id(),
                 .pod_uid = rec.pod_uid(),
                 .start_time_ns = rec.start_time_unix_ns()});
  live_keys_[host_key] = std::string(key);
  return OkStatus();
}

uint64_t SpanRouter::inflight_bytes() const { return writer_->inflight.load(); }

size_t SpanRouter::process_count() const {
  std::lock_guard lock(table_mu_);
  return table_.size();
}

}  // namespace flamestream::spans
