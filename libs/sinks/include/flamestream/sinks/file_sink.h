// File sink: gzip pprof per service and window, a folded-stacks file and an offline
// flame-graph page per service.
//
//   sinks::FileSink sink({.out_dir = "/var/lib/flamestream/out"});
//   Status st = sink.Export(window);
//   // <out>/<service>/<window-start>.pb.gz   e.g. out/checkout/20261123T130100Z.pb.gz
//   // <out>/<service>.folded                 "main;Handle;Parse 12" lines (samples)
//   // <out>/<service>.html                   d3-flame-graph page, data embedded
//
// Exactly-once: names are deterministic and every file is written to a temporary name,
// fsynced and renamed over the target. A window re-created after a restart (from uncommitted
// input) first loads the file an earlier run wrote for it (OnNewSeries), whose comments list
// the batch ids it holds, so re-read batches are dropped as duplicates and the rewritten file
// is complete, never partial. A replay (higher symbol epoch) replaces an older epoch's file
// instead of merging; an older epoch never overwrites a newer one. The .folded and .html views
// are regenerated from the newest `view_windows` .pb.gz files of the service after each write.
//
// A service whose files cannot be written (mkdir or write fails permanently) fails only its
// own series (failed_series()); the window's other services are still written. Retention:
// after each window, window files older than `retention.max_age` (by modification time) are
// deleted, then the oldest ones until all window files take at most `retention.max_bytes`;
// the files of the window being written are never deleted, and the views of every service
// that lost files are rebuilt (or removed with the directory once it is empty), so a page only
// shows windows that still exist.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/profile/pprof.h"
#include "flamestream/sinks/sink.h"

namespace flamestream::sinks {

struct FileSinkConfig {
  // Output directory (created when missing).
  std::string out_dir = "./flamestream-out";
  // Write <service>.folded and <service>.html after each window.
  bool views = true;
  // How many of the newest windows the .folded and .html views cover (360 x 10 s = 1 h).
  int view_windows = 360;
  // The flame-graph page template (text); empty: the copy built into the binary. Filled by
  // LoadPageTemplate() from exporter.file.page_template or share/flamestream.
  std::string page_template;
  // Retention of window files (exporter.file.retention.*): 0 = keep forever / unlimited.
  struct Retention {
    std::chrono::seconds max_age = std::chrono::hours(24 * 7);
    uint64_t max_bytes = 0;
  } retention;
};

class FileSink : public Sink {
 public:
  explicit FileSink(FileSinkConfig config);
  [[nodiscard]] std::string_view name() const override { return "file"; }
  [[nodiscard]] profile::LabelPolicy labels() const override { return profile::LabelPolicy::Full(); }
  [[nodiscard]] profile::SeriesGranularity granularity() const override {
    return profile::SeriesGranularity::kService;
  }
  void OnNewSeries(profile::Window& window, uint32_t series) override;
  Status Export(const profile::Window& window) override;
  [[nodiscard]] std::vector<SeriesFailure> failed_series() const override { return failed_; }
  [[nodiscard]] std::vector<SinkCounter> Counters() const override;

  // <out>/<service dir>/<stem>.pb.gz
  [[nodiscard]] std::string WindowPath(std::string_view service, int64_t start_ns) const;
  // Rebuilds <service>.folded and <service>.html from the service's .pb.gz files.
  Status WriteViews(std::string_view service);
  // Applies the retention policy now, never deleting window files named `keep_stem`
  // (WindowFileStem of the window being written); returns the files deleted.
  uint64_t ApplyRetention(std::string_view keep_stem);
  [[nodiscard]] uint64_t deleted_files() const { return deleted_files_; }

 private:
  Status WriteViewsOf(const std::string& dir_name, std::string_view title);
  Status ApplyRetention(std::string_view keep_stem, std::vector<std::string>* touched_dirs,
                        uint64_t* deleted);

  FileSinkConfig config_;
  std::vector<SeriesFailure> failed_;
  uint64_t deleted_files_ = 0;
  // Directory name -> service name, for page titles of services rebuilt after retention.
  std::map<std::string, std::string> titles_;
};

// Longest directory name SafeFileName() returns: leaves room in a 255-byte path component for
// "<name>.folded", and for the temporary ".<name>.folded.tmp.<pid>" next to it.
inline constexpr size_t kMaxSafeFileName = 200;

// Service names as directory/file names: a name made only of [A-Za-z0-9._-] (not starting with
// '.', at most kMaxSafeFileName bytes) is kept as it is; any other name becomes a slug (other
// bytes -> '_', cut) + "-" + 8 hex digits of a hash of the whole name, so it is safe (no '/',
// no "..", no NUL, fits a path component) and two names never share a directory.
std::string SafeFileName(std::string_view service);

// Writes `data` to `path` atomically (temp file in the same directory, fsync, rename, fsync of
// the directory). Creates missing parent directories.
Status WriteFileAtomic(const std::string& path, std::string_view data);

// The self-contained flame-graph page for `stacks` (d3-flame-graph bundled at build time),
// from `page_template` when not empty, else the built-in template.
std::string RenderFlameGraphPage(std::string_view title,
                                 const std::vector<profile::FoldedStack>& stacks,
                                 std::string_view page_template = {});

// The flame-graph page template an installation uses, so a site can restyle the page without a
// rebuild: `configured` (a file) when set, else the first of
// $FLAMESTREAM_SHARE_DIR/flamegraph.html and <binary dir>/../share/flamestream/flamegraph.html
// that exists, else "" (the built-in copy). A template must hold __FLAMESTREAM_DATA__.
// `source` receives the path taken, or "built-in".
Result<std::string> LoadPageTemplate(const std::string& configured, std::string* source);

}  // namespace flamestream::sinks
