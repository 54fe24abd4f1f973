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
#pragma once

#include <cstdint>
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

  // <out>/<service dir>/<stem>.pb.gz
  [[nodiscard]] std::string WindowPath(std::string_view service, int64_t start_ns) const;
  // Rebuilds <service>.folded and <service>.html from the service's .pb.gz files.
  Status WriteViews(std::string_view service);

 private:
  FileSinkConfig config_;
};

// Service names as directory/file names: [A-Za-z0-9._-] kept, anything else becomes '_'.
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
