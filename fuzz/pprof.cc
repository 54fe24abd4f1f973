// pprof profiles as `flamestream top|diff|folded` read them (libs/pprofutil): ParseProfile
// (gzip, magic 1f 8b, or raw protobuf: what ReadProfile does with a file and what the
// Pyroscope source does with a SelectMergeProfile reply), AddProfile into a StackSet (default
// sample type, and with span/service filters), then folded stacks, the top table, a diff
// and the differential flame graph page. gzip -> ParseProfile round trips.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "flamestream/pprofutil/flamegraph.h"
#include "flamestream/pprofutil/profile_io.h"
#include "flamestream/pprofutil/report.h"
#include "flamestream/pprofutil/stacks.h"
#include "fuzz_check.h"

namespace pp = flamestream::pprofutil;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  flamestream::Result<perftools::profiles::Profile> profile = pp::ParseProfile(bytes);
  if (!profile.ok()) return 0;

  const pp::FrameNamer names(*profile);
  for (const auto& sample : profile->sample()) {
    (void)names.Check(sample);
    (void)names.LeafFirst(sample);
  }

  pp::StackSet set;
  if (!pp::AddProfile(*profile, {}, set).ok()) return 0;
  // A second profile of the same type adds to the set, as `top dir/` does with every window.
  // Its values may now overflow (then the set is refused), but never its sample type.
  if (flamestream::Status st =
          pp::AddProfile(*profile, {.span_name = "GET /cart", .service = "shop"}, set);
      !st.ok()) {
    FS_FUZZ_CHECK(st.message().find("overflow") != std::string::npos, "second AddProfile: %s",
                  st.message().c_str());
    return 0;
  }
  (void)pp::ToFolded(set);
  for (pp::SortBy by : {pp::SortBy::kSelf, pp::SortBy::kTotal}) {
    (void)pp::FormatTop(set, pp::Top(set, by), 20);
    const auto diff = pp::Diff(set, set, by);
    for (const pp::DiffRow& row : diff) {
      FS_FUZZ_CHECK(row.before == row.after, "a set differs from itself: %s", row.name.c_str());
    }
    (void)pp::FormatDiff(set, set, diff, 20);
  }
  (void)pp::DiffFlameGraphHtml(set, set, "fuzz");

  // gzip -> parse gives the same profile back.
  const std::string raw = profile->SerializeAsString();
  flamestream::Result<std::string> gz = pp::Gzip(raw, 1);
  FS_FUZZ_CHECK(gz.ok(), "gzip failed");
  flamestream::Result<perftools::profiles::Profile> again = pp::ParseProfile(*gz);
  FS_FUZZ_CHECK(again.ok() && again->SerializeAsString() == raw, "gzip round trip differs");
  return 0;
}
