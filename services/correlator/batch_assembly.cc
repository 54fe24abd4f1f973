#include "batch_assembly.h"

#include <algorithm>

#include "flamestream/batch/batch.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::correlator {

namespace v1 = ::flamestream::v1;

Result<JoinBatch> DecodeForJoin(std::string_view value) {
  v1::SampleBatch in;
  if (!in.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return DataLoss("not a flamestream.v1.SampleBatch ({} bytes)", value.size());
  }
  if (Status s = batch::Validate(in); !s.ok()) {
    return s.WithContext(batch::BatchIdString(in.id()));
  }
  if (in.stage() != v1::STAGE_SYMBOLIZED) {
    return InvalidArgument("batch {} has stage {}, want STAGE_SYMBOLIZED",
                           batch::BatchIdString(in.id()), v1::Stage_Name(in.stage()));
  }
  JoinBatch jb;
  jb.rows = batch::DecodeSamples(in);
  jb.direct.resize(jb.rows.size());
  jb.span_index.resize(jb.rows.size());
  for (size_t i = 0; i < jb.rows.size(); ++i) {
    const batch::SampleRow& r = jb.rows[i];
    if (const v1::SpanRef* ref = batch::SpanOf(in, r.span_index); ref != nullptr) {
      jb.direct[i] = {correlate::TraceId::FromBytes(ref->trace_id()),
                      correlate::SpanId::FromBytes(ref->span_id())};
    }
    jb.span_index[i] = r.span_index;  // kept for direct joins the engine names
    jb.min_time_ns = std::min(jb.min_time_ns, r.timestamp_ns);
  }
  jb.remaining = jb.rows.size();
  in.clear_samples();
  FS_ASSIGN_OR_RETURN(jb.builder, batch::BatchBuilder::FromBatch(std::move(in)));
  return jb;
}

bool ApplyEmission(JoinBatch& jb, size_t row, const correlate::Emission& e) {
  if (e.kind != correlate::MatchKind::kUnmatched) {
    v1::SpanRef ref;
    ref.set_trace_id(e.trace_id.ToBytes());
    ref.set_span_id(e.span_id.ToBytes());
    ref.set_name(std::string(e.span_name));
    ref.set_service_name(std::string(e.service_name));
    const uint32_t idx = jb.builder.InternSpan(ref);
    jb.span_index[row] = idx;
    // A direct join to a span the batch already listed without a name: name it now.
    v1::SpanRef* existing = jb.builder.mutable_batch().mutable_spans(static_cast<int>(idx) - 1);
    if (existing->name().empty() && !e.span_name.empty()) {
      existing->set_name(std::string(e.span_name));
    }
    if (existing->service_name().empty() && !e.service_name.empty()) {
      existing->set_service_name(std::string(e.service_name));
    }
  }
  // Unmatched: span_index stays as received (0, or ids the agent set that name no held span).
  if (!e.service_name.empty()) {
    std::string& svc = jb.services[jb.rows[row].pid];
    if (svc.empty() || e.service_name < svc) {
      svc = std::string(e.service_name);
    }
  }
  return --jb.remaining == 0;
}

std::string FinishBatch(JoinBatch jb) {
  batch::BatchBuilder& b = jb.builder;
  for (auto& [pid, svc] : jb.services) {
    v1::Process proc;
    proc.set_host_pid(pid);
    for (const v1::Process& p : b.batch().processes()) {
      if (p.host_pid() == pid) {
        proc = p;
        break;
      }
    }
    proc.set_service_name(svc);
    b.AddProcess(proc);
  }
  for (size_t i = 0; i < jb.rows.size(); ++i) {
    batch::SampleInput in = batch::ToSampleInput(jb.rows[i]);
    in.span_index = jb.span_index[i];
    b.AddSample(in);
  }
  b.mutable_batch().set_stage(v1::STAGE_CORRELATED);
  return b.Finish().SerializeAsString();
}

}  // namespace flamestream::correlator
