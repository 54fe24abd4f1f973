#include "span_rebuild.h"

#include <algorithm>
#include <string>

#include "commit_plan.h"

namespace flamestream::correlator {

RebuildPlan PlanRebuild(const kafka::TopicPartition& committed, const kafka::Watermarks& marks) {
  RebuildPlan plan;
  plan.start = marks.low;
  plan.until = marks.high;
  if (committed.offset >= 0) {
    plan.start = committed.offset;
    if (std::optional<int64_t> from = ParseCommitMetadata(committed.metadata, kSpansMetadataPrefix);
        from.has_value() && *from < committed.offset) {
      plan.start = std::max(*from, marks.low);
      if (plan.start < committed.offset) plan.seek_to = plan.start;
    }
  }
  plan.rebuild = marks.high > plan.start;
  if (!plan.rebuild) plan.seek_to.reset();
  return plan;
}

correlate::Span ToSpan(const v1::KeyedSpan& ks, std::string_view node_key) {
  correlate::Span s;
  s.trace_id = correlate::TraceId::FromBytes(ks.trace_id());
  s.span_id = correlate::SpanId::FromBytes(ks.span_id());
  s.parent_span_id = correlate::SpanId::FromBytes(ks.parent_span_id());
  s.name = ks.name();
  s.service = ks.service_name();
  s.start_ns = static_cast<int64_t>(ks.start_time_unix_ns());
  s.end_ns = static_cast<int64_t>(ks.end_time_unix_ns());
  s.node_key = node_key;
  // The host pid the samples carry: the router's resolution, else process.pid when the span
  // does not come from a container or pod (there it is a namespace pid).
  if (ks.host_pid() != 0) {
    s.pid = ks.host_pid();
  } else if (ks.container_id().empty() && ks.k8s_pod_uid().empty()) {
    s.pid = ks.pid();
  }
  s.thread_id = ks.thread_id() > 0 ? static_cast<uint64_t>(ks.thread_id()) : 0;
  return s;
}

}  // namespace flamestream::correlator
