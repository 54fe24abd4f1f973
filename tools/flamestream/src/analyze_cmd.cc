#include "analyze_cmd.h"

#include <chrono>

#include "flamestream/pprofutil/flamegraph.h"
#include "flamestream/pprofutil/profile_io.h"
#include "flamestream/pprofutil/report.h"
#include "flamestream/pprofutil/stacks.h"
#include "pyroscope_source.h"

namespace flamestream::cli {
namespace {

namespace pp = pprofutil;

// A Pyroscope URL's profile: --service and --span become label matchers of the query, since
// the merged profile Pyroscope returns carries no sample labels to filter on.
Status AddPyroscope(const std::string& url, const AnalyzeOptions& o, pp::StackSet& set) {
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  FS_ASSIGN_OR_RETURN(PyroscopeQuery q, ParsePyroscopeUrl(url, now_ns));
  if (!o.service.empty()) q.matchers["service_name"] = o.service;
  if (!o.span.empty()) q.matchers["span_name"] = o.span;
  FS_ASSIGN_OR_RETURN(perftools::profiles::Profile profile, FetchMergedProfile(q, o.tenant));
  return pp::AddProfile(profile, {.sample_type = o.sample_type}, set).WithContext(url);
}

Result<pp::StackSet> Load(const AnalyzeOptions& o) {
  std::vector<std::string> urls, paths;
  for (const std::string& in : o.inputs) (IsPyroscopeUrl(in) ? urls : paths).push_back(in);
  pp::StackSet set;
  if (!paths.empty()) {
    FS_ASSIGN_OR_RETURN(std::vector<std::string> files, pp::ExpandInputs(paths, o.service));
    FS_ASSIGN_OR_RETURN(set, pp::LoadStacks(files, {.sample_type = o.sample_type,
                                                    .span_name = o.span,
                                                    .service = o.service}));
  }
  for (const std::string& url : urls) FS_RETURN_IF_ERROR(AddPyroscope(url, o, set));
  return set;
}

}  // namespace

int RunFolded(const AnalyzeOptions& o, std::ostream& out, std::ostream& err) {
  Result<pp::StackSet> set = Load(o);
  if (!set.ok()) {
    err << "flamestream folded: " << set.error().message() << "\n";
    return 2;
  }
  out << pp::ToFolded(*set);
  return 0;
}

int RunTop(const AnalyzeOptions& o, std::ostream& out, std::ostream& err) {
  Result<pp::StackSet> set = Load(o);
  if (!set.ok()) {
    err << "flamestream top: " << set.error().message() << "\n";
    return 2;
  }
  const pp::SortBy by = o.by == "total" ? pp::SortBy::kTotal : pp::SortBy::kSelf;
  out << pp::FormatTop(*set, pp::Top(*set, by), o.limit);
  return 0;
}

int RunDiff(const DiffOptions& o, std::ostream& out, std::ostream& err) {
  Result<pp::StackSet> before = Load(o.before);
  if (!before.ok()) {
    err << "flamestream diff: BEFORE " << before.error().message() << "\n";
    return 2;
  }
  Result<pp::StackSet> after = Load(o.after);
  if (!after.ok()) {
    err << "flamestream diff: AFTER " << after.error().message() << "\n";
    return 2;
  }
  if (before->sample_type != after->sample_type || before->unit != after->unit) {
    err << "flamestream diff: BEFORE has " << before->sample_type << "/" << before->unit
        << " but AFTER has " << after->sample_type << "/" << after->unit
        << "; choose one with --sample-type\n";
    return 2;
  }
  const pp::SortBy by = o.after.by == "total" ? pp::SortBy::kTotal : pp::SortBy::kSelf;
  out << pp::FormatDiff(*before, *after, pp::Diff(*before, *after, by), o.after.limit);
  if (!o.html.empty()) {
    const std::string title =
        o.before.inputs.front() + " \u2192 " + o.after.inputs.front();
    if (Status s = pp::WriteFile(o.html, pp::DiffFlameGraphHtml(*before, *after, title)); !s.ok()) {
      err << "flamestream diff: --html " << s.message() << "\n";
      return 2;
    }
    out << "Differential flame graph: " << o.html << "\n";
  }
  return 0;
}

}  // namespace flamestream::cli
