// Symbolizes a raw SampleBatch in place: the symbolizer stage's transform.
//
//   flamestream::v1::SampleBatch batch;                 // STAGE_RAW, from the raw topic
//   BatchSymbolizeStats stats;
//   FS_RETURN_IF_ERROR(SymbolizeBatch(batch, *symbolizer, &stats));
//   // batch.stage() == STAGE_SYMBOLIZED; every location has lines (or an unresolved status)
//
// Every location is resolved once per batch (the batch already deduplicates them): user frames
// through the Symbolizer (non-leaf frames at address-1), kernel frames from the symbol the
// agent resolved through kallsyms. Mapping, build id and address stay beside the lines, since
// pprof and OTLP need them. An unresolved user frame keeps them too and gets no lines; sinks
// name it "basename+0xoffset".
#pragma once

#include <cstdint>

#include "flamestream/common/status.h"
#include "flamestream/symbols/symbolizer.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::symbols {

struct BatchSymbolizeStats {
  uint64_t user_frames = 0;
  uint64_t resolved = 0;
  uint64_t unresolved = 0;
  uint64_t kernel_frames = 0;
  uint64_t other_frames = 0;  // anonymous, JIT, vDSO: no file to read
};

// Fails (leaving the batch unusable) only when the batch is invalid or not a raw batch;
// the stage sends it to the DLQ. Unresolvable frames are not an error.
Status SymbolizeBatch(v1::SampleBatch& batch, Symbolizer& symbolizer,
                      BatchSymbolizeStats* stats = nullptr);

}  // namespace flamestream::symbols
