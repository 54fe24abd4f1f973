// pprof encoding of aggregated windows, and the reverse direction for what the sinks re-read.
//
//   std::vector<uint32_t> series = window.SeriesOf("checkout");
//   perftools::profiles::Profile p = profile::EncodePprof(window, series, LabelPolicy::Full());
//   FS_ASSIGN_OR_RETURN(std::string gz, profile::GzipPprof(p));        // the .pb.gz bytes
//   FS_ASSIGN_OR_RETURN(perftools::profiles::Profile back, profile::DecodePprof(gz));
//   for (const profile::FoldedStack& s : profile::Fold(back)) { ... }   // root-first frames
//
// Profile layout: sample_type [samples/count, cpu/nanoseconds], default_sample_type cpu,
// period_type cpu/nanoseconds, period = the batches' nominal period, time_nanos = window start,
// duration_nanos = window length. Inlined frames are Line entries of one Location, callee
// first. Sample labels (as the policy allows): span_id (16 hex), trace_id (32 hex), span_name,
// thread_name. Comments record provenance so a re-read window can be merged exactly once:
// "flamestream.symbol_epoch=<n>" and one "flamestream.batch=<agent/seq>" per aggregated batch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/profile/aggregator.h"
#include "pprof/profile.pb.h"

namespace flamestream::profile {

inline constexpr std::string_view kCommentEpoch = "flamestream.symbol_epoch=";
inline constexpr std::string_view kCommentBatch = "flamestream.batch=";

struct PprofOptions {
  LabelPolicy labels;
  // Write one comment per aggregated batch id (the file sink needs them to merge exactly
  // once; remote sinks leave them out to keep requests small).
  bool batch_comments = false;
};

// Merges the given series of `window` into one pprof profile (ids are 1-based, dense).
perftools::profiles::Profile EncodePprof(const Window& window, const std::vector<uint32_t>& series,
                                         const PprofOptions& options = {});

// Serialized + gzip-compressed (the on-disk pprof form and Pyroscope's raw_profile).
Result<std::string> GzipPprof(const perftools::profiles::Profile& profile);
// Parses gzip-compressed or plain pprof bytes (pprofutil::ParseProfile) and checks the
// string table starts with "".
Result<perftools::profiles::Profile> DecodePprof(std::string_view bytes);


// One stack of a profile, root first, with inlined frames expanded (caller before callee).
struct FoldedStack {
  std::vector<std::string> frames;
  std::string span_name;  // label span_name, "" when none
  int64_t count = 0;      // samples/count
  int64_t nanos = 0;      // cpu/nanoseconds (0 when the profile has no such sample type)
};
// All samples of a profile as folded stacks (not merged: one entry per pprof sample).
Result<std::vector<FoldedStack>> Fold(const perftools::profiles::Profile& profile);
// "a;b;c 12\n" lines, merged by stack, sorted (counts are samples/count).
std::string FoldedText(const std::vector<FoldedStack>& stacks);

// Adds a decoded pprof profile (as written by EncodePprof) into `series` of `window`: its
// samples, and its batch ids from the comments, so those batches are dropped as duplicates.
Status ImportPprof(const perftools::profiles::Profile& profile, Window& window, uint32_t series);
// The "flamestream.symbol_epoch=" comment of a profile; 0 when absent.
uint64_t EpochOf(const perftools::profiles::Profile& profile);

}  // namespace flamestream::profile
